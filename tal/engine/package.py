"""A trained localizer packaged to run alone: weights plus everything inference needs.

``PackagedLocalizer`` is what gets logged to a model registry (it pickles as one
``nn.Module``): the EMA weights, the experiment config as plain data (post-processing,
inference partner, the extractor settings the features came from), the label names, the
feature store's attributes (clip length, stride, fps, weights digests) and the partner bank.
Given a video's features it returns detections in seconds, the same as the checkpoint does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tal.config import ExperimentConfig, config_from_dict
from tal.data.dataset import FeatureDataset
from tal.data.predictions import Detections
from tal.data.timing import FeatureTiming
from tal.engine.inference import (
    PartnerBank,
    PostprocessSettings,
    load_localizer,
    predict,
    predict_video,
)
from tal.models import Localizer


class PackagedLocalizer(nn.Module):
    """The localizer (or CO2-Net) with its config, labels, feature timing and partner bank."""

    def __init__(
        self,
        model: nn.Module,
        config: dict[str, Any],
        label_names: Sequence[str],
        modalities: Sequence[str],
        feature_attrs: dict[str, Any],
        bank: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.config_data = dict(config)
        self.label_names = list(label_names)
        self.modalities = list(modalities)
        self.feature_attrs = dict(feature_attrs)
        self.bank_state = bank

    @classmethod
    def from_checkpoint_state(cls, state: dict[str, Any]) -> PackagedLocalizer:
        """From a checkpoint read by ``load_checkpoint`` (the EMA weights are packaged)."""
        model, _ = load_localizer(state)
        return cls(
            model,
            state["config"],
            state["label_names"],
            state["modalities"],
            state.get("feature_attrs") or {},
            state.get("bank"),
        )

    @property
    def config(self) -> ExperimentConfig:
        return config_from_dict(dict(self.config_data), "packaged model config")

    @property
    def bank(self) -> PartnerBank | None:
        return PartnerBank.from_state(self.bank_state) if self.bank_state else None

    def forward(self, *args: torch.Tensor) -> dict:
        return self.model(*args)

    def _settings(self, partner: str | None) -> dict[str, Any]:
        config = self.config
        partner = partner or config.model.inference_partner
        return {
            "divisible_by": Localizer.divisible_by(config.model),
            "partner": partner,
            "bank": self.bank if partner == "bank" else None,
            "post": PostprocessSettings.from_config(config.inference),
            "uses_partner": config.model.takes_partner,
        }

    def timing(self, fps: float | None = None) -> FeatureTiming:
        """Feature timing of a video sampled at ``fps`` (default: the store's rate)."""
        return FeatureTiming.from_store(self.feature_attrs, {"fps": fps} if fps else {})

    @torch.no_grad()
    def predict_features(
        self,
        video_id: str,
        features: dict[str, np.ndarray],
        fps: float | None = None,
        duration: float | None = None,
        partner: str | None = None,
    ) -> Detections:
        """Detections of one video from its ``[T, C]`` features per modality."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise ValueError(f"video {video_id!r}: the model needs features {missing}")
        feats = torch.from_numpy(
            np.concatenate([np.asarray(features[m], dtype=np.float32) for m in self.modalities], 1)
        ).T
        device = next(self.model.parameters()).device
        rows = predict_video(
            self.model, video_id, feats, self.timing(fps), duration, self.label_names,
            device=device, **self._settings(partner),
        )  # fmt: skip
        return Detections.from_rows(rows)

    @torch.no_grad()
    def predict_dataset(self, dataset: FeatureDataset, partner: str | None = None) -> Detections:
        """Detections of every video of a (non-cropping) dataset over a feature store."""
        device = next(self.model.parameters()).device
        return predict(
            self.model, dataset, self.label_names, device=device, **self._settings(partner)
        )

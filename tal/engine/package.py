"""A trained model packaged to run alone: weights plus everything inference needs.

``PackagedLocalizer`` is what gets logged to a model registry (it pickles as one
``nn.Module``): the EMA weights, the experiment config as plain data (post-processing, the
method's settings, the extractor settings the features came from), the label names, the
feature store's attributes (clip length, stride, fps, weights digests) and the method's
inference assets (I2Net's partner bank). Given a video's features it returns detections in
seconds, the same as the checkpoint does, through the method's decoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tal.config import ExperimentConfig, config_from_dict
from tal.data.dataset import FeatureDataset
from tal.data.predictions import Detections
from tal.data.timing import FeatureTiming
from tal.engine.checkpoint import CheckpointState
from tal.engine.inference import load_trained, predict, predict_video
from tal.methods import Method, PostprocessSettings, build_method
from tal.methods.base import InferenceAssets


class PackagedLocalizer(nn.Module):
    """A method's trained network with its config, labels, feature timing and assets."""

    def __init__(
        self,
        model: nn.Module,
        config: Mapping[str, object],
        label_names: Sequence[str],
        modalities: Sequence[str],
        feature_attrs: Mapping[str, object],
        assets: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.config_data = dict(config)
        self.label_names = list(label_names)
        self.modalities = list(modalities)
        self.feature_attrs = dict(feature_attrs)
        self.assets_state = dict(assets) if assets is not None else None

    @classmethod
    def from_checkpoint_state(cls, state: CheckpointState) -> PackagedLocalizer:
        """From a checkpoint read by ``load_checkpoint`` (the EMA weights are packaged)."""
        trained = load_trained(state)
        return cls(
            trained.network,
            state.config,
            state.label_names,
            state.modalities,
            state.feature_attrs,
            state.assets,
        )

    @property
    def config(self) -> ExperimentConfig:
        return config_from_dict(dict(self.config_data), "packaged model config")

    def _method(self, overrides: Sequence[str]) -> tuple[Method, ExperimentConfig]:
        config = config_from_dict(dict(self.config_data), "packaged model config", list(overrides))
        return build_method(config.model), config

    def _assets(self, method: Method) -> InferenceAssets | None:
        return method.assets_from_state(self.assets_state)

    def forward(self, *args: torch.Tensor) -> object:
        return self.model(*args)

    def timing(self, fps: float | None = None) -> FeatureTiming:
        """Feature timing of a video sampled at ``fps`` (default: the store's rate)."""
        return FeatureTiming.from_store(self.feature_attrs, {"fps": fps} if fps else {})

    @torch.no_grad()
    def predict_features(
        self,
        video_id: str,
        features: Mapping[str, np.ndarray],
        fps: float | None = None,
        duration: float | None = None,
        config_overrides: Sequence[str] = (),
    ) -> Detections:
        """Detections of one video from its ``[T, C]`` features per modality."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise ValueError(f"video {video_id!r}: the model needs features {missing}")
        feats = torch.from_numpy(
            np.concatenate([np.asarray(features[m], dtype=np.float32) for m in self.modalities], 1)
        ).T
        device = next(self.model.parameters()).device
        method, config = self._method(config_overrides)
        rows = predict_video(
            self.model,
            method,
            video_id,
            feats,
            self.timing(fps),
            duration,
            self.label_names,
            device,
            post=PostprocessSettings.from_config(config.inference, self.label_names),
            assets=self._assets(method),
        )
        return Detections.from_rows(rows)

    @torch.no_grad()
    def predict_dataset(
        self, dataset: FeatureDataset, config_overrides: Sequence[str] = ()
    ) -> Detections:
        """Detections of every video of a (non-cropping) dataset over a feature store."""
        device = next(self.model.parameters()).device
        method, config = self._method(config_overrides)
        return predict(
            self.model,
            method,
            dataset,
            self.label_names,
            device,
            post=PostprocessSettings.from_config(config.inference, self.label_names),
            assets=self._assets(method),
        )

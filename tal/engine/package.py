"""A trained model packaged to run alone: weights plus everything inference needs.

``PackagedLocalizer`` is what gets logged to a model registry, as a tensor-only model
directory (``tal.engine.model_files``; ``save``/``load``, nothing unpickled): the EMA
weights, the experiment config as plain data (post-processing, the method's settings, the extractor settings the features came from), the label names, the
feature store's attributes (clip length, stride, fps, weights digests) and the method's
inference assets (I2Net's partner bank). Given a video's features it returns detections in
seconds, the same as the checkpoint does, through the method's decoding.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from tal.config import ExperimentConfig, config_from_dict
from tal.data.dataset import FeatureDataset
from tal.data.predictions import Detections
from tal.data.timing import FeatureTiming
from tal.engine.checkpoint import CheckpointState
from tal.engine.inference import load_trained, predict, predict_video
from tal.engine.model_files import ModelFileError, load_weights, read_model_dir, write_model_dir
from tal.methods import Method, PostprocessSettings, build_method
from tal.methods.base import InferenceAssets

KIND = "localizer"


class _Description(BaseModel):
    """What a localizer's model directory describes, checked on load."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)

    config: dict[str, object]
    label_names: list[str] = Field(min_length=1)
    modalities: list[str] = Field(min_length=1)
    in_dim: int = Field(gt=0)
    feature_attrs: dict[str, object]
    assets: dict[str, object] | None = None


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
        in_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.config_data = dict(config)
        self.label_names = list(label_names)
        self.modalities = list(modalities)
        self.feature_attrs = dict(feature_attrs)
        self.assets_state = dict(assets) if assets is not None else None
        self.in_dim = in_dim

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model directory at ``path``: weights and assets as safetensors, the
        rest as JSON (``tal.engine.model_files``)."""
        if self.in_dim is None:
            raise ValueError("packaged model: in_dim unknown (package it from a checkpoint)")
        description: dict[str, object] = {
            "method": self.config.model.name,
            "config": self.config_data,
            "label_names": self.label_names,
            "modalities": self.modalities,
            "in_dim": int(self.in_dim),
            "feature_attrs": self.feature_attrs,
            "assets": self.assets_state,
        }
        return write_model_dir(path, KIND, description, self.model.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PackagedLocalizer:
        """Rebuild a packaged model from its directory: the method named in the stored config
        builds the network and the weights are loaded into it; nothing is unpickled."""
        files = read_model_dir(path, KIND)
        where = str(Path(path))
        try:
            desc = _Description.model_validate(files.description)
        except ValidationError as exc:
            first = exc.errors()[0]
            spot = ".".join(str(p) for p in first["loc"])
            raise ModelFileError(f"{where}: description field {spot!r}: {first['msg']}") from None
        try:
            config = config_from_dict(dict(desc.config), f"{where} config")
            method = build_method(config.model)
        except (ValueError, KeyError) as exc:
            raise ModelFileError(f"{where}: {exc}") from None
        network = method.build_network(desc.in_dim, config.network_classes(len(desc.label_names)))
        load_weights(network, files.weights, where)
        return cls(
            network,
            desc.config,
            desc.label_names,
            desc.modalities,
            desc.feature_attrs,
            desc.assets,
            desc.in_dim,
        )

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
            int(state.in_dim),
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
        return predict_video(
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

"""Inference: one video in, scored segments in seconds out, through the method's decoding.

A method (``tal.methods``) turns one video's features into detections in feature steps
(``Method.decode``: I2Net picks its partner there, CO2-Net builds its proposals there); this
module runs it over videos and converts the detections to seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from tal.config import ExperimentConfig
from tal.data.dataset import FeatureDataset
from tal.data.predictions import Detections
from tal.data.timing import FeatureTiming
from tal.engine.checkpoint import CheckpointState
from tal.evaluation.detection import DetectionResult
from tal.methods import Method, PostprocessSettings, build_method
from tal.methods.base import InferenceAssets
from tal.postprocess import to_seconds


@torch.no_grad()
def predict_video(
    network: nn.Module,
    method: Method,
    video_id: str,
    feats: torch.Tensor,
    timing: FeatureTiming,
    duration: float | None,
    label_names: Sequence[str],
    device: torch.device,
    post: PostprocessSettings = PostprocessSettings(),
    assets: InferenceAssets | None = None,
) -> Detections:
    """Detections of one video's ``[C, T]`` features, in seconds."""
    network.eval()
    found = method.decode(network, video_id, feats, device, post, assets)
    return to_seconds(
        video_id, found.segments, found.scores, found.labels, timing, duration, list(label_names)
    )


def predict(
    network: nn.Module,
    method: Method,
    dataset: FeatureDataset,
    label_names: Sequence[str],
    device: torch.device,
    post: PostprocessSettings = PostprocessSettings(),
    assets: InferenceAssets | None = None,
) -> Detections:
    """Detections of every video of ``dataset`` (never cropped), in seconds."""
    parts: list[Detections] = []
    for i in range(len(dataset)):
        item = dataset[i]
        parts.append(
            predict_video(
                network,
                method,
                item.video_id,
                item.feats,
                item.timing,
                item.duration,
                label_names,
                device,
                post=post,
                assets=assets,
            )
        )
    return Detections.concat(parts)


# feature-store attributes that must match between training and inference
_TIMING_KEYS = ("clip_length", "stride", "feature_dims")


@dataclass
class TrainedModel:
    """A trained network (EMA weights, eval mode) with its config, method and assets."""

    network: nn.Module
    config: ExperimentConfig
    method: Method
    label_names: list[str]
    modalities: list[str]
    assets: InferenceAssets | None


def load_trained(state: CheckpointState, config_overrides: Sequence[str] = ()) -> TrainedModel:
    """The EMA network of a checkpoint read by ``load_checkpoint``, rebuilt by its method;
    ``config_overrides`` (``key=value``) change the stored config (e.g. the inference
    partner)."""
    from tal.config import config_from_dict

    config = config_from_dict(dict(state.config), "checkpoint config", list(config_overrides))
    method = build_method(config.model)
    network = method.build_network(
        int(state.in_dim), config.network_classes(len(state.label_names))
    )
    network.load_state_dict(state.inference_weights)
    return TrainedModel(
        network.eval(),
        config,
        method,
        list(state.label_names),
        list(state.modalities),
        method.assets_from_state(state.assets),
    )


@dataclass
class InferenceFacts:
    """What ``infer_from_checkpoint`` did: videos predicted, videos missing from the store,
    notes, the config used and the evaluation (None when the subset has no ground truth)."""

    videos: int
    missing: list[str]
    config: ExperimentConfig
    result: DetectionResult | None
    notes: list[str] = field(default_factory=list)


def infer_from_checkpoint(
    checkpoint: str | os.PathLike[str],
    annotations: str | os.PathLike[str] | None,
    store: str | os.PathLike[str] | None,
    subset: str,
    config_overrides: Sequence[str] = (),
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[Detections, InferenceFacts]:
    """Predictions of ``subset`` with a trained checkpoint (and its config), and facts.

    ``annotations`` and ``store`` default to the paths in the checkpoint's config. The store
    must have the checkpoint's streams, clip length, stride and feature widths; a different
    weights digest is allowed but reported.
    """
    from tal.data.annotations import LabelMap, load_annotations
    from tal.data.dataset import open_store
    from tal.engine.checkpoint import CheckpointError, load_checkpoint
    from tal.evaluation.detection import evaluate_detection

    state = load_checkpoint(checkpoint)
    trained = load_trained(state, config_overrides)
    config = trained.config
    torch.set_num_threads(config.training.cpus_per_worker)  # torch's default: every core
    annotations = annotations or config.data.annotations
    store = store or config.features.store
    assert annotations is not None and store is not None  # filled from run_dir at load
    fs = open_store(store)
    attrs = state.feature_attrs
    for key in _TIMING_KEYS:
        if key in attrs and fs.attrs.get(key) != attrs[key]:
            raise CheckpointError(
                f"{checkpoint}: trained on features with {key}={attrs[key]!r}, but {store} "
                f"has {fs.attrs.get(key)!r}"
            )
    notes = []
    if attrs.get("weights_digest") not in (None, fs.attrs.get("weights_digest")):
        notes.append(f"{store}: extracted with other weights than the training features")
    ann = load_annotations(annotations)
    dataset = FeatureDataset(
        fs, ann, [subset], label_map=LabelMap(trained.label_names), modalities=trained.modalities
    )
    torch_device = torch.device(device)
    detections = predict(
        trained.network.to(torch_device),
        trained.method,
        dataset,
        trained.label_names,
        torch_device,
        post=PostprocessSettings.from_config(config.inference, trained.label_names),
        assets=trained.assets,
    )
    result = None
    if any(v.instances for v in ann.subset(subset)):
        result = evaluate_detection(ann, detections, subset, config.evaluation.tiou_thresholds)
    if log:
        for note in notes:
            log(note)
    return detections, InferenceFacts(len(dataset), list(dataset.missing), config, result, notes)

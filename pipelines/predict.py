"""Prediction with a registered model: video files in, detections and a timeline figure out.

    tal predict --model models:/NAME@champion VIDEO.mp4 [...] --output PRED.json [--plot PNG]

    from pipelines.predict import predict_videos          (batch use from Python)
    result = predict_videos("models:/synth-i2net@champion", ["a.mp4", "b.mp4"])

The model carries the feature store's attributes its training features came from (clip
length, stride, fps, crop size, flow method, streams, dtype and the weights' digests) and the
config that named the weights. Each video is decoded and featurised here with exactly those
settings (the weights are checked against the recorded digests), then the packaged localizer
predicts; detections are in seconds, in the ActivityNet results format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.errors import PipelineInputError


class PredictError(PipelineInputError):
    """A model or video that cannot be used for prediction."""


@dataclass
class PredictResult:
    detections: object  # tal.data.predictions.Detections
    durations: dict[str, float]
    label_names: list[str]
    failed: dict[str, str] = field(default_factory=dict)  # video id -> reason


def extractor_for(model, device: str = "auto"):
    """A VideoExtractor with the settings and weights the model's features were made with."""
    from features.extractor import ClipSettings, VideoExtractor
    from features.weights import resolve_network

    attrs = model.feature_attrs
    missing = [
        k for k in ("clip_length", "stride", "input_size", "weights_digest") if k not in attrs
    ]
    if missing:
        raise PredictError(f"the model records no feature settings {missing}: cannot featurise")
    features = model.config.features
    nets = {}
    for modality in model.modalities:
        spec = features.weights if modality == "rgb" else features.flow_weights
        net, meta = resolve_network(features.extractor, spec, modality)
        wanted = attrs["weights_digest"].get(modality)
        if meta["digest"] != wanted:
            raise PredictError(
                f"{modality} weights {spec!r} have digest {meta['digest'][:12]}..., but the "
                f"model was trained on features from weights {str(wanted)[:12]}... "
                f"({attrs.get('weights_origin', {}).get(modality, 'origin unknown')})"
            )
        nets[modality] = net
    settings = ClipSettings(
        fps=attrs.get("fps"),
        clip_length=int(attrs["clip_length"]),
        stride=int(attrs["stride"]),
        input_size=int(attrs["input_size"]),
        flow_method=attrs.get("flow_method", features.flow_method),
        precision=attrs.get("precision", "float32"),  # as the training features were made
    )
    return VideoExtractor(nets, settings, device)


def predict_videos(
    model_uri: str,
    videos: Sequence[str | os.PathLike[str]],
    tracking_uri: str | None = None,
    device: str = "auto",
    config_overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> PredictResult:
    """Detections of each video file with the model at ``model_uri`` (``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION`` or ``runs:/RUN/model``); ``config_overrides`` (``key=value``)
    change the model's stored config (e.g. ``model.inference_partner=bank``). Unreadable
    videos are reported in ``failed`` and the others still predicted."""
    from features.store import check_video_id
    from features.video import VideoDecodeError
    from pipelines.registry import load_packaged
    from tal.data.predictions import Detections

    paths = [Path(v) for v in videos]
    if not paths:
        raise PredictError("give at least one video file")
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise PredictError(f"video files not found: {', '.join(absent)}")
    try:
        model = load_packaged(model_uri, tracking_uri)
    except Exception as exc:  # MlflowException, missing alias, refused or damaged files
        reason = str(exc).removeprefix(f"{model_uri}: ")
        raise PredictError(f"cannot load model {model_uri}: {reason}") from None
    import torch

    torch.set_num_threads(model.config.training.cpus_per_worker)  # torch's default: every core
    extractor = extractor_for(model, device)
    model.to(extractor.device)
    dtype = np.dtype(model.feature_attrs.get("dtype", "float32"))
    parts, durations, failed = [], {}, {}
    for path in paths:
        video_id = check_video_id(path.stem)
        try:
            out = extractor.extract(path)
        except (VideoDecodeError, RuntimeError, ValueError, OSError) as exc:
            failed[video_id] = str(exc)
            log(f"{path}: skipped ({exc})")
            continue
        # the model was trained on features stored as `dtype`: round them the same way
        feats = {m: f.astype(dtype).astype(np.float32) for m, f in out.features.items()}
        found = model.predict_features(
            video_id, feats, out.fps, out.duration, config_overrides=config_overrides
        )
        parts.append(found)
        durations[video_id] = out.duration
        log(f"{path}: {len(found)} detections ({out.duration:.1f} s, {out.num_clips} clips)")
    return PredictResult(Detections.concat(parts), durations, list(model.label_names), failed)


def write_outputs(
    result: PredictResult,
    output: str | os.PathLike[str],
    plot: str | os.PathLike[str] | None = None,
    annotations: str | os.PathLike[str] | None = None,
    min_score: float = 0.2,
) -> Path | None:
    """The predictions JSON and, with ``plot``, a timeline of the predicted videos (ground
    truth from ``annotations`` drawn under the detections); returns the figure's path."""
    from tal.data.annotations import load_annotations
    from tal.data.predictions import write_predictions
    from tal.evaluation.plots import timeline_figure

    write_predictions(result.detections, output)
    if plot is None or not result.durations:
        return None
    ground_truth = load_annotations(annotations).videos if annotations is not None else None
    return timeline_figure(
        result.detections,
        list(result.durations),
        result.label_names,
        plot,
        ground_truth=ground_truth,
        durations=result.durations,
        min_score=min_score,
    )

"""Our feature store and annotations in the layouts the official code reads, and the official
code's detections back in our predictions JSON (``bench/parity.py`` runs the rest).

Nothing here imports or copies the official code: the layouts are written from what its data
loaders read, as documented below, so a test can check them without a checkout.

ActionFormer (``happyharrycn/actionformer_release``, ``libs/datasets/thumos14.py``):

- ``FEAT_FOLDER/VIDEO_ID.npy``: float32 ``[T, C]`` (its loader transposes to ``C x T``);
- an ActivityNet-style JSON whose ``database`` entries carry ``subset``, ``fps``,
  ``duration`` and ``annotations`` (``segment`` in seconds, ``label``, ``label_id``); the
  loader maps seconds to feature steps with ``s * fps / feat_stride - 0.5 * num_frames /
  feat_stride``, our formula (``tal/data/timing.py``), so ``feat_stride`` is the store's
  ``stride`` and ``num_frames`` its ``clip_length``.
- Its ``eval.py --saveonly`` pickles ``{"video-id": [str], "t-start", "t-end": float seconds,
  "label": int label_id, "score": float}`` (columns, numpy arrays).

CO2-Net (``harlanhong/MM2021-CO2-Net``, ``wsad_dataset.py``, ``eval/eval_detection.py``):

- ``PATH/NAME-I3D-JOINTFeatures.npy``: an object array of float32 ``[T, C]`` arrays, RGB
  then flow (its network splits the channels at 1024);
- ``PATH/NAME-Annotations/``: ``videoname.npy``, ``subset.npy``, ``classlist.npy`` (bytes
  arrays), ``labels.npy`` (per video, the label of each instance), ``labels_all.npy`` (per
  video, its distinct labels), ``segments.npy`` (per video, ``[start, end]`` seconds),
  ``duration.npy`` (``[N, 1]`` seconds), ``extracted_fps.npy`` and ``original_fps.npy``.
  Its loader hard-codes THUMOS14's subset names: ``validation`` videos train, ``test``
  videos are tested, so our training subsets are written as ``validation`` and the evaluated
  subset as ``test``; other videos are left out.
- Its ``test.py`` builds a pandas DataFrame of proposals ``video-id, t-start, t-end, label,
  score``; ``t-start``/``t-end`` count feature steps (``[first, last + 1)`` of a run of points)
  and ``label`` indexes ``classlist``. Its evaluator turns ground-truth seconds into steps by
  ``seconds * 25 / 16`` (THUMOS14: 25 fps, one feature per 16-frame clip, stride 16), so step
  t is the cell ``[t, t + 1) * 16 / 25`` s of feature t, whose centre sits in the middle. Our
  reading for any clip and stride (the official code is silent): step t starts half a stride
  before feature t's centre, ``seconds = ((t - 0.5) * stride + clip_length / 2) / fps``
  (``CO2NET_SECONDS = "cells"``, the default; the same as the co2net method's
  ``proposal_bounds: edges``); for THUMOS14 features it is exactly the evaluator's
  ``t * 16 / 25``. ``"evaluator"`` takes that arithmetic literally, ``t * stride / fps``, which
  on features with ``clip_length > stride`` puts every proposal ``(clip_length - stride) / 2``
  frames early.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.store import FeatureStore
from tal.data.annotations import AnnotationSet, Video
from tal.data.predictions import Detections

CO2NET_TRAIN_SUBSET = "validation"  # what CO2-Net's SampleDataset trains on
CO2NET_TEST_SUBSET = "test"  # what it tests on


@dataclass(frozen=True)
class StoreTiming:
    """The store's timing: frames per second, features every ``stride`` frames of
    ``clip_length``."""

    fps: float
    stride: int
    clip_length: int

    @classmethod
    def of(cls, store: FeatureStore) -> StoreTiming:
        return cls(
            float(store.attrs["fps"]), int(store.attrs["stride"]), int(store.attrs["clip_length"])
        )


@dataclass(frozen=True)
class ExportedVideos:
    """Which videos went where, and the class order both sides use."""

    label_names: list[str]
    subsets: dict[str, str]
    """video id -> the subset name written for the official code."""
    input_dim: int
    timing: StoreTiming

    def videos(self, subset: str) -> list[str]:
        return [v for v, s in self.subsets.items() if s == subset]


@dataclass(frozen=True)
class ActionFormerExport(ExportedVideos):
    feat_folder: Path = Path()
    json_file: Path = Path()


@dataclass(frozen=True)
class CO2NetExport(ExportedVideos):
    path_dataset: Path = Path()
    dataset_name: str = ""


def _selected(
    annotations: AnnotationSet, store: FeatureStore, subsets: Iterable[str]
) -> list[Video]:
    """Videos of ``subsets`` that the store holds completely, in annotation file order."""
    wanted = set(subsets)
    done = store.completed()
    chosen = [v for v in annotations if v.subset in wanted and v.video_id in done]
    if not chosen:
        raise ValueError(
            f"no video of subsets {sorted(wanted)} of {annotations.source} is in feature store "
            f"{store.location}"
        )
    return chosen


def _duration(video: Video, store: FeatureStore) -> float:
    if video.duration is not None:
        return float(video.duration)
    return float(store.meta(video.video_id)["duration"])


def _fps(video: Video, store: FeatureStore) -> float:
    meta = store.meta(video.video_id)
    return float(meta.get("fps") or store.attrs["fps"])


def export_actionformer(
    store: FeatureStore,
    annotations: AnnotationSet,
    out_dir: str | Path,
    subsets: Sequence[str],
) -> ActionFormerExport:
    """Write ``OUT/features/VIDEO_ID.npy`` and ``OUT/annotations.json`` for ActionFormer's
    ``thumos`` dataset; subsets keep our names (its config names the splits)."""
    out = Path(out_dir)
    feat_folder = out / "features"
    feat_folder.mkdir(parents=True, exist_ok=True)
    label_map = annotations.label_map()
    database: dict[str, Any] = {}
    dims = set()
    for video in _selected(annotations, store, subsets):
        feats = np.asarray(store.read(video.video_id), dtype=np.float32)
        dims.add(feats.shape[1])
        np.save(feat_folder / f"{video.video_id}.npy", feats)
        database[video.video_id] = {
            "subset": video.subset,
            "duration": _duration(video, store),
            "fps": _fps(video, store),
            "annotations": [
                {
                    "label": inst.label,
                    "label_id": label_map.index(inst.label),
                    "segment": [float(inst.start), float(inst.end)],
                }
                for inst in video.instances
            ],
        }
    json_file = out / "annotations.json"
    json_file.write_text(json.dumps({"database": database}, indent=1) + "\n", encoding="utf-8")
    return ActionFormerExport(
        label_names=list(label_map.names),
        subsets={vid: entry["subset"] for vid, entry in database.items()},
        input_dim=dims.pop() if len(dims) == 1 else _mixed(dims),
        timing=StoreTiming.of(store),
        feat_folder=feat_folder,
        json_file=json_file,
    )


def _mixed(dims: set[int]) -> int:
    raise ValueError(f"feature widths differ between videos: {sorted(dims)}")


def _object_array(items: Sequence[Any]) -> np.ndarray:
    """A 1-D object array of ``items`` (numpy would stack equal-length lists into 2-D)."""
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def export_co2net(
    store: FeatureStore,
    annotations: AnnotationSet,
    out_dir: str | Path,
    train_subsets: Sequence[str],
    test_subset: str,
    dataset_name: str = "Parity",
) -> CO2NetExport:
    """Write CO2-Net's ``NAME-I3D-JOINTFeatures.npy`` and ``NAME-Annotations/``: our
    ``train_subsets`` as its ``validation`` (trained on), ``test_subset`` as its ``test``."""
    if test_subset in train_subsets:
        raise ValueError(f"test subset {test_subset!r} is also a training subset")
    out = Path(out_dir)
    ann_dir = out / f"{dataset_name}-Annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    label_map = annotations.label_map()
    videos = _selected(annotations, store, [*train_subsets, test_subset])
    renamed = {
        v.video_id: CO2NET_TEST_SUBSET if v.subset == test_subset else CO2NET_TRAIN_SUBSET
        for v in videos
    }
    feats = [np.asarray(store.read(v.video_id), dtype=np.float32) for v in videos]
    dims = {f.shape[1] for f in feats}
    np.save(out / f"{dataset_name}-I3D-JOINTFeatures.npy", _object_array(feats))
    labels = [[inst.label for inst in v.instances] for v in videos]
    labels_all = [sorted(set(names), key=label_map.index) for names in labels]
    segments = [[[float(i.start), float(i.end)] for i in v.instances] for v in videos]
    np.save(ann_dir / "videoname.npy", np.array([v.video_id.encode() for v in videos]))
    np.save(ann_dir / "subset.npy", np.array([renamed[v.video_id].encode() for v in videos]))
    np.save(ann_dir / "classlist.npy", np.array([n.encode() for n in label_map.names]))
    np.save(ann_dir / "labels.npy", _object_array(labels))
    np.save(ann_dir / "labels_all.npy", _object_array(labels_all))
    np.save(ann_dir / "segments.npy", _object_array(segments))
    np.save(ann_dir / "duration.npy", np.array([[_duration(v, store)] for v in videos]))
    fps = [_fps(v, store) for v in videos]
    np.save(ann_dir / "extracted_fps.npy", np.array([f / store.attrs["stride"] for f in fps]))
    np.save(ann_dir / "original_fps.npy", np.array(fps))
    return CO2NetExport(
        label_names=list(label_map.names),
        subsets=renamed,
        input_dim=dims.pop() if len(dims) == 1 else _mixed(dims),
        timing=StoreTiming.of(store),
        path_dataset=out,
        dataset_name=dataset_name,
    )


def _column(results: Mapping[str, Any], key: str) -> np.ndarray:
    if key not in results:
        raise ValueError(f"official detections: column {key!r} is missing (got {sorted(results)})")
    return np.asarray(results[key])


def _label_name(label: Any, label_names: Sequence[str]) -> str:
    index = int(label)
    if not 0 <= index < len(label_names) or index != float(label):
        raise ValueError(
            f"official detections: label {label.item() if hasattr(label, 'item') else label} "
            f"is not an index of the class list {list(label_names)}"
        )
    return label_names[index]


def _detections(
    vids: np.ndarray,
    labels: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    score: np.ndarray,
    label_names: Sequence[str],
) -> Detections:
    if not (len(vids) == len(labels) == len(start) == len(end) == len(score)):
        raise ValueError("official detections: columns of different lengths")
    rows = []
    for vid, label, s, e, sc in zip(vids, labels, start, end, score, strict=True):
        if not all(math.isfinite(float(x)) for x in (s, e, sc)):
            continue
        name = vid.decode() if isinstance(vid, bytes) else str(vid)
        rows.append((name, _label_name(label, label_names), float(s), float(e), float(sc)))
    return Detections.from_rows(rows)


def actionformer_to_detections(
    results: Mapping[str, Any], label_names: Sequence[str]
) -> Detections:
    """ActionFormer's ``eval_results.pkl`` columns (seconds, label ids) as our detections."""
    return _detections(
        _column(results, "video-id"),
        _column(results, "label"),
        _column(results, "t-start"),
        _column(results, "t-end"),
        _column(results, "score"),
        label_names,
    )


CO2NET_SECONDS = ("cells", "evaluator")


def co2net_seconds(steps: np.ndarray, timing: StoreTiming, reading: str = "cells") -> np.ndarray:
    """CO2-Net's step boundaries in seconds (module docstring): ``cells`` (default)
    ``((t - 0.5) * stride + clip_length / 2) / fps``, ``evaluator`` ``t * stride / fps``."""
    steps = np.asarray(steps, dtype=np.float64)
    if reading == "cells":
        return ((steps - 0.5) * timing.stride + timing.clip_length / 2) / timing.fps
    if reading == "evaluator":
        return steps * timing.stride / timing.fps
    raise ValueError(f"CO2-Net seconds: expected one of {CO2NET_SECONDS}, got {reading!r}")


def co2net_to_detections(
    proposals: Any, label_names: Sequence[str], timing: StoreTiming, reading: str = "cells"
) -> Detections:
    """CO2-Net's proposals (a DataFrame, or any mapping of columns) as our detections, feature
    steps turned into seconds by ``co2net_seconds``."""
    return _detections(
        _column(proposals, "video-id"),
        _column(proposals, "label"),
        co2net_seconds(_column(proposals, "t-start"), timing, reading),
        co2net_seconds(_column(proposals, "t-end"), timing, reading),
        _column(proposals, "score"),
        label_names,
    )

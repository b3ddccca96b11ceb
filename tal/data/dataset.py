"""Datasets over the Zarr feature store: one video per item, or pairs of videos for I2Net.

A ``FeatureDataset`` joins an annotation set with a feature store. At construction it keeps
only small metadata per video (feature count, timing, segments already converted to feature
steps, label indices); features are read from the store when an item is asked for, through a
small LRU cache. Coordinates follow the localizer's convention: feature ``i`` sits at step
``i`` and covers steps ``[i - 0.5, i + 0.5]``, so the *feature range* of a video with ``T``
features is ``[-0.5, T - 0.5]``. Segments are clipped to that range (annotations often start
at 0 s, before the centre of the first feature); a segment left empty (entirely outside the
features, or of zero length) is dropped.

Training crops videos as ActionFormer's ``truncate_feats`` (``libs/datasets/data_utils.py``
of the official release) does, deterministic for ``seed``, the epoch set by ``set_epoch`` and
the item index; evaluation never crops:

- a video longer than ``max_seq_len`` gets a random window of ``max_seq_len`` features; with
  ``crop_ratio`` ``(lo, hi)`` an annotated video of ``T <= max_seq_len`` features gets a random
  window of ``L`` features, ``L`` drawn uniformly from ``[max(round(lo T), 1), min(round(hi T),
  T)]`` (``L == T`` leaves it whole). ActionFormer's THUMOS14 and ActivityNet recipes use
  ``(0.9, 1.0)``; longer videos are never shortened below ``max_seq_len``.
- an instance is kept when its overlap with the window is at least ``trunc_threshold`` of its
  length; up to ``crop_tries`` random windows (ActionFormer: 200) are drawn until one keeps an
  instance, else the last one drawn is used (kept empty).
- ``crop_bounds``: the range a window covers. ``actionformer``: from half a clip before its
  first feature's centre to half a clip after the step *after* its last feature
  (``[start - o, start + L + o]``, ``o = clip_length / (2 stride)``, ActionFormer's
  ``[st - offset, ed + offset]`` with ``ed`` exclusive); ``feature_range`` (our former crop):
  ``[start - 0.5, start + L - 0.5]``. Kept instances are clipped to that range.
- a video without instances is only cropped when longer than ``max_seq_len`` (ActionFormer
  does not truncate it at all; we must, to bound the batch).

The former crop is ``crop_ratio=None, crop_tries=10, crop_bounds="feature_range"``.
``collate`` pads a batch to a length divisible by the pyramid's largest stride and returns
validity masks (True = real feature).

``PairDataset`` serves the pairs table (video_a, video_b) for inter-video attention. With
``pair_crop="shared_action"`` both videos of a pair are cropped around an instance of a class
they share (see ``PairDataset``), so that inter-video attention sees the shared action in both
crops; ``independent`` crops them as two unrelated items (the former behaviour).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from features.errors import UserInputError
from features.store import FeatureStore
from tal.data.annotations import AnnotationSet, LabelMap, Video
from tal.data.timing import FeatureTiming

__all__ = [
    "DatasetError",
    "FeatureDataset",
    "PairDataset",
    "VideoItem",
    "clip_segments",
    "collate",
    "collate_pairs",
    "crop_segments",
]

log = logging.getLogger(__name__)

CROP_TRIES = 200
"""Random windows tried per item to find one that keeps an instance (ActionFormer's
``max_num_trials``; our former crop tried 10)."""
CropBounds = Literal["actionformer", "feature_range"]
PairCrop = Literal["shared_action", "independent"]
PartnerDraw = Literal["table", "each_epoch"]
_PARTNER_STREAM = 1 << 30  # the generator stream of partner draws (item streams are 2i+1, 2i+2)
DEFAULT_CACHE_BYTES = 256 * 2**20
DURATION_TOLERANCE_S, DURATION_TOLERANCE = 1.0, 0.05
"""Annotated and stored durations further apart than both of these count as different."""


class DatasetError(UserInputError):
    """A dataset that cannot be built as asked; the message names the store and annotations."""


@dataclass
class VideoItem:
    """One video (or one window of it) ready for the localizer.

    ``feats`` is ``[C, T]`` float32; ``segments`` ``[N, 2]`` are in feature steps of *this*
    item (window coordinates when cropped: add ``offset`` for the whole video's steps);
    ``labels`` ``[N]`` index the label map; ``num_features`` is the video's T before any crop.
    """

    video_id: str
    feats: torch.Tensor
    segments: torch.Tensor
    labels: torch.Tensor
    timing: FeatureTiming
    duration: float
    num_features: int
    offset: int = 0

    @property
    def length(self) -> int:
        """Number of features in this item (T of ``feats``)."""
        return int(self.feats.shape[1])


@dataclass(frozen=True)
class _Entry:
    """What a dataset keeps in memory per video."""

    video_id: str
    num_features: int
    timing: FeatureTiming
    duration: float
    stored_duration: float  # what the extractor decoded
    segments: np.ndarray  # [N, 2] float64, feature steps, clipped to the feature range
    labels: np.ndarray  # [N] int64


def clip_segments(segments: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``[N, 2]`` step segments to the feature range ``[-0.5, length - 0.5]``.

    Returns the clipped segments and a bool mask of those that keep a positive length;
    the caller drops the rest (they lay outside the features or were empty).
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    clipped = np.clip(segments, -0.5, length - 0.5)
    return clipped, clipped[:, 1] > clipped[:, 0]


def crop_segments(
    segments: np.ndarray,
    start: int,
    length: int,
    threshold: float,
    bounds: tuple[float, float] = (0.5, -0.5),
) -> tuple[np.ndarray, np.ndarray]:
    """Segments seen through the window of features ``start .. start + length - 1``.

    The window covers ``[start - bounds[0], start + length + bounds[1]]``: the default
    ``(0.5, -0.5)`` is the features' own range; ``window_bounds`` gives ActionFormer's. A
    segment is kept when its overlap with that range is positive and at least ``threshold``
    of its own length; kept segments are clipped to the range and shifted to window
    coordinates (feature ``start`` becomes step 0). Returns the kept segments and the bool
    mask of kept rows.
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    low, high = start - bounds[0], start + length + bounds[1]
    overlap = np.minimum(segments[:, 1], high) - np.maximum(segments[:, 0], low)
    keep = (overlap > 0) & (overlap >= threshold * (segments[:, 1] - segments[:, 0]))
    kept = np.clip(segments[keep], low, high) - start
    return kept, keep


def window_bounds(kind: CropBounds, timing: FeatureTiming) -> tuple[float, float]:
    """``bounds`` of ``crop_segments`` for ``crop_bounds`` ``kind`` (see the module
    docstring): ActionFormer's ``(o, o)`` with ``o`` half a clip in steps, or ``(0.5, -0.5)``."""
    if kind == "feature_range":
        return (0.5, -0.5)
    if kind == "actionformer":
        half = timing.clip_length / (2 * timing.stride)
        return (half, half)
    raise ValueError(f"crop_bounds must be 'actionformer' or 'feature_range', got {kind!r}")


class _LRU:
    """A byte-bounded least-recently-used cache of feature arrays."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.data: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, key: str) -> np.ndarray | None:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: str, value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes:
            return
        self.data[key] = value
        self.bytes += value.nbytes
        while self.bytes > self.max_bytes:
            _, old = self.data.popitem(last=False)
            self.bytes -= old.nbytes


def _names(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{what}: expected a name or a non-empty list of names, got {value!r}")
    return names


def open_store(location: str | os.PathLike[str]) -> FeatureStore:
    """Open a feature store read-only; a missing or foreign one is a DatasetError saying so."""
    try:
        return FeatureStore.open(location, "r")
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(f"{exc} (extract features first: tal extract)") from None


class FeatureDataset(Dataset):
    """Videos of ``subsets`` that are complete in the feature store, one ``VideoItem`` each.

    ``store`` is a FeatureStore or its location. Videos of the subsets that the store lacks
    (not extracted, failed, or incomplete) are listed in ``missing`` and skipped with a
    warning; none usable is a DatasetError. Videos without instances are kept (all
    background; the evaluation sets need them). ``modalities`` (default: all of the store's,
    in the store's order) are concatenated along channels. With ``training`` and
    ``max_seq_len``, videos are cropped as the module docstring says (``crop_ratio``,
    ``trunc_threshold``, ``crop_tries``, ``crop_bounds``); ``set_epoch`` changes the windows
    from one epoch to the next.

    With ``weak`` (weakly supervised training) only the classes of each video's instances
    are read, never their segments: items carry no segments and ``labels`` are the video's
    distinct classes; a training video longer than ``max_seq_len`` is resampled to that
    length (one random point from each of ``max_seq_len`` equal bins, new every epoch)
    instead of cropped, so that no action is cut out of a video whose labels say it has it.

    With ``class_agnostic`` every instance's label index is 0 (one class, action; each label
    is still checked against the label map).
    """

    def __init__(
        self,
        store: FeatureStore | str | os.PathLike[str],
        annotations: AnnotationSet,
        subsets: str | Sequence[str],
        label_map: LabelMap,
        modalities: str | Sequence[str] | None = None,
        max_seq_len: int | None = None,
        training: bool = False,
        trunc_threshold: float = 0.5,
        seed: int = 0,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        weak: bool = False,
        crop_ratio: tuple[float, float] | None = (0.9, 1.0),
        crop_tries: int = CROP_TRIES,
        crop_bounds: CropBounds = "actionformer",
        class_agnostic: bool = False,
    ):
        self._store: FeatureStore | None = (
            store if isinstance(store, FeatureStore) else open_store(store)
        )
        self.store_location = self._store.location
        self._storage_options = self._store.storage_options or None
        self.source = annotations.source
        self.subsets = _names(subsets, f"{self.source}: subsets")
        self.modalities = self._check_modalities(modalities)
        if max_seq_len is not None and (isinstance(max_seq_len, bool) or max_seq_len < 1):
            raise DatasetError(f"max_seq_len must be an int >= 1 or None, got {max_seq_len!r}")
        if not 0.0 <= trunc_threshold <= 1.0:
            raise DatasetError(f"trunc_threshold must lie in [0, 1], got {trunc_threshold!r}")
        if seed < 0:
            raise DatasetError(f"seed must be >= 0, got {seed}")
        if crop_ratio is not None:
            if len(crop_ratio) != 2 or not 0.0 < crop_ratio[0] <= crop_ratio[1] <= 1.0:
                raise DatasetError(
                    f"crop_ratio must be (lo, hi) with 0 < lo <= hi <= 1, got {crop_ratio!r}"
                )
            crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        if crop_tries < 1:
            raise DatasetError(f"crop_tries must be >= 1, got {crop_tries}")
        if crop_bounds not in ("actionformer", "feature_range"):
            raise DatasetError(
                f"crop_bounds must be 'actionformer' or 'feature_range', got {crop_bounds!r}"
            )
        self.crop_ratio = crop_ratio
        self.crop_tries = int(crop_tries)
        self.crop_bounds: CropBounds = crop_bounds
        self.max_seq_len = max_seq_len
        self.weak = bool(weak)
        self.training = training
        self.trunc_threshold = float(trunc_threshold)
        self.seed = int(seed)
        self.epoch = 0
        self.label_map = label_map
        self.class_agnostic = bool(class_agnostic)
        self._cache_bytes = cache_bytes
        self._cache = _LRU(cache_bytes)

        videos = annotations.subset(*self.subsets)
        done = self._store.completed()
        self.missing: list[str] = [v.video_id for v in videos if v.video_id not in done]
        usable = [v for v in videos if v.video_id in done]
        where = (
            f"feature store {self.store_location} with annotations {self.source} "
            f"(subsets {list(self.subsets)})"
        )
        if not usable:
            reason = (
                f"none of the {len(videos)} annotated videos is complete in the store"
                if videos
                else "the annotations have no video in these subsets"
            )
            raise DatasetError(f"{where}: no usable videos: {reason}")
        if self.missing:
            shown = ", ".join(self.missing[:5]) + (", ..." if len(self.missing) > 5 else "")
            log.warning(
                "%s: %d of %d videos are not complete in the store and are skipped: %s",
                where,
                len(self.missing),
                len(videos),
                shown,
            )
        self._entries = [self._entry(video) for video in usable]
        self._check_durations(where)
        self._index = {entry.video_id: i for i, entry in enumerate(self._entries)}

    # ------------------------------------------------------------------ construction

    @property
    def store(self) -> FeatureStore:
        """The feature store (reopened read-only after unpickling in a DataLoader worker)."""
        if self._store is None:
            self._store = FeatureStore.open(
                self.store_location, "r", storage_options=self._storage_options
            )
        return self._store

    def _check_modalities(self, modalities: str | Sequence[str] | None) -> tuple[str, ...]:
        have = tuple(self.store.modalities)
        if modalities is None:
            return have
        names = _names(modalities, f"feature store {self.store_location}: modalities")
        unknown = [m for m in names if m not in have]
        if unknown or len(set(names)) != len(names):
            raise DatasetError(
                f"feature store {self.store_location} has modalities {list(have)}; "
                f"asked for {list(names)}"
            )
        return names

    def _check_durations(self, where: str) -> None:
        """Stop when the store's videos are not the annotated ones (a dataset regenerated or
        swapped under an existing store), judged by durations; warn about single outliers."""
        off = [
            f"{e.video_id} ({e.duration:g} s annotated, {e.stored_duration:g} s stored)"
            for e in self._entries
            if abs(e.duration - e.stored_duration)
            > max(DURATION_TOLERANCE_S, DURATION_TOLERANCE * e.duration)
        ]
        if not off:
            return
        shown = ", ".join(off[:3]) + (", ..." if len(off) > 3 else "")
        if 2 * len(off) > len(self._entries):
            raise DatasetError(
                f"{where}: {len(off)} of {len(self._entries)} videos have a duration in the store that "
                f"differs from the annotations: {shown}. The store was extracted from other "
                "videos; extract again (tal extract --overwrite) or point at the right store"
            )
        log.warning("%s: durations differ from the annotations for %s", where, shown)

    def _entry(self, video: Video) -> _Entry:
        meta = self.store.meta(video.video_id)
        timing = FeatureTiming.from_store(self.store.attrs, meta)
        length = int(meta["num_features"])
        if self.weak:
            return self._weak_entry(video, meta, timing, length)
        labels = self._label_indices(video)
        seconds = np.array([[i.start, i.end] for i in video.instances], dtype=np.float64)
        segments, keep = clip_segments(timing.to_steps(seconds.reshape(-1, 2)), length)
        duration = video.duration if video.duration is not None else float(meta["duration"])
        return _Entry(
            video_id=video.video_id,
            num_features=length,
            timing=timing,
            duration=float(duration),
            stored_duration=float(meta["duration"]),
            segments=segments[keep],
            labels=np.asarray(labels, dtype=np.int64).reshape(-1)[keep],
        )

    def _label_indices(self, video: Video) -> list[int]:
        """Label-map indices of the video's instances, in order (only their labels are read);
        all 0 when ``class_agnostic`` (every action one class), each label still checked."""
        indices = []
        for inst in video.instances:
            try:
                indices.append(self.label_map.index(inst.label))
            except KeyError:
                raise DatasetError(
                    f"{self.source}: video {video.video_id!r} has label {inst.label!r}, "
                    f"which the label map ({len(self.label_map)} labels) lacks"
                ) from None
        return [0] * len(indices) if self.class_agnostic else indices

    def _weak_entry(self, video: Video, meta: dict, timing: FeatureTiming, length: int) -> _Entry:
        """Video-level labels only: the classes of the instances, not their segments."""
        classes = set(self._label_indices(video))
        duration = video.duration if video.duration is not None else float(meta["duration"])
        return _Entry(
            video_id=video.video_id,
            num_features=length,
            timing=timing,
            duration=float(duration),
            stored_duration=float(meta["duration"]),
            segments=np.zeros((0, 2)),
            labels=np.asarray(sorted(classes), dtype=np.int64),
        )

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def video_ids(self) -> list[str]:
        """Ids of the usable videos, in annotation order (item ``i`` is ``video_ids[i]``)."""
        return [entry.video_id for entry in self._entries]

    def index_of(self, video_id: str) -> int:
        """Item index of ``video_id``; KeyError if it is not usable here."""
        try:
            return self._index[video_id]
        except KeyError:
            raise KeyError(
                f"video {video_id!r} is not in this dataset ({self.source}, subsets "
                f"{list(self.subsets)}, store {self.store_location})"
            ) from None

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._index

    @property
    def feat_dim(self) -> int:
        """Channels C of ``feats`` (from the store's ``feature_dims``, else one read)."""
        dims = self.store.attrs.get("feature_dims") or {}
        if all(m in dims for m in self.modalities):
            return int(sum(dims[m] for m in self.modalities))
        return int(self._features(self._entries[0].video_id).shape[1])

    def set_epoch(self, epoch: int) -> None:
        """Select the crop windows of ``epoch`` (call before each training epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> VideoItem:
        return self.load(index)

    def labels(self, index: int) -> np.ndarray:
        """Label indices of item ``index``'s whole video, from memory (no feature read)."""
        return self._entries[index].labels

    def load(self, index: int, stream: int = 0, keep_label: int | None = None) -> VideoItem:
        """Item ``index``; ``stream`` picks an independent crop (PairDataset uses it so that
        a video's crop in one pair does not fix its crop in every other pair). With
        ``keep_label`` a training crop is a window that keeps a random instance of that class
        (when the video has one that some window keeps); see ``PairDataset``."""
        entry = self._entries[index]
        feats = self._features(entry.video_id)
        segments, labels, offset = entry.segments, entry.labels, 0
        length = entry.num_features
        if self.training and self.max_seq_len is not None:
            if self.weak:  # no segments to keep: resample the whole video
                if length > self.max_seq_len:
                    feats = feats[self._resample(length, index, stream)]
            else:
                window = self._crop(entry, index, stream, keep_label)
                if window is not None:
                    offset, size, segments, labels = window
                    feats = feats[offset : offset + size]
        return VideoItem(
            video_id=entry.video_id,
            feats=torch.from_numpy(np.array(feats.T, dtype=np.float32, order="C")),
            segments=torch.from_numpy(np.asarray(segments, dtype=np.float32).reshape(-1, 2)),
            labels=torch.from_numpy(np.asarray(labels, dtype=np.int64).reshape(-1)),
            timing=entry.timing,
            duration=entry.duration,
            num_features=entry.num_features,
            offset=offset,
        )

    def _generator(self, index: int, stream: int) -> torch.Generator:
        # SeedSequence mixes the four numbers, so (epoch 1, item 0) and (epoch 0, item 1)
        # draw unrelated windows (a plain sum would make them equal).
        state = np.random.SeedSequence([self.seed, self.epoch, index, stream])
        generator = torch.Generator()
        generator.manual_seed(int(state.generate_state(1, np.uint64)[0]))
        return generator

    def _resample(self, length: int, index: int, stream: int) -> np.ndarray:
        """``max_seq_len`` increasing indices into ``length`` points, one per equal bin."""
        assert self.max_seq_len is not None
        bins = np.linspace(0, length, self.max_seq_len + 1)
        draw = torch.rand(self.max_seq_len, generator=self._generator(index, stream)).numpy()
        picks = np.floor(bins[:-1] + draw * (bins[1:] - bins[:-1])).astype(np.int64)
        return np.clip(picks, 0, length - 1)

    def _crop(
        self, entry: _Entry, index: int, stream: int, keep_label: int | None = None
    ) -> tuple[int, int, np.ndarray, np.ndarray] | None:
        """``(start, length, segments, labels)`` of the training window, or None to keep the
        whole video (see the module docstring)."""
        assert self.max_seq_len is not None
        generator = self._generator(index, stream)
        total = entry.num_features
        has_instances = len(entry.labels) > 0
        size = self.max_seq_len
        if total <= self.max_seq_len:
            if self.crop_ratio is None or not has_instances:
                return None
            low = max(round(self.crop_ratio[0] * total), 1)
            high = min(round(self.crop_ratio[1] * total), total)
            size = int(torch.randint(low, high + 1, (1,), generator=generator).item())
            if size == total:
                return None
        bounds = window_bounds(self.crop_bounds, entry.timing)
        starts = total - size + 1
        if keep_label is not None:
            start = self._start_keeping(entry, size, keep_label, bounds, generator)
            if start is not None:
                kept, keep = crop_segments(
                    entry.segments, start, size, self.trunc_threshold, bounds
                )
                return start, size, kept, entry.labels[keep]
        window = None
        for _ in range(self.crop_tries if has_instances else 1):
            start = int(torch.randint(starts, (1,), generator=generator).item())
            kept, keep = crop_segments(entry.segments, start, size, self.trunc_threshold, bounds)
            window = (start, size, kept, entry.labels[keep])
            if keep.any():
                break
        return window  # ActionFormer keeps the last window drawn when none keeps an instance

    def _start_keeping(
        self,
        entry: _Entry,
        size: int,
        label: int,
        bounds: tuple[float, float],
        generator: torch.Generator,
    ) -> int | None:
        """A random start of a ``size`` window that keeps a random instance of ``label``
        (drawn among the instances some window keeps), or None when there is none."""
        starts = np.arange(entry.num_features - size + 1)
        low, high = starts - bounds[0], starts + size + bounds[1]
        choices = []
        for row in np.flatnonzero(entry.labels == label):
            s, e = entry.segments[row]
            overlap = np.minimum(e, high) - np.maximum(s, low)
            ok = (overlap > 0) & (overlap >= self.trunc_threshold * (e - s))
            if ok.any():
                choices.append(starts[ok])
        if not choices:
            return None
        pick = choices[int(torch.randint(len(choices), (1,), generator=generator).item())]
        return int(pick[int(torch.randint(len(pick), (1,), generator=generator).item())])

    def _features(self, video_id: str) -> np.ndarray:
        feats = self._cache.get(video_id)
        if feats is None:
            feats = np.asarray(self.store.read(video_id, self.modalities), dtype=np.float32)
            expected = self._entries[self._index[video_id]].num_features
            if feats.ndim != 2 or feats.shape[0] != expected:
                raise DatasetError(
                    f"feature store {self.store_location}: video {video_id!r} has features "
                    f"{feats.shape}, its metadata says {expected} features"
                )
            self._cache.put(video_id, feats)
        return feats

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers reopen the store and start with an empty cache.
        state = self.__dict__.copy()
        state["_store"] = None
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = _LRU(self._cache_bytes)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def pad_features(
    sequences: Sequence[torch.Tensor], length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[C, T_i]`` sequences -> float32 ``[B, C, length]`` zero padded at the end and masks
    ``[B, length]`` (True = real feature)."""
    channels = {int(x.shape[0]) for x in sequences}
    if len(channels) != 1:
        raise ValueError(f"collate: items have different channel counts {sorted(channels)}")
    feats = torch.zeros((len(sequences), channels.pop(), length), dtype=torch.float32)
    masks = torch.zeros((len(sequences), length), dtype=torch.bool)
    for row, x in enumerate(sequences):
        feats[row, :, : x.shape[1]] = x
        masks[row, : x.shape[1]] = True
    return feats, masks


def padded_length(length: int, divisible_by: int) -> int:
    """``length`` rounded up to a multiple of ``divisible_by`` (the pyramid's largest stride)."""
    return _round_up(length, divisible_by)


@dataclass
class Batch:
    """Videos padded to one length: ``feats`` ``[B, C, T_pad]`` zero padded at the end,
    ``masks`` ``[B, T_pad]`` (True = real feature), and per video its ``segments`` ``[N, 2]``
    (feature steps), ``labels`` ``[N]``, id and item."""

    feats: torch.Tensor
    masks: torch.Tensor
    segments: list[torch.Tensor]
    labels: list[torch.Tensor]
    video_ids: list[str]
    items: list[VideoItem]

    def __len__(self) -> int:
        return len(self.video_ids)

    def join(self, other: Batch) -> Batch:
        """This batch followed by ``other`` (same ``T_pad``) as one batch."""
        return Batch(
            torch.cat([self.feats, other.feats]),
            torch.cat([self.masks, other.masks]),
            self.segments + other.segments,
            self.labels + other.labels,
            self.video_ids + other.video_ids,
            self.items + other.items,
        )


def _pad(items: Sequence[VideoItem], length: int) -> Batch:
    feats, masks = pad_features([item.feats for item in items], length)
    return Batch(
        feats,
        masks,
        [item.segments for item in items],
        [item.labels for item in items],
        [item.video_id for item in items],
        list(items),
    )


def _padded_length(items: Sequence[VideoItem], divisible_by: int, max_len: int | None) -> int:
    if not items:
        raise ValueError("collate: empty batch")
    if isinstance(divisible_by, bool) or divisible_by < 1:
        raise ValueError(f"collate: divisible_by must be an int >= 1, got {divisible_by!r}")
    longest = max(items, key=lambda item: item.length)
    if max_len is not None and longest.length > max_len:
        raise ValueError(
            f"collate: video {longest.video_id!r} has {longest.length} features, more than "
            f"max_len {max_len} (crop it in training with max_seq_len)"
        )
    return _round_up(longest.length, divisible_by)


def collate(items: list[VideoItem], divisible_by: int, max_len: int | None = None) -> Batch:
    """Batch items (see ``Batch``).

    ``T_pad`` is the longest item's length rounded up to a multiple of ``divisible_by`` (the
    pyramid's largest stride). ``max_len``, when given, is a limit: a longer item is a
    ValueError naming the video (it does not change ``T_pad``).
    """
    return _pad(items, _padded_length(items, divisible_by, max_len))


class PairDataset(Dataset):
    """``(item_a, item_b)`` for each row of a pairs table whose two videos are in ``base``.

    ``pairs`` is a pyarrow Table (or a Parquet path) with columns ``video_a`` and
    ``video_b``, or a list of ``(video_a, video_b)`` tuples. Rows naming a video that ``base``
    lacks are skipped (listed in ``dropped``). Every video of ``base`` that is ``video_a`` of no
    kept row gets one entry paired with itself (listed in ``self_paired``; the item is then
    the same object on both sides), so an epoch visits every video at least once as
    ``item_a``. Entries come in table order, then the self pairs in ``base`` order.

    ``pair_crop`` (when ``base`` crops): ``shared_action`` draws, per pair and epoch, one class
    the two videos share (from their annotations; the table's ``shared_labels`` is not
    needed) and crops each video to a window that keeps a random instance of it, so both
    crops contain the shared action; a pair without a shared class, or a video whose
    instances of it no window keeps, falls back to the plain crop. ``independent`` crops the
    two videos as unrelated items (the former behaviour, and right for methods that take no
    partner: there the pairs are only a way to walk the videos).

    ``partner_draw``: ``table`` makes every kept row one item of every epoch (a video with
    ``k`` partners is ``item_a`` ``k`` times, always beside the same videos). ``each_epoch``
    makes every video one item of every epoch, whose partner is drawn anew in each epoch
    (``set_epoch``; seeded by the base's seed, the epoch and the video) among the video's rows
    of the table: with a table of all partners (a large ``pairs.per_video``) that is any
    video sharing a class, as the official CO2-Net draws its similar pairs afresh each step.
    """

    def __init__(
        self,
        base: FeatureDataset,
        pairs: Any,
        pair_crop: PairCrop = "independent",
        partner_draw: PartnerDraw = "table",
    ):
        if pair_crop not in ("shared_action", "independent"):
            raise DatasetError(
                f"pair_crop must be 'shared_action' or 'independent', got {pair_crop!r}"
            )
        if partner_draw not in ("table", "each_epoch"):
            raise DatasetError(
                f"partner_draw must be 'table' or 'each_epoch', got {partner_draw!r}"
            )
        self.base = base
        self.pair_crop: PairCrop = pair_crop
        self.partner_draw: PartnerDraw = partner_draw
        rows = _pair_rows(pairs)
        self.pairs: list[tuple[int, int]] = []
        self.dropped: list[tuple[str, str]] = []
        firsts: set[str] = set()
        for video_a, video_b in rows:
            if video_a in base and video_b in base:
                self.pairs.append((base.index_of(video_a), base.index_of(video_b)))
                firsts.add(video_a)
            else:
                self.dropped.append((video_a, video_b))
        self.self_paired = [vid for vid in base.video_ids if vid not in firsts]
        self.pairs.extend((base.index_of(vid), base.index_of(vid)) for vid in self.self_paired)
        # each_epoch: every video's candidate partners, in the order of its first row
        self.candidates: dict[int, list[int]] = {}
        for index_a, index_b in self.pairs:
            self.candidates.setdefault(index_a, []).append(index_b)
        if partner_draw == "each_epoch":
            self._draw_partners()
        if self.dropped:
            log.warning(
                "pairs: %d of %d rows name videos outside the dataset and are skipped",
                len(self.dropped),
                len(rows),
            )
        if self.self_paired:
            log.info(
                "pairs: %d videos have no partner and pair with themselves", len(self.self_paired)
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the base dataset (crop windows per epoch); with ``each_epoch``, the
        epoch's partners are drawn."""
        self.base.set_epoch(epoch)
        if self.partner_draw == "each_epoch":
            self._draw_partners()

    def _draw_partners(self) -> None:
        """One item per video, its partner drawn uniformly among its candidates for the
        base's current epoch (the same on every rank)."""
        drawn = []
        for index_a, partners in self.candidates.items():
            generator = self.base._generator(index_a, _PARTNER_STREAM)
            pick = int(torch.randint(len(partners), (1,), generator=generator).item())
            drawn.append((index_a, partners[pick]))
        self.pairs = drawn

    def __getitem__(self, index: int) -> tuple[VideoItem, VideoItem]:
        index_a, index_b = self.pairs[index]
        if index_a == index_b:
            item_a = self.base.load(index_a, stream=2 * index + 1)
            return item_a, item_a
        label = self.shared_label(index) if self.pair_crop == "shared_action" else None
        return (
            self.base.load(index_a, stream=2 * index + 1, keep_label=label),
            self.base.load(index_b, stream=2 * index + 2, keep_label=label),
        )

    def shared_label(self, index: int) -> int | None:
        """The class pair ``index`` is cropped around in this epoch: one of the classes its
        two videos share, drawn uniformly (None when they share none)."""
        index_a, index_b = self.pairs[index]
        shared = sorted(
            set(self.base.labels(index_a).tolist()) & set(self.base.labels(index_b).tolist())
        )
        if not shared:
            return None
        if len(shared) == 1:
            return int(shared[0])
        draw = torch.randint(len(shared), (1,), generator=self.base._generator(index, 0))
        return int(shared[int(draw.item())])


def _pair_rows(pairs: Any) -> list[tuple[str, str]]:
    if isinstance(pairs, (str, os.PathLike)):
        import pyarrow.parquet as pq

        pairs = pq.read_table(pairs)
    if hasattr(pairs, "column_names"):  # a pyarrow Table
        missing = [c for c in ("video_a", "video_b") if c not in pairs.column_names]
        if missing:
            raise DatasetError(
                f"pairs table: missing columns {missing}; it has {pairs.column_names}"
            )
        return list(
            zip(
                pairs.column("video_a").to_pylist(),
                pairs.column("video_b").to_pylist(),
                strict=True,
            )
        )
    rows = []
    for row in pairs:
        if len(row) != 2:
            raise DatasetError(f"pairs: expected (video_a, video_b) tuples, got {row!r}")
        rows.append((row[0], row[1]))
    return rows


def collate_pairs(
    batch: list[tuple[VideoItem, VideoItem]], divisible_by: int, max_len: int | None = None
) -> tuple[Batch, Batch]:
    """Batch pairs into ``(batch_a, batch_b)``, each as ``collate`` makes it; both sides share
    one ``T_pad`` so that a model may run them through its backbone as one batch."""
    if not batch:
        raise ValueError("collate_pairs: empty batch")
    firsts = [a for a, _ in batch]
    seconds = [b for _, b in batch]
    length = _padded_length(firsts + seconds, divisible_by, max_len)
    return _pad(firsts, length), _pad(seconds, length)

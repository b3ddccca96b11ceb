"""Trimmed clips for backbone training: windows on action instances and on background.

A video resampled to ``fps`` has ``num_frames`` frames (``features.video.resampled_indices``,
the same clock feature extraction uses). Every action instance gives a window of
``clip_length`` frames centred on the instance (or ``clips_per_instance`` windows spread
across an instance longer than one clip); background windows, which overlap no action of
their video, add about ``background_ratio`` times as many clips labelled ``num_classes`` (one
extra class). Windows are planned from the annotations and the videos' frame counts alone,
deterministically for a seed, and then decoded: uint8 RGB (short side resized, centre crop),
or optical flow computed as extraction computes it (frame i to frame i + 1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from features.errors import UserInputError
from features.flow import compute_flow
from features.video import (
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    center_crop,
    find_video_file,
    probe_video,
    read_frames,
    resampled_indices,
    resize_for_crop,
)
from tal.data.annotations import AnnotationSet, LabelMap, Video

logger = logging.getLogger(__name__)

BACKGROUND = "background"


class BackboneError(UserInputError):
    """Backbone training input that cannot be used (no clips, no device); says why."""


@dataclass(frozen=True)
class ClipWindow:
    """``length`` frames from frame ``start`` of a video resampled to ``fps``, and a label."""

    video_id: str
    start: int
    length: int
    label: int
    fps: float

    @property
    def start_time(self) -> float:
        return self.start / self.fps

    @property
    def end_time(self) -> float:
        return (self.start + self.length) / self.fps


@dataclass
class ClipSet:
    """Decoded clips of one subset: ``clips`` [N, T, S, S, C] (uint8 RGB or float16 flow)."""

    clips: np.ndarray
    labels: np.ndarray  # int64 [N]; len(label_names) - 1 is background
    windows: list[ClipWindow]
    label_names: list[str]
    skipped: list[str] = field(default_factory=list)  # "path: reason" of videos left out

    def __len__(self) -> int:
        return len(self.labels)


def class_names(label_map: LabelMap) -> list[str]:
    """Action class names then the background class (renamed if a class is already so called)."""
    background = BACKGROUND
    while background in label_map:
        background = f"_{background}"
    return [*label_map.names, background]


def _instance_windows(
    start_s: float, end_s: float, fps: float, num_frames: int, length: int, count: int
) -> list[int]:
    """Start frames of the windows on one instance, clamped to the video."""
    lo, hi = start_s * fps, end_s * fps
    if count > 1 and hi - lo > length:
        centres = np.linspace(lo + length / 2, hi - length / 2, count)
    else:
        centres = np.array([(lo + hi) / 2])
    last = max(num_frames - length, 0)
    starts = np.clip(np.round(centres - length / 2).astype(np.int64), 0, last)
    return sorted({int(s) for s in starts})


def _background_starts(
    instances: Sequence[tuple[float, float]], fps: float, num_frames: int, length: int
) -> np.ndarray:
    """Every start frame whose window lies in the video and overlaps no instance."""
    if num_frames < length:
        return np.zeros(0, np.int64)
    covered = np.zeros(num_frames, bool)
    for start_s, end_s in instances:
        lo = max(int(np.floor(start_s * fps)), 0)
        hi = min(int(np.ceil(end_s * fps)), num_frames)
        covered[lo:hi] = True
    sums = np.concatenate([[0], np.cumsum(covered)])
    starts = np.arange(num_frames - length + 1)
    return starts[sums[starts + length] - sums[starts] == 0]


def plan_windows(
    videos: Sequence[Video],
    timing: Mapping[str, tuple[int, float]],
    label_map: LabelMap,
    clip_length: int,
    clips_per_instance: int = 1,
    background_ratio: float = 0.5,
    seed: int = 0,
) -> list[ClipWindow]:
    """Action and background windows of ``videos``; the same inputs give the same list.

    ``timing`` maps a video id to ``(num_frames, fps)`` after resampling; videos without an
    entry (not decodable) are left out. Background windows are drawn, without replacement,
    from all non-overlapping start frames of all videos, ``round(background_ratio x action
    windows)`` of them (fewer if there is not that much background).
    """
    if clip_length < 1 or clips_per_instance < 1 or background_ratio < 0:
        raise ValueError(
            f"clip_length and clips_per_instance must be >= 1 and background_ratio >= 0, got "
            f"{clip_length}, {clips_per_instance}, {background_ratio}"
        )
    background = len(label_map)
    actions: list[ClipWindow] = []
    candidates: list[tuple[str, int, float]] = []
    for video in videos:
        if video.video_id not in timing:
            continue
        num_frames, fps = timing[video.video_id]
        for inst in video.instances:
            label = label_map.index(inst.label)
            for start in _instance_windows(
                inst.start, inst.end, fps, num_frames, clip_length, clips_per_instance
            ):
                actions.append(ClipWindow(video.video_id, start, clip_length, label, fps))
        spans = [(inst.start, inst.end) for inst in video.instances]
        free = _background_starts(spans, fps, num_frames, clip_length)
        candidates += [(video.video_id, int(s), fps) for s in free]
    wanted = min(round(background_ratio * len(actions)), len(candidates))
    rng = np.random.default_rng([seed, 0xB6])
    picked = sorted(rng.choice(len(candidates), size=wanted, replace=False).tolist())
    backgrounds = [
        ClipWindow(vid, start, clip_length, background, fps)
        for vid, start, fps in (candidates[i] for i in picked)
    ]
    order = {v.video_id: i for i, v in enumerate(videos)}
    return sorted(actions + backgrounds, key=lambda w: (order[w.video_id], w.start, w.label))


def decode_windows(
    path: str | os.PathLike[str],
    windows: Sequence[ClipWindow],
    fps: float | None,
    input_size: int,
    modality: str = "rgb",
    flow_method: str = "tvl1",
) -> np.ndarray:
    """Clips of one video: uint8 ``[N, T, S, S, 3]`` (rgb) or float16 ``[N, T, S, S, 2]`` (flow).

    Frames past the end repeat the last frame, as extraction pads short videos. Flow of frame
    i is computed towards frame i + 1, so each flow clip decodes one frame more.
    """
    if modality not in ("rgb", "flow"):
        raise ValueError(f"modality {modality!r}: expected rgb or flow")
    info = probe_video(path)
    indices = resampled_indices(info.num_frames, info.fps, fps)
    extra = 1 if modality == "flow" else 0
    positions = [
        np.minimum(np.arange(w.start, w.start + w.length + extra), len(indices) - 1)
        for w in windows
    ]
    sources = indices[np.concatenate(positions)] if positions else np.zeros(0, np.int64)
    unique, inverse = np.unique(sources, return_inverse=True)
    dims = resize_for_crop(info.width, info.height, input_size)
    frames = center_crop(read_frames(path, unique, dims), input_size)
    clips = frames[inverse].reshape(len(windows), -1, input_size, input_size, 3)
    if modality == "rgb":
        return np.ascontiguousarray(clips)
    flows = [compute_flow(clip, flow_method)[:-1] for clip in clips]
    return np.stack(flows).astype(np.float16)


def video_timing(
    videos: Sequence[Video],
    video_dir: str | os.PathLike[str],
    fps: float | None,
    extensions: Sequence[str],
) -> tuple[dict[str, tuple[int, float]], dict[str, Path], list[str]]:
    """Frame count and fps after resampling, and the file, of each decodable video.

    Videos that cannot be found or opened are logged as warnings and listed as
    ``"path: reason"`` in the third value, not raised.
    """
    timing: dict[str, tuple[int, float]] = {}
    files: dict[str, Path] = {}
    skipped: list[str] = []
    for video in videos:
        try:
            path = find_video_file(video_dir, video.video_id, extensions)
            info = probe_video(path)
        except VideoDecodeError as exc:
            logger.warning("skipping video %s: %s", video.video_id, exc)
            skipped.append(str(exc))
            continue
        timing[video.video_id] = (
            len(resampled_indices(info.num_frames, info.fps, fps)),
            fps or info.fps,
        )
        files[video.video_id] = path
    return timing, files, skipped


def build_clip_set(
    annotations: AnnotationSet,
    video_dir: str | os.PathLike[str],
    subsets: Sequence[str],
    *,
    clip_length: int,
    input_size: int,
    fps: float | None,
    modality: str = "rgb",
    flow_method: str = "tvl1",
    clips_per_instance: int = 1,
    background_ratio: float = 0.5,
    seed: int = 0,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    log: Callable[[str], None] | None = None,
) -> ClipSet:
    """Plan and decode the trimmed clips of ``subsets``; labels index the whole set's classes.

    A video that fails to decode is skipped with a warning (listed in ``skipped``). No clip
    at all is a BackboneError naming the annotation file and the subsets.
    """
    label_map = annotations.label_map()
    videos = annotations.subset(*subsets)
    where = f"{annotations.source}: subset {'+'.join(subsets)}"
    if not videos:
        raise BackboneError(f"{where}: no videos in this subset")
    if not any(v.instances for v in videos):
        raise BackboneError(f"{where}: no action instances, so no clips to train or validate on")
    timing, files, skipped = video_timing(videos, video_dir, fps, extensions)
    windows = plan_windows(
        videos, timing, label_map, clip_length, clips_per_instance, background_ratio, seed
    )
    clips: list[np.ndarray] = []
    kept: list[ClipWindow] = []
    for video_id, path in files.items():
        mine = [w for w in windows if w.video_id == video_id]
        if not mine:
            continue
        try:
            clips.append(decode_windows(path, mine, fps, input_size, modality, flow_method))
        except VideoDecodeError as exc:
            logger.warning("skipping video %s: %s", video_id, exc)
            skipped.append(str(exc))
            continue
        kept += mine
        if log is not None:
            log(f"  {video_id}: {len(mine)} clips")
    if not kept:
        reason = f" ({len(skipped)} videos could not be decoded)" if skipped else ""
        raise BackboneError(f"{where}: no clips could be cut from {video_dir}{reason}")
    return ClipSet(
        clips=np.concatenate(clips),
        labels=np.array([w.label for w in kept], np.int64),
        windows=kept,
        label_names=class_names(label_map),
        skipped=skipped,
    )

"""Video files through decord: probing and frame reads with errors that name the file.

decord 0.6 can over-report ``len(vr)`` near a broken end and spin forever on such frames
(decord issue 373), so reads are clamped to frames that actually decode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.errors import UserInputError

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".avi", ".webm", ".mov")
"""File name endings taken as videos by default (the project's one list)."""


class VideoDecodeError(UserInputError):
    """A video that cannot be opened or decoded; the message names the file and the cause."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself (as decord reads it)."""

    path: str
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


def _open(path: str | os.PathLike[str], width: int = -1, height: int = -1):
    import decord  # imported here: decord is heavy and only readers need it

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: video file is empty (0 bytes)")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height)
    except Exception as exc:  # decord raises its own DECORDError and RuntimeError
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VideoDecodeError(
            f"{path}: cannot open as a video: truncated, corrupt or not a video file "
            f"(decord: {cause})"
        ) from None


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame count, fps and size of a video file."""
    vr = _open(path)
    num_frames = len(vr)
    if num_frames <= 0:
        raise VideoDecodeError(f"{path}: the video has no frames")
    height, width = vr[0].shape[:2]
    return VideoInfo(str(path), num_frames, float(vr.get_avg_fps()), int(width), int(height))


def read_frames(
    path: str | os.PathLike[str],
    indices: Sequence[int] | np.ndarray | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode frames ``indices`` (default: all) as uint8 ``[N, H, W, 3]`` RGB.

    ``size`` = (width, height) lets decord resize while decoding.
    """
    width, height = size if size is not None else (-1, -1)
    vr = _open(path, width, height)
    n = len(vr)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise VideoDecodeError(
            f"{path}: frame indices {int(idx.min())}..{int(idx.max())} outside 0..{n - 1}"
        )
    try:
        frames = vr.get_batch(idx.tolist()).asnumpy()
    except Exception as exc:
        raise VideoDecodeError(f"{path}: decoding failed ({exc})") from None
    finally:
        vr.seek(0)  # the usual workaround for decord's memory growth after get_batch
    return frames


def resampled_indices(num_frames: int, native_fps: float, target_fps: float | None) -> np.ndarray:
    """Source frame shown at each tick of a ``target_fps`` clock, by timestamp.

    Tick k is at ``k / target_fps`` seconds; it shows the last source frame that started at or
    before it (frame i starts at ``i / native_fps``). Ticks cover the video's duration
    ``num_frames / native_fps``, so there are ``ceil(num_frames * target_fps / native_fps)``.
    ``target_fps`` None keeps every frame.
    """
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if target_fps is None or abs(target_fps - native_fps) < 1e-6:
        return np.arange(num_frames, dtype=np.int64)
    if target_fps <= 0 or native_fps <= 0:
        raise ValueError(f"fps must be > 0, got native {native_fps}, target {target_fps}")
    count = int(np.ceil(num_frames * target_fps / native_fps - 1e-9))
    ticks = np.arange(count, dtype=np.float64) / target_fps
    return np.minimum(np.floor(ticks * native_fps + 1e-6).astype(np.int64), num_frames - 1)


def resize_for_crop(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the short side scaled to ``size``, aspect kept."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` window of ``[N, H, W, C]`` frames."""
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top : top + size, left : left + size]


def iter_frames(
    path: str | os.PathLike[str],
    fps: float | None = None,
    size: int | None = None,
    batch: int = 128,
) -> tuple[VideoInfo, np.ndarray, Iterator[np.ndarray]]:
    """Decode a video resampled to ``fps`` and centre-cropped to ``size``, in batches.

    Returns the file's info, the source index of every output frame, and an iterator of
    uint8 ``[n, size, size, 3]`` batches (bounded memory for long videos).
    """
    info = probe_video(path)
    indices = resampled_indices(info.num_frames, info.fps, fps)
    dims = resize_for_crop(info.width, info.height, size) if size else None

    def batches() -> Iterator[np.ndarray]:
        for lo in range(0, len(indices), batch):
            frames = read_frames(path, indices[lo : lo + batch], dims)
            yield center_crop(frames, size) if size else frames

    return info, indices, batches()


def find_video_file(
    video_dir: str | os.PathLike[str], video_id: str, extensions: Sequence[str]
) -> Path:
    """The file of ``video_id`` in ``video_dir`` (first matching extension)."""
    folder = Path(video_dir)
    for ext in extensions:
        candidate = folder / f"{video_id}{ext}"
        if candidate.is_file():
            return candidate
    raise VideoDecodeError(
        f"{folder / video_id}: no video file for id {video_id!r} "
        f"(looked for extensions {', '.join(extensions)})"
    )

"""Video files through decord: probing and frame reads with errors that name the file.

decord 0.6 can over-report ``len(vr)`` near a broken end and spin forever on such frames
(decord issue 373), so reads are clamped to frames that actually decode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class VideoDecodeError(RuntimeError):
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
        raise VideoDecodeError(f"{path}: cannot open as a video ({cause})") from None


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

"""Clip windows over a frame sequence: THE formulas for feature count and timing.

A video resampled to ``fps`` has ``num_frames`` frames. Clips of ``clip_length`` frames start
every ``stride`` frames::

    num_features = max(1, (num_frames - clip_length) // stride + 1)
    start_i      = i * stride
    centre_i     = (i * stride + clip_length / 2) / fps      seconds

A video shorter than one clip still gives one feature: its last frame is repeated to fill
the clip. With the THUMOS14 convention (16 frames, stride 4, 30 fps) feature i is centred on
frame 4i + 8, as in ActionFormer's features.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def num_features(num_frames: int, clip_length: int, stride: int) -> int:
    """Number of clips (features) of a ``num_frames`` sequence."""
    if num_frames < 1 or clip_length < 1 or stride < 1:
        raise ValueError(
            f"num_frames, clip_length and stride must be >= 1, got {num_frames}, {clip_length}, {stride}"
        )
    return max(1, (num_frames - clip_length) // stride + 1)


def feature_centers(count: int, clip_length: int, stride: int, fps: float) -> np.ndarray:
    """Centre time in seconds of each of ``count`` features."""
    return (np.arange(count) * stride + clip_length / 2) / fps


class ClipCutter:
    """Cuts clips ``[clip_length, ...]`` from a frame sequence that arrives in batches.

    Keeps only the frames that later clips still need, so memory stays bounded for long
    videos. A sequence shorter than one clip is padded with its last frame. Works for any
    per-frame array (RGB frames, flow fields).
    """

    def __init__(self, num_frames: int, clip_length: int, stride: int) -> None:
        self.total = num_features(num_frames, clip_length, stride)
        self.clip_length = clip_length
        self.stride = stride
        self.buffer: np.ndarray | None = None
        self.offset = 0  # index of buffer[0] in the whole sequence
        self.emitted = 0

    def push(self, batch: np.ndarray) -> list[np.ndarray]:
        """The clips that ``batch`` completes."""
        self.buffer = batch if self.buffer is None else np.concatenate([self.buffer, batch])
        out = []
        while self.emitted < self.total:
            start = self.emitted * self.stride - self.offset
            if start + self.clip_length > len(self.buffer):
                break
            out.append(self.buffer[start : start + self.clip_length])
            self.emitted += 1
        drop = self.emitted * self.stride - self.offset
        if drop > 0:
            self.buffer = self.buffer[drop:]
            self.offset += drop
        return out

    def finish(self) -> list[np.ndarray]:
        """The padded last clip of a sequence that ended before the formula's count."""
        if self.emitted >= self.total:
            return []
        if self.buffer is None or len(self.buffer) == 0:
            raise ValueError("no frames decoded: cannot make a clip")
        start = self.emitted * self.stride - self.offset
        clip = self.buffer[start:]
        pad = self.clip_length - len(clip)
        self.emitted += 1
        return [np.concatenate([clip, np.repeat(clip[-1:], pad, axis=0)])]


def iter_clips(
    batches: Iterable[np.ndarray], num_frames: int, clip_length: int, stride: int
) -> Iterator[np.ndarray]:
    """Clips ``[clip_length, H, W, C]`` from frames that arrive in batches (see ClipCutter)."""
    cutter = ClipCutter(num_frames, clip_length, stride)
    for batch in batches:
        yield from cutter.push(batch)
    yield from cutter.finish()

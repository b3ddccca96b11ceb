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


def iter_clips(
    batches: Iterable[np.ndarray], num_frames: int, clip_length: int, stride: int
) -> Iterator[np.ndarray]:
    """Clips ``[clip_length, H, W, C]`` from frames that arrive in batches.

    Keeps only the frames that later clips still need, so memory stays bounded for long
    videos. A sequence shorter than one clip is padded with its last frame.
    """
    total = num_features(num_frames, clip_length, stride)
    buffer: np.ndarray | None = None
    offset = 0  # index of buffer[0] in the whole sequence
    emitted = 0
    for batch in batches:
        buffer = batch if buffer is None else np.concatenate([buffer, batch])
        while emitted < total:
            start = emitted * stride - offset
            if start + clip_length > len(buffer):
                break
            yield buffer[start : start + clip_length]
            emitted += 1
        drop = emitted * stride - offset
        if drop > 0:
            buffer = buffer[drop:]
            offset += drop
    if emitted < total:
        if buffer is None or len(buffer) == 0:
            raise ValueError("no frames decoded: cannot make a clip")
        start = emitted * stride - offset
        pad = clip_length - (len(buffer) - start)
        clip = buffer[start:]
        yield np.concatenate([clip, np.repeat(clip[-1:], pad, axis=0)])

"""Motion-energy baseline: class-agnostic "something moves more than usual" segments.

Each frame's motion energy is the mean absolute difference of grayscale pixels to the previous
frame. Segments where the smoothed, per-video normalised energy is high become detections of
every class, scored by that energy times the class's share of the training instances. It has
no notion of appearance or of which motion, so on a benchmark whose classes differ in motion
pattern and appearance, and whose backgrounds move, it stays far below a real localizer.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from tal.data.annotations import Video


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """Per-frame motion energy of uint8 ``[N, H, W, 3]`` frames (frame 0 copies frame 1)."""
    gray = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if len(gray) < 2:
        return np.zeros(len(gray), dtype=np.float32)
    diff = np.abs(np.diff(gray, axis=0)).mean(axis=(1, 2))
    return np.concatenate([diff[:1], diff]).astype(np.float32)


def class_priors(training_videos: list[Video]) -> dict[str, float]:
    """Share of each class among the training instances."""
    counts = Counter(inst.label for v in training_videos for inst in v.instances)
    total = sum(counts.values())
    if total == 0:
        raise ValueError("no training instances: the motion baseline needs class frequencies")
    return {label: n / total for label, n in sorted(counts.items())}


def motion_segments(
    energy: np.ndarray, fps: float, smooth_s: float = 0.5, min_length_s: float = 0.5
) -> list[tuple[float, float, float]]:
    """``(start_s, end_s, score)`` of high-motion runs in one video, score in (0, 1)."""
    if len(energy) == 0:
        return []
    k = max(1, round(smooth_s * fps))
    smooth = np.convolve(energy, np.ones(k) / k, mode="same")
    med = float(np.median(smooth))
    mad = float(np.median(np.abs(smooth - med))) + 1e-6
    z = (smooth - med) / mad
    active = np.r_[False, z > 1.0, False]
    edges = np.flatnonzero(np.diff(active.astype(np.int8)))
    segments = []
    for s, e in zip(edges[::2], edges[1::2], strict=True):
        if (e - s) / fps < min_length_s:
            continue
        strength = float(z[s:e].mean())
        segments.append((s / fps, e / fps, strength / (1.0 + strength)))
    return segments


def motion_baseline_detections(
    video_id: str, energy: np.ndarray, fps: float, priors: dict[str, float]
) -> list[tuple[str, str, float, float, float]]:
    """Detections ``(video_id, label, start, end, score)``: every segment for every class."""
    return [
        (video_id, label, start, end, score * prior)
        for start, end, score in motion_segments(energy, fps)
        for label, prior in priors.items()
    ]

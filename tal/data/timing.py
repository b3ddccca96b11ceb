"""Seconds <-> feature steps: the one conversion the localizer's data and outputs use.

Feature i of a video is centred at ``(i * stride + clip_length / 2) / fps`` seconds
(``features.clips.feature_centers``). The localizer works in *feature steps*, a continuous
coordinate in which feature i sits at step i, so a segment ``[s, e]`` in seconds becomes
``[(s * fps - clip_length / 2) / stride, (e * fps - clip_length / 2) / stride]``.

``fps`` is per video when the video's metadata has one. Resized (ActivityNet-style) stores,
``tal import-features --resized``, use it as the feature rate: ``stride = clip_length = 1``
and ``fps = T / duration``, so step i sits at ``(i + 0.5) * duration / T`` seconds
(ActionFormer's convention for fixed-length features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeatureTiming:
    """How one video's features map to time (from the feature store's attributes)."""

    fps: float
    stride: int
    clip_length: int

    @classmethod
    def from_store(cls, attrs: dict[str, Any], meta: dict[str, Any]) -> FeatureTiming:
        """From a store's root attributes and a video's metadata (per-video fps wins)."""
        fps = meta.get("fps") or attrs.get("fps")
        if not fps:
            raise ValueError("feature store gives no fps for this video (attrs and meta lack it)")
        return cls(float(fps), int(attrs["stride"]), int(attrs["clip_length"]))

    def to_steps(self, seconds: np.ndarray | float) -> np.ndarray:
        """Seconds -> feature steps (float)."""
        return (
            np.asarray(seconds, dtype=np.float64) * self.fps - self.clip_length / 2
        ) / self.stride

    def to_seconds(self, steps: np.ndarray | float) -> np.ndarray:
        """Feature steps -> seconds (float)."""
        return (np.asarray(steps, dtype=np.float64) * self.stride + self.clip_length / 2) / self.fps

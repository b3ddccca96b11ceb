"""Seconds <-> feature steps agree with the store's centre formula."""

from __future__ import annotations

import numpy as np
import pytest

from features.clips import feature_centers
from tal.data.timing import FeatureTiming


def test_steps_match_feature_centres():
    timing = FeatureTiming(fps=30.0, stride=4, clip_length=16)
    centres = feature_centers(10, 16, 4, 30.0)
    np.testing.assert_allclose(timing.to_steps(centres), np.arange(10), atol=1e-12)
    np.testing.assert_allclose(timing.to_seconds(np.arange(10)), centres)
    assert timing.to_steps(8 / 30) == pytest.approx(0.0)  # THUMOS14: feature 0 at frame 8


def test_round_trip_and_store_attrs():
    timing = FeatureTiming.from_store({"stride": 4, "clip_length": 16, "fps": None}, {"fps": 15})
    x = np.array([0.0, 1.25, 17.3])
    np.testing.assert_allclose(timing.to_seconds(timing.to_steps(x)), x)
    with pytest.raises(ValueError, match="no fps"):
        FeatureTiming.from_store({"stride": 4, "clip_length": 16}, {})


@pytest.mark.parametrize(("steps", "duration"), [(100, 82.73), (192, 61.719), (100, 5.0)])
def test_resized_store_timing_is_actionformers(steps, duration):
    """A resized store (``tal import-features --resized``: root stride = clip_length = 1,
    fps null; each video's fps = T / duration) against ActionFormer's formulas for
    fixed-length features, derived by hand from the official code: anet.py sets
    ``feat_stride = duration * fps / T``, ``num_frames = feat_stride``,
    ``feat_offset = 0.5 * num_frames / feat_stride`` and maps seconds to
    ``seconds * fps / feat_stride - feat_offset``; meta_archs.py maps steps back with
    ``(steps * feat_stride + 0.5 * num_frames) / fps``. Their fps (25) cancels out."""
    timing = FeatureTiming.from_store(
        {"stride": 1, "clip_length": 1, "fps": None}, {"fps": steps / duration}
    )
    af_fps = 25.0
    feat_stride = duration * af_fps / steps
    num_frames = feat_stride
    feat_offset = 0.5 * num_frames / feat_stride
    seconds = np.array([0.0, 0.37, duration / 2, duration])
    np.testing.assert_allclose(
        timing.to_steps(seconds), seconds * af_fps / feat_stride - feat_offset, atol=1e-12
    )
    grid = np.array([-0.5, 0.0, 3.25, steps - 1, steps - 0.5])
    np.testing.assert_allclose(
        timing.to_seconds(grid), (grid * feat_stride + 0.5 * num_frames) / af_fps, atol=1e-12
    )
    # the T steps tile [0, duration]: the feature range [-0.5, T - 0.5] is the whole video
    np.testing.assert_allclose(timing.to_seconds([-0.5, steps - 0.5]), [0.0, duration])

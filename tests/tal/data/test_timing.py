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

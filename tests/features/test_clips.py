"""Clip windows: the feature-count and timing formulas, streaming and padding."""

from __future__ import annotations

import numpy as np
import pytest

from features.clips import feature_centers, iter_clips, num_features


def test_formulas():
    assert num_features(100, 16, 4) == 22  # (100 - 16) // 4 + 1
    assert num_features(16, 16, 4) == 1 and num_features(5, 16, 4) == 1
    centres = feature_centers(3, 16, 4, 30.0)
    np.testing.assert_allclose(centres, np.array([8, 12, 16]) / 30.0)  # frame 4i + 8
    with pytest.raises(ValueError, match="must be >= 1"):
        num_features(0, 16, 4)


@pytest.mark.parametrize(("n", "batch"), [(100, 7), (100, 100), (37, 16), (16, 3)])
def test_streamed_clips_equal_direct_slices(n, batch):
    frames = np.arange(n)[:, None, None, None] * np.ones((1, 2, 2, 1), dtype=np.int64)
    clips = list(iter_clips((frames[i : i + batch] for i in range(0, n, batch)), n, 16, 4))
    assert len(clips) == num_features(n, 16, 4)
    for i, clip in enumerate(clips):
        np.testing.assert_array_equal(clip, frames[i * 4 : i * 4 + 16])


def test_short_video_is_padded_with_its_last_frame():
    frames = np.arange(5)[:, None] * np.ones((1, 3))
    (clip,) = iter_clips([frames[:2], frames[2:]], 5, 16, 4)
    assert clip.shape == (16, 3)
    assert clip[:5, 0].tolist() == [0, 1, 2, 3, 4] and set(clip[5:, 0]) == {4}

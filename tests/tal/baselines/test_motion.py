"""The motion-energy baseline finds when a block moves, and spreads it over classes."""

from __future__ import annotations

import numpy as np
import pytest

from tal.baselines.motion import (
    class_priors,
    motion_baseline_detections,
    motion_energy,
    motion_segments,
)
from tal.data.annotations import Instance, Video


def moving_block_video(fps: int = 10) -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (1, 48, 48, 3), dtype=np.uint8), 100, axis=0)
    for t in range(40, 60):  # the block moves from frame 40 to 59: 4.0 s .. 6.0 s
        x = 2 * (t - 40)
        frames[t, 10:20, x : x + 8] = 255
    return frames


def test_motion_energy_peaks_where_things_move():
    energy = motion_energy(moving_block_video())
    assert energy.shape == (100,)
    assert energy[45] > 10 * (energy[:38].max() + 1e-3)


def test_segments_cover_the_moving_part():
    segs = motion_segments(motion_energy(moving_block_video()), fps=10)
    assert len(segs) == 1
    start, end, score = segs[0]
    assert start == pytest.approx(4.0, abs=0.5) and end == pytest.approx(6.0, abs=0.5)
    assert 0 < score < 1


def test_detections_for_every_class_weighted_by_prior():
    train = [
        Video("a", "training", 10, None, [Instance("x", 0, 1), Instance("x", 2, 3)]),
        Video("b", "training", 10, None, [Instance("y", 0, 1)]),
    ]
    priors = class_priors(train)
    assert priors == pytest.approx({"x": 2 / 3, "y": 1 / 3})
    dets = motion_baseline_detections("v", motion_energy(moving_block_video()), 10, priors)
    assert [d[1] for d in dets] == ["x", "y"]
    assert dets[0][4] == pytest.approx(2 * dets[1][4])
    with pytest.raises(ValueError, match="no training instances"):
        class_priors([Video("c", "training", 10, None, [])])

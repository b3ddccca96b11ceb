"""CO2-Net's proposal method on hand-made activations: runs above thresholds, outer-inner
contrast, class selection and Soft-NMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tal.methods.co2net.config import CO2NetConfig
from tal.methods.co2net.decode import (
    localize_weak,
    outer_inner_contrast,
    runs_above,
    video_scores,
)


def test_runs_above_a_threshold():
    values = np.array([0.0, 0.6, 0.7, 0.2, 0.9, 0.9, 0.9, 0.1, 0.8])
    assert runs_above(values, 0.5) == [(1, 2), (4, 6), (8, 8)]
    assert runs_above(values, 0.95) == []


def test_outer_inner_contrast_by_hand():
    element = np.zeros((12, 2))
    element[4:8, 0] = 1.0  # class 0 active on [4, 7]
    element[:, 1] = 0.5
    # inner [4, 7] (length 4), outer floor(0.5 * 4) = 2 points each side: [2, 3] and [8, 9]
    got = outer_inner_contrast(element, 4, 7, 0.5)
    assert got.tolist() == pytest.approx([1.0, 0.0])
    # at the start of the video only the points after it are outside
    assert outer_inner_contrast(element, 0, 1, 1.0).tolist() == pytest.approx([0.0, 0.0])


def test_video_scores_are_a_softmax_without_background():
    cas = torch.tensor([[4.0, 0.0, 0.0]] * 10)
    scores = video_scores(cas, torch.ones(10), 10)
    e4 = np.exp(4.0)
    assert scores.tolist() == pytest.approx([e4 / (e4 + 2), 1 / (e4 + 2)], rel=1e-6)


def test_localizes_the_attended_run_of_the_video_class():
    t = 40
    cas = torch.full((t, 3), -2.0)
    cas[10:20, 1] = 3.0  # class 1 on [10, 20)
    cas[:, 2] = 0.0  # background
    attention = torch.full((t,), 0.05)
    attention[10:20] = 0.95
    config = CO2NetConfig()
    segments, scores, labels = localize_weak(cas, attention, config)
    assert set(labels.tolist()) == {1}  # the only class above class_threshold
    best = scores.argmax()
    assert segments[best].tolist() == [10.0, 20.0]
    # every threshold between 0.05 and 0.95 gives the same run: Soft-NMS decays the copies
    assert len(segments) == len(config.thresholds)
    assert (scores[torch.arange(len(scores)) != best] < scores[best]).all()


def test_no_attention_above_any_threshold_gives_no_detection():
    segments, scores, labels = localize_weak(torch.zeros(8, 3), torch.zeros(8), CO2NetConfig())
    assert segments.shape == (0, 2) and scores.shape == (0,) and labels.shape == (0,)

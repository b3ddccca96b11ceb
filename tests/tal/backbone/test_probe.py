"""Linear probe: separable features score 1, label-free features score chance, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from features.i3d import InceptionI3d
from tal.backbone.probe import L2_GRID, choose_l2, clip_features, linear_probe


def _blobs(n: int, seed: int, spread: float):
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 16) * 5
    y = rng.integers(0, 3, n)
    return centres[y] + rng.normal(0, spread, (n, 16)), y


def test_separable_classes_are_found():
    x, y = _blobs(90, 0, 0.5)
    xt, yt = _blobs(60, 1, 0.5)
    res = linear_probe(x, y, xt, yt, num_classes=3)
    assert res.accuracy == 1.0 and res.train_accuracy == 1.0 and res.l2 in L2_GRID
    assert (res.train_clips, res.test_clips) == (90, 60)


def test_features_without_label_information_score_near_chance():
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(300, 16)), rng.normal(size=(600, 16))
    y, yt = rng.integers(0, 3, 300), rng.integers(0, 3, 600)
    res = linear_probe(x, y, xt, yt, num_classes=3, l2=1e-4)
    assert res.accuracy < 0.45 and res.train_accuracy > res.accuracy


def test_cross_validation_picks_the_penalty_that_generalises():
    x, y = _blobs(60, 0, 0.5)
    groups = np.repeat(np.arange(15), 4)
    # a huge penalty flattens every logit to the bias: chance level on held-out folds
    assert choose_l2(x, y, 3, groups, grid=(1e6, 1e-3)) == 1e-3
    assert choose_l2(x, y, 3, groups, grid=(1e-3, 1e6)) == 1e-3


def test_empty_side_is_an_error():
    x, y = _blobs(10, 0, 0.5)
    with pytest.raises(ValueError, match="0 held-out"):
        linear_probe(x, y, x[:0], y[:0], num_classes=3)


def test_clip_features_shapes_for_both_streams():
    torch.manual_seed(0)
    rgb = np.zeros((3, 8, 32, 32, 3), np.uint8)
    flow = np.zeros((2, 8, 32, 32, 2), np.float16)
    assert clip_features(InceptionI3d(3), rgb, batch_size=2).shape == (3, 1024)
    assert clip_features(InceptionI3d(2), flow).shape == (2, 1024)

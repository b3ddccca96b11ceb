"""Label assignment: centre sampling, shortest-segment rule and regression ranges."""

from __future__ import annotations

import math

import torch

from tal.engine.assign import assign_targets, default_regression_ranges, make_points


def test_default_regression_ranges():
    assert default_regression_ranges(1) == [(0.0, math.inf)]
    assert default_regression_ranges(3) == [(0.0, 4.0), (4.0, 8.0), (8.0, math.inf)]


def test_make_points_rows_per_level():
    points = make_points([4, 2], [1, 2], [(0.0, 4.0), (4.0, math.inf)])
    expected = torch.tensor(
        [
            [0, 0, 4, 1],
            [1, 0, 4, 1],
            [2, 0, 4, 1],
            [3, 0, 4, 1],
            [0, 4, math.inf, 2],
            [2, 4, math.inf, 2],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(points, expected)


def _one_level(length: int = 16) -> torch.Tensor:
    return make_points([length], [1], [(0.0, math.inf)])


def test_centre_sampling_positives_and_targets():
    # segment [4, 12], centre 8, radius 1.5 strides -> box (6.5, 9.5): points 7, 8, 9
    cls_t, reg_t, pos = assign_targets(
        _one_level(), torch.tensor([[4.0, 12.0]]), torch.tensor([2]), num_classes=3
    )
    assert pos.nonzero().squeeze(1).tolist() == [7, 8, 9]
    assert torch.equal(reg_t[7:10], torch.tensor([[3.0, 5.0], [4.0, 4.0], [5.0, 3.0]]))
    assert torch.equal(cls_t[7:10], torch.tensor([[0.0, 0.0, 1.0]] * 3))
    assert cls_t[~pos].sum() == 0 and reg_t[~pos].sum() == 0


def test_centre_box_is_clipped_to_the_segment():
    cls_t, _, pos = assign_targets(
        _one_level(), torch.tensor([[4.0, 12.0]]), torch.tensor([0]), 1, center_radius=100.0
    )
    assert pos.nonzero().squeeze(1).tolist() == [5, 6, 7, 8, 9, 10, 11]  # strictly inside
    assert cls_t.sum() == 7


def test_shortest_segment_wins():
    gts = torch.tensor([[0.0, 14.0], [6.0, 10.0]])
    cls_t, reg_t, pos = assign_targets(
        _one_level(), gts, torch.tensor([0, 1]), 2, center_radius=100.0
    )
    assert pos.nonzero().squeeze(1).tolist() == list(range(1, 14))
    assert cls_t[8].tolist() == [0.0, 1.0] and reg_t[8].tolist() == [2.0, 2.0]
    assert cls_t[7].tolist() == [0.0, 1.0] and reg_t[7].tolist() == [1.0, 3.0]
    assert cls_t[3].tolist() == [1.0, 0.0] and reg_t[3].tolist() == [3.0, 11.0]


def test_equal_length_ties_give_both_labels():
    gts = torch.tensor([[6.0, 10.0], [7.0, 11.0]])
    cls_t, reg_t, pos = assign_targets(
        _one_level(), gts, torch.tensor([0, 2]), 3, center_radius=100.0
    )
    assert pos.nonzero().squeeze(1).tolist() == list(range(7, 11))
    assert cls_t[8].tolist() == [1.0, 0.0, 1.0]
    assert reg_t[8].tolist() == [2.0, 2.0]  # from the first tied segment
    assert cls_t[7].tolist() == [1.0, 0.0, 0.0]  # inside only the first (strictly)
    assert cls_t[10].tolist() == [0.0, 0.0, 1.0]


def test_regression_ranges_send_long_segments_to_coarse_levels():
    points = make_points([32, 16], [1, 2], default_regression_ranges(2))
    gts = torch.tensor([[4.0, 20.0], [2.0, 5.0]])
    cls_t, reg_t, pos = assign_targets(points, gts, torch.tensor([0, 1]), 2)
    # long [4, 20]: level 0 box (10.5, 13.5) reaches >= 8 steps > 4 -> nothing there;
    # level 1 box (9, 15) -> positions 10, 12, 14 = level-1 points 5, 6, 7, reach 10, 8, 10;
    # distances (6, 10), (8, 8), (10, 6) steps = / stride 2 below
    # short [2, 5]: level 0 points 3, 4 (reach 2); level 1 point at 4 reaches 2 < 4
    assert pos.nonzero().squeeze(1).tolist() == [3, 4, 32 + 5, 32 + 6, 32 + 7]
    assert torch.equal(reg_t[37:40], torch.tensor([[3.0, 5.0], [4.0, 4.0], [5.0, 3.0]]))
    assert torch.equal(reg_t[3:5], torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    assert cls_t[37:40, 0].tolist() == [1.0, 1.0, 1.0]
    assert cls_t[3:5, 1].tolist() == [1.0, 1.0]


def test_no_ground_truth_gives_zero_targets():
    cls_t, reg_t, pos = assign_targets(
        _one_level(8), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 4
    )
    assert cls_t.shape == (8, 4) and reg_t.shape == (8, 2)
    assert not pos.any() and cls_t.sum() == 0 and reg_t.sum() == 0


def test_assignment_matches_actionformer_label_points_on_a_hand_case():
    """Expected rows printed by ActionFormer's own ``label_points_single_video``
    (libs/modeling/meta_archs.py, run outside this repository with num_classes 3,
    center_sample radius, center_sample_radius 1.5, points of levels with 16/8/4 points,
    strides 1/2/4 and regression ranges (0, 4), (4, 8), (8, 10000)). Point 4 lies in the
    centre regions of two segments of length 3: the class target is the union of their
    labels and the offsets are the first one's (the official min-area tie rule)."""
    points = make_points([16, 8, 4], [1, 2, 4], [(0.0, 4.0), (4.0, 8.0), (8.0, math.inf)])
    segments = torch.tensor([[2.0, 5.0], [1.0, 13.0], [3.0, 6.0], [6.0, 10.0]])
    labels = torch.tensor([0, 1, 2, 1])
    cls_t, reg_t, pos = assign_targets(points, segments, labels, num_classes=3)
    # (point index, class target, offsets in strides) of every positive point
    official = [
        (3, [1.0, 0.0, 0.0], [1.0, 2.0]),
        (4, [1.0, 0.0, 1.0], [2.0, 1.0]),
        (5, [0.0, 0.0, 1.0], [2.0, 1.0]),
        (7, [0.0, 1.0, 0.0], [1.0, 3.0]),
        (8, [0.0, 1.0, 0.0], [2.0, 2.0]),
        (9, [0.0, 1.0, 0.0], [3.0, 1.0]),
        (19, [0.0, 1.0, 0.0], [2.5, 3.5]),
        (20, [0.0, 1.0, 0.0], [3.5, 2.5]),
        (25, [0.0, 1.0, 0.0], [0.75, 2.25]),
        (27, [0.0, 1.0, 0.0], [2.75, 0.25]),
    ]
    assert torch.nonzero(pos).flatten().tolist() == [row[0] for row in official]
    for index, cls_row, reg_row in official:
        assert cls_t[index].tolist() == cls_row
        assert reg_t[index].tolist() == reg_row
    assert cls_t[~pos].abs().sum() == 0

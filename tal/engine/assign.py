"""Label assignment for the one-stage localizer (ActionFormer-style center sampling).

Every pyramid point is a candidate anchor. A ground-truth segment is assigned to a point when
the point lies inside the segment's *centre region* (``center_radius`` strides around the
segment's centre, clipped to the segment) and the point's larger distance to the segment's
boundaries falls in its level's regression range, so short actions land on fine levels and
long ones on coarse levels. All coordinates are feature steps (``tal.data.timing``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def default_regression_ranges(num_levels: int) -> list[tuple[float, float]]:
    """Per-level (low, high) ranges in steps: l=0 (0, 4), l>0 (2**(l+1), 2**(l+2)), last high inf."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    ranges = [(0.0, 4.0)] + [(2.0 ** (k + 1), 2.0 ** (k + 2)) for k in range(1, num_levels)]
    ranges[-1] = (ranges[-1][0], math.inf)
    return ranges


def make_points(
    lengths: Sequence[int],
    strides: Sequence[int],
    regression_ranges: Sequence[tuple[float, float]],
    device: torch.device | str | None = None,
) -> Tensor:
    """All pyramid points as ``[P, 4]`` rows ``(position, range_low, range_high, stride)``.

    Point j of a level with stride s sits at step ``j * s``; levels are concatenated in order,
    which is the order the model's per-level outputs are concatenated in.
    """
    if not len(lengths) == len(strides) == len(regression_ranges):
        raise ValueError(
            f"lengths ({len(lengths)}), strides ({len(strides)}) and regression_ranges "
            f"({len(regression_ranges)}) must have one entry per level"
        )
    rows = []
    for length, stride, (low, high) in zip(lengths, strides, regression_ranges, strict=True):
        pos = torch.arange(length, dtype=torch.float32, device=device) * stride
        rest = torch.tensor([low, high, float(stride)], dtype=torch.float32, device=device)
        rows.append(torch.cat([pos[:, None], rest.expand(length, 3)], dim=1))
    return torch.cat(rows, dim=0)


def assign_targets(
    points: Tensor,
    gt_segments: Tensor,
    gt_labels: Tensor,
    num_classes: int,
    center_radius: float = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Targets of one video: ``(cls [P, C] float, reg [P, 2] in strides, positive [P] bool)``.

    A point is a candidate for a ground truth when it lies strictly inside the segment's centre
    region ``[c - r*s, c + r*s]`` intersected with the segment (c the segment's centre, s the
    point's stride, r ``center_radius``) and ``max(d_start, d_end)`` in steps lies in the
    point's regression range (bounds inclusive, as in ActionFormer). Among its candidates a
    point takes the shortest segment; ``reg`` holds that segment's ``(d_start, d_end) / s``.
    When several candidates share the minimal length (within 1e-3 steps) the class target is
    the union of their labels (multi-hot) and ``reg`` comes from the first of them in input
    order. Non-positive points have all-zero targets; with no ground truth everything is zero.
    """
    num_points = points.shape[0]
    device = points.device
    cls_targets = torch.zeros(num_points, num_classes, device=device)
    reg_targets = torch.zeros(num_points, 2, device=device)
    positive = torch.zeros(num_points, dtype=torch.bool, device=device)
    if gt_segments.numel() == 0:
        return cls_targets, reg_targets, positive

    gt = gt_segments.to(device=device, dtype=torch.float32)  # [N, 2]
    pos, low, high, stride = (points[:, i : i + 1] for i in range(4))  # each [P, 1]
    start, end = gt[:, 0][None], gt[:, 1][None]  # [1, N]
    d_start, d_end = pos - start, end - pos  # [P, N]

    centre = (start + end) / 2
    box_start = torch.maximum(centre - center_radius * stride, start)
    box_end = torch.minimum(centre + center_radius * stride, end)
    in_centre = (pos > box_start) & (pos < box_end)
    reach = torch.maximum(d_start, d_end)
    in_range = (reach >= low) & (reach <= high)
    candidate = in_centre & in_range  # [P, N]

    lengths = (end - start).expand(num_points, -1).masked_fill(~candidate, math.inf)
    min_len, best = lengths.min(dim=1)  # [P]
    positive = torch.isfinite(min_len)
    tied = candidate & (lengths <= min_len[:, None] + 1e-3)  # [P, N]

    one_hot = torch.nn.functional.one_hot(gt_labels.to(device).long(), num_classes).float()
    cls_targets = (tied.float() @ one_hot).clamp(max=1.0)
    chosen = torch.stack([d_start, d_end], dim=2)[torch.arange(num_points, device=device), best]
    reg_targets = torch.where(positive[:, None], chosen / stride, torch.zeros_like(chosen))
    return cls_targets, reg_targets, positive

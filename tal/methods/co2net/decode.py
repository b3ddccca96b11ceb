"""Detections from a CO2-Net output: video-level class scores, proposals from runs of high
attention at several thresholds, outer-inner-contrast scores, per-class Gaussian Soft-NMS
(the authors' ``multiple_threshold_hamnet`` proposal method, ``proposal_methods.py``, with
``get_proposal_oic_2`` and ``soft_nms`` of ``utils/wsad_utils.py``).

For one video with ``S`` its CAS ``[T, K+1]`` and ``A`` its fused attention ``[T]``:
``E = S * A`` per point; the video's class scores are the softmax over ``K+1`` of the mean of
the top ``T // score_topk_ratio`` points of ``E``, background dropped; classes scoring at least
``class_threshold`` are localized (the best one when none does). For each threshold, every
run of consecutive points ``first .. last`` with ``A`` above it is a proposal; its score for
class ``k`` is the mean of ``E[:, k]`` inside minus the mean over the outer points on each
side (clipped to the video), plus ``oic_gamma`` times the video's class score. Duplicates
across thresholds are decayed by Soft-NMS (``nms_sigma``).

Where a proposal lies (``proposal_bounds``). The official code returns ``[first, last + 1]``
in snippet units and the evaluation turns ground truth into the same units with
``seconds * 25 / 16``: its snippet ``j`` covers frames ``[16 j, 16 j + 16)``, i.e. the unit
interval ``[j, j + 1]``, so a run covers exactly the frames of its snippets. In our feature
steps feature ``i`` sits at step ``i`` and covers ``[i - 0.5, i + 0.5]``
(``tal.data.timing``), so the same run is ``[first - 0.5, last + 0.5]`` (``edges``, the
default); with the official timing (clip = stride = 16 frames, 25 fps) these steps give the
official seconds exactly. ``first_last_plus_one``, our former decoding, copied the official
numbers into our coordinate and was half a step late.

Outer region (``oic_rounding``). The official code takes the points from
``int(first - oic_outer * n)`` to ``first - 1`` and from ``last + 1`` to
``int(last + oic_outer * n)`` (``n`` the run's length); ``int`` truncates, so that is
``ceil(oic_outer * n)`` points before and ``floor(oic_outer * n)`` after (``ceil_floor``);
``floor`` (former) takes ``floor`` on both sides.

Soft-NMS overlap (``nms_overlap``). The official ``soft_nms`` treats the ends as inclusive
integers: length ``end - start + 1``, intersection ``min(end) - max(start) + 1`` (clipped at
0). ``plus_one`` reproduces that by running Soft-NMS on segments one step longer and taking
the step off again; ``exact`` (former) uses the segments' own IoU. Our Soft-NMS keeps at most
``max_detections`` per video; the official one keeps every proposal.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from tal.methods.co2net.config import CO2NetConfig
from tal.methods.co2net.loss import topk_mean
from tal.postprocess import soft_nms


def video_scores(cas: Tensor, attention: Tensor, score_topk_ratio: int) -> Tensor:
    """Class scores ``[K]`` of one video (``cas [T, K+1]``, ``attention [T]``)."""
    element = cas * attention[:, None]
    masks = torch.ones(1, len(cas), dtype=torch.bool, device=cas.device)
    pooled = topk_mean(element[None], masks, score_topk_ratio)[0]
    return torch.softmax(pooled, dim=0)[:-1]


def runs_above(values: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """``(first, last)`` indices of each run of consecutive values above ``threshold``."""
    above = np.concatenate([[False], values > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def proposal_steps(first: int, last: int, bounds: str = "edges") -> tuple[float, float]:
    """A run of points ``first .. last`` as a segment in feature steps: its features' cells
    ``[first - 0.5, last + 0.5]`` (``edges``) or ``[first, last + 1]``
    (``first_last_plus_one``, the former decoding); see the module docstring."""
    if bounds == "edges":
        return first - 0.5, last + 0.5
    return float(first), float(last + 1)


def outer_inner_contrast(
    element: np.ndarray, first: int, last: int, outer: float, rounding: str = "ceil_floor"
) -> np.ndarray:
    """Per class, mean of ``element [T, K]`` over ``[first, last]`` minus the mean over the
    outer points on each side (0 when there are none): ``ceil(outer * length)`` before and
    ``floor(outer * length)`` after with ``ceil_floor`` (the official code), ``floor`` on
    both sides with ``floor``."""
    inner = element[first : last + 1].mean(0)
    reach = outer * (last - first + 1)
    before_width = math.ceil(reach) if rounding == "ceil_floor" else math.floor(reach)
    before = element[max(first - before_width, 0) : first]
    after = element[last + 1 : last + 1 + math.floor(reach)]
    around = np.concatenate([before, after])
    return inner - (around.mean(0) if len(around) else 0.0)


def localize_weak(
    cas: Tensor, attention: Tensor, config: CO2NetConfig, max_detections: int = 200
) -> tuple[Tensor, Tensor, Tensor]:
    """``(segments [N, 2] in feature steps, scores [N], labels [N])`` of one video, with
    ``cas [T, K+1]`` and ``attention [T]`` over its real points only."""
    scores = video_scores(cas.float(), attention.float(), config.score_topk_ratio)
    classes = torch.nonzero(scores >= config.class_threshold).flatten()
    if len(classes) == 0:
        classes = scores.argmax()[None]
    element = (cas.float() * attention.float()[:, None])[:, :-1].detach().cpu().numpy()
    att = attention.detach().float().cpu().numpy()
    video = scores.detach().cpu().numpy()
    rows = []
    for threshold in config.thresholds:
        for first, last in runs_above(att, threshold):
            contrast = outer_inner_contrast(
                element, first, last, config.oic_outer, config.oic_rounding
            )
            start, end = proposal_steps(first, last, config.proposal_bounds)
            for k in classes.tolist():
                score = contrast[k] + config.oic_gamma * video[k]
                rows.append((start, end, score, k))
    if not rows:
        empty = torch.zeros(0)
        return empty.reshape(0, 2), empty, empty.long()
    table = np.asarray(rows, dtype=np.float64)
    # the official inclusive-end overlap: Soft-NMS on segments one step longer
    longer = 1.0 if config.nms_overlap == "plus_one" else 0.0
    segments, scores, labels = soft_nms(
        torch.from_numpy(table[:, :2] + np.array([0.0, longer])),
        torch.from_numpy(table[:, 2]),
        torch.from_numpy(table[:, 3]).long(),
        sigma=config.nms_sigma,
        min_score=-math.inf,
        max_detections=max_detections,
    )
    return segments - segments.new_tensor([0.0, longer]), scores, labels

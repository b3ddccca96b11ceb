"""Detections from a CO2-Net output: video-level class scores, proposals from runs of high
attention at several thresholds, outer-inner-contrast scores, per-class Gaussian Soft-NMS
(the authors' ``multiple_threshold_hamnet`` proposal method).

For one video with ``S`` its CAS ``[T, K+1]`` and ``A`` its fused attention ``[T]``:
``E = S * A`` per point; the video's class scores are the softmax over ``K+1`` of the mean of
the top ``T // score_topk_ratio`` points of ``E``, background dropped; classes scoring at least
``class_threshold`` are localized (the best one when none does). For each threshold, every
run of consecutive points with ``A`` above it is a proposal ``[s, e + 1)`` in feature steps;
its score for class ``k`` is the mean of ``E[:, k]`` inside minus the mean over
``oic_outer * length`` points on each side (clipped), plus ``oic_gamma`` times the video's
class score. Duplicates across thresholds are decayed by Soft-NMS (``nms_sigma``).
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


def outer_inner_contrast(element: np.ndarray, first: int, last: int, outer: float) -> np.ndarray:
    """Per class, mean of ``element [T, K]`` over ``[first, last]`` minus the mean over the
    ``floor(outer * length)`` points on each side (0 when there are none)."""
    inner = element[first : last + 1].mean(0)
    width = math.floor(outer * (last - first + 1))
    before = element[max(first - width, 0) : first]
    after = element[last + 1 : last + 1 + width]
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
            contrast = outer_inner_contrast(element, first, last, config.oic_outer)
            for k in classes.tolist():
                score = contrast[k] + config.oic_gamma * video[k]
                rows.append((first, last + 1, score, k))
    if not rows:
        empty = torch.zeros(0)
        return empty.reshape(0, 2), empty, empty.long()
    table = np.asarray(rows, dtype=np.float64)
    return soft_nms(
        torch.from_numpy(table[:, :2]),
        torch.from_numpy(table[:, 2]),
        torch.from_numpy(table[:, 3]).long(),
        sigma=config.nms_sigma,
        min_score=-math.inf,
        max_detections=max_detections,
    )

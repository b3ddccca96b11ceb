"""From the localizer's per-level outputs to scored segments in seconds.

Three steps, each a function: ``decode_video`` turns one video's outputs into candidate
segments in feature steps, ``soft_nms`` suppresses duplicates per class, and
``to_seconds_rows`` converts to seconds (clipped to the video) as rows for
``tal.data.predictions.Detections.from_rows``. Post-processing runs on the CPU in float32/64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from tal.data.timing import FeatureTiming


@torch.no_grad()
def decode_video(
    cls_logits: Sequence[Tensor],
    offsets: Sequence[Tensor],
    masks: Sequence[Tensor],
    strides: Sequence[int],
    score_threshold: float = 0.001,
    pre_nms_topk: int = 2000,
) -> tuple[Tensor, Tensor, Tensor]:
    """One video's candidates ``(segments [K, 2] steps, scores [K], labels [K])`` on the CPU.

    Every (valid point, class) pair is a candidate scored by the sigmoid of its logit; those
    above ``score_threshold`` are kept, then the ``pre_nms_topk`` best (sorted by decreasing
    score). Point j of a level with stride s gives ``[j*s - d_start*s, j*s + d_end*s]``;
    segments of zero or negative length are dropped.
    """
    positions, point_strides = [], []
    for length, stride in zip((x.shape[0] for x in cls_logits), strides, strict=True):
        positions.append(torch.arange(length, dtype=torch.float32) * stride)
        point_strides.append(torch.full((length,), float(stride)))
    pos = torch.cat(positions)
    step = torch.cat(point_strides)
    logits = torch.cat([x.detach().float().cpu() for x in cls_logits])  # [P, C]
    dist = torch.cat([x.detach().float().cpu() for x in offsets])  # [P, 2]
    valid = torch.cat([x.detach().cpu().bool() for x in masks])  # [P]

    num_classes = logits.shape[1]
    scores = torch.sigmoid(logits).masked_fill(~valid[:, None], 0.0).flatten()
    keep = torch.nonzero(scores > score_threshold).squeeze(1)
    top = scores[keep].topk(min(pre_nms_topk, keep.numel())).indices
    idx = keep[top]
    point, labels = idx // num_classes, idx % num_classes
    start = pos[point] - dist[point, 0] * step[point]
    end = pos[point] + dist[point, 1] * step[point]
    ok = end > start
    segments = torch.stack([start, end], dim=1)[ok]
    return segments, scores[idx][ok], labels[ok]


def _iou_1d(segment: np.ndarray, others: np.ndarray) -> np.ndarray:
    inter = np.minimum(segment[1], others[:, 1]) - np.maximum(segment[0], others[:, 0])
    inter = np.clip(inter, 0.0, None)
    union = (segment[1] - segment[0]) + (others[:, 1] - others[:, 0]) - inter
    return inter / np.maximum(union, 1e-12)


def _soft_nms_one_class(
    segments: np.ndarray,
    scores: np.ndarray,
    sigma: float,
    iou_threshold: float,
    min_score: float,
    max_detections: int,
    method: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices kept (in pick order) and their decayed scores."""
    scores = scores.copy()
    alive = np.flatnonzero(scores >= min_score)
    kept: list[int] = []
    kept_scores: list[float] = []
    while alive.size and len(kept) < max_detections:
        best = alive[np.argmax(scores[alive])]
        kept.append(best)
        kept_scores.append(scores[best])
        alive = alive[alive != best]
        if not alive.size:
            break
        iou = _iou_1d(segments[best], segments[alive])
        if method == "gaussian":
            scores[alive] *= np.exp(-(iou**2) / sigma)
        elif method == "linear":
            scores[alive] *= np.where(iou > iou_threshold, 1.0 - iou, 1.0)
        else:  # hard NMS
            scores[alive] *= np.where(iou > iou_threshold, 0.0, 1.0)
        alive = alive[scores[alive] >= min_score]
    return np.asarray(kept, dtype=np.int64), np.asarray(kept_scores, dtype=np.float64)


def soft_nms(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor,
    sigma: float = 0.5,
    iou_threshold: float = 0.1,
    min_score: float = 0.001,
    max_detections: int = 200,
    method: str = "gaussian",
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class Soft-NMS (Bodla et al. 2017) of one video's candidates.

    Repeatedly keeps the highest-scoring remaining segment of a class and decays the others of
    that class by their tIoU with it: ``gaussian`` multiplies by ``exp(-iou^2 / sigma)``,
    ``linear`` by ``1 - iou`` where ``iou > iou_threshold``, ``hard`` drops those above it.
    Segments falling below ``min_score`` are discarded. Returns the kept segments with their
    decayed scores and labels, sorted by decreasing score, at most ``max_detections``.
    """
    if method not in ("gaussian", "linear", "hard"):
        raise ValueError(f"method must be 'gaussian', 'linear' or 'hard', got {method!r}")
    segs = segments.detach().cpu().double().numpy().reshape(-1, 2)
    scs = scores.detach().cpu().double().numpy().reshape(-1)
    labs = labels.detach().cpu().long().numpy().reshape(-1)
    out_idx, out_scores = [], []
    for label in np.unique(labs):
        members = np.flatnonzero(labs == label)
        kept, kept_scores = _soft_nms_one_class(
            segs[members], scs[members], sigma, iou_threshold, min_score, max_detections, method
        )
        out_idx.append(members[kept])
        out_scores.append(kept_scores)
    if not out_idx:
        return segments.new_zeros((0, 2)), scores.new_zeros(0), labels.new_zeros(0)
    idx = np.concatenate(out_idx)
    new_scores = np.concatenate(out_scores)
    order = np.argsort(-new_scores, kind="stable")[:max_detections]
    idx, new_scores = idx[order], new_scores[order]
    return (
        torch.from_numpy(segs[idx]).to(segments.dtype),
        torch.from_numpy(new_scores).to(scores.dtype),
        torch.from_numpy(labs[idx]).to(labels.dtype),
    )


def to_seconds_rows(
    video_id: str,
    segments_steps: Tensor | np.ndarray,
    scores: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    timing: FeatureTiming,
    duration: float | None,
    label_names: Sequence[str],
) -> list[tuple[str, str, float, float, float]]:
    """Rows ``(video_id, label_name, start_s, end_s, score)`` for ``Detections.from_rows``.

    Segments are converted with ``timing.to_seconds``, clipped to ``[0, duration]`` (only at 0
    when ``duration`` is None), and dropped if empty after clipping.
    """
    segs = timing.to_seconds(_as_numpy(segments_steps).reshape(-1, 2))
    upper = np.inf if duration is None else float(duration)
    segs = np.clip(segs, 0.0, upper)
    rows = []
    for (start, end), score, label in zip(
        segs, _as_numpy(scores).reshape(-1), _as_numpy(labels).reshape(-1), strict=True
    ):
        if end > start:
            rows.append((video_id, label_names[int(label)], float(start), float(end), float(score)))
    return rows


def _as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)

"""Temporal detection mAP, computed as the official ActivityNet evaluation does, vectorised.

The official algorithm (``activitynet/ActivityNet`` ``Evaluation/eval_detection.py``), per
class: predictions sorted by decreasing score; each is matched, at each tIoU threshold, to the
not-yet-matched ground truth of the same video with the highest tIoU at or above the threshold
(true positive), otherwise it is a false positive; AP is the area under the interpolated
precision envelope (VOC 2011 style); mAP is the mean over the classes of the ground truth
subset, in which a class with no prediction has AP 0.

The matching is sequential only within one (class, video) group, so this implementation walks
the k-th prediction of every group at once and all thresholds at once: the Python loop runs
over ranks within a group, never over detections.

Ties follow the official code as it behaves for small arrays (``argsort()[::-1]`` over a stable
sort): of equal scores the later prediction in file order comes first, of equal tIoU the later
ground truth in file order is matched first.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tal.data.annotations import AnnotationSet, normalize_subset
from tal.data.predictions import Detections

log = logging.getLogger(__name__)

THUMOS14_TIOU = (0.3, 0.4, 0.5, 0.6, 0.7)
ACTIVITYNET_TIOU = tuple(float(x) for x in np.linspace(0.5, 0.95, 10))
WEAK_TIOU = tuple(float(x) for x in np.round(np.arange(0.1, 0.71, 0.1), 2))


@dataclass
class DetectionResult:
    """mAP per tIoU threshold, their mean, and AP per class and threshold."""

    tiou: list[float]
    mAP: list[float]
    average_mAP: float
    per_class_ap: dict[str, list[float]]
    num_ground_truth: int = 0
    num_predictions: int = 0
    ignored_labels: dict[str, int] = field(default_factory=dict)
    """Prediction labels absent from the ground truth subset, with counts (not evaluated)."""
    curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    """With ``curves=True``: per class that has predictions, ``(precision, recall)`` arrays
    ``[T, N]`` along its predictions in evaluation order (for precision-recall figures);
    None when not asked for."""

    def to_json(self) -> dict[str, Any]:
        return {
            "tiou": self.tiou,
            "mAP": self.mAP,
            "average_mAP": self.average_mAP,
            "per_class_ap": self.per_class_ap,
        }

    def table(self) -> str:
        """A readable table: mAP per threshold and the average."""
        head = " | ".join(f"{t:>6.2f}" for t in self.tiou)
        vals = " | ".join(f"{100 * m:>6.2f}" for m in self.mAP)
        lines = [
            f"tIoU  | {head} |    avg",
            f"mAP % | {vals} | {100 * self.average_mAP:>6.2f}",
            f"({self.num_ground_truth} ground-truth instances in {len(self.per_class_ap)} classes, "
            f"{self.num_predictions} predictions evaluated)",
        ]
        return "\n".join(lines)


def segment_iou(
    start: np.ndarray, end: np.ndarray, gt_start: np.ndarray, gt_end: np.ndarray
) -> np.ndarray:
    """tIoU between segments, broadcasting like numpy (same arithmetic as the official code)."""
    inter = (np.minimum(end, gt_end) - np.maximum(start, gt_start)).clip(0)
    union = (gt_end - gt_start) + (end - start) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC-2011 interpolated AP of each row of ``precision``/``recall`` ([T, N] -> [T])."""
    t = precision.shape[0]
    zeros, ones = np.zeros((t, 1)), np.ones((t, 1))
    mprec = np.hstack([zeros, precision, zeros])
    mrec = np.hstack([zeros, recall, ones])
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    step = mrec[:, 1:] - mrec[:, :-1]
    contrib = step * mprec[:, 1:]
    changed = step != 0
    # Sum each row's selected terms as one contiguous array, as the official code does, so
    # that the floating-point result is the same to the last bit.
    return np.array([contrib[i, changed[i]].sum() for i in range(t)])


def _codes(values: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """Integer code of each value: its index in ``index`` or a new code >= len(index)."""
    full = dict(index)
    for v in set(values.tolist()) - full.keys():
        full[v] = len(full)
    return np.fromiter(map(full.__getitem__, values.tolist()), np.int64, len(values))


def _match(
    slot: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    gt_slot: np.ndarray,
    gt_start: np.ndarray,
    gt_end: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """True positives [T, N] of predictions given in evaluation order.

    ``slot[i]`` is the (class, video) ground-truth group of prediction i (-1: none, so a false
    positive); ``gt_slot[j]`` the group of ground truth j (arrays in file order).
    """
    n_thr, n_pred = len(thresholds), len(slot)
    tp = np.zeros((n_pred, n_thr), dtype=bool)
    has_gt = np.flatnonzero(slot >= 0)
    if not len(has_gt):
        return tp.T
    # Groups are NaN-padded to a power-of-two width by size bucket, so that one video with
    # many instances of a class does not widen every group.
    count = np.bincount(gt_slot)
    bucket = np.ceil(np.log2(np.maximum(count, 1))).astype(np.int64)
    by_bucket = np.argsort(bucket, kind="stable")
    local = np.empty_like(by_bucket)
    first = np.searchsorted(bucket[by_bucket], bucket[by_bucket])
    local[by_bucket] = np.arange(len(by_bucket)) - first
    by_slot = np.argsort(gt_slot, kind="stable")
    col = np.empty_like(by_slot)
    col[by_slot] = np.arange(len(gt_slot)) - np.repeat(np.cumsum(count) - count, count)
    pads: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for b in np.unique(bucket).tolist():
        n_b = int((bucket == b).sum())
        pad_s = np.full((n_b, 2**b), np.nan)
        pad_e = np.full((n_b, 2**b), np.nan)
        in_b = bucket[gt_slot] == b
        pad_s[local[gt_slot[in_b]], col[in_b]] = gt_start[in_b]
        pad_e[local[gt_slot[in_b]], col[in_b]] = gt_end[in_b]
        pads[b] = (pad_s, pad_e, np.zeros((n_b, n_thr, 2**b), dtype=bool))

    # Rank of each prediction within its group, in evaluation order.
    grouped = has_gt[np.argsort(slot[has_gt], kind="stable")]
    g_slot = slot[grouped]
    starts = np.r_[0, np.flatnonzero(np.diff(g_slot)) + 1]
    sizes = np.diff(np.r_[starts, len(grouped)])
    rank = np.arange(len(grouped)) - np.repeat(starts, sizes)
    g_bucket = bucket[g_slot]
    run_order = np.lexsort((g_bucket, rank))
    run_key = rank[run_order] * 64 + g_bucket[run_order]
    runs = np.r_[0, np.flatnonzero(np.diff(run_key)) + 1, len(run_order)]
    thr = thresholds[None, :, None]
    min_thr = thresholds.min()
    for lo, hi in itertools.pairwise(runs):
        # the k-th prediction of every group of one size bucket, all thresholds at once
        preds = grouped[run_order[lo:hi]]
        pad_s, pad_e, locked = pads[int(g_bucket[run_order[lo]])]
        s = local[slot[preds]]
        g_s, g_e = pad_s[s], pad_e[s]
        valid = ~np.isnan(g_s)
        iou = segment_iou(start[preds, None], end[preds, None], g_s, g_e)
        # NaN tIoU (zero-length union) passes the official "< thr" test and sorts first.
        nan = np.isnan(iou) & valid
        key = np.where(nan, np.inf, np.where(valid, iou, -np.inf))  # [n, width]
        reach = key.max(axis=1) >= min_thr  # the others are false positives at every threshold
        if not reach.all():
            preds, s, key = preds[reach], s[reach], key[reach]
        if key.shape[1] == 1:  # one ground truth in the group: no choice to make
            hit = (key >= thresholds[None, :]) & ~locked[s, :, 0]  # [n, T]
            n_idx, t_idx = np.nonzero(hit)
            locked[s[n_idx], t_idx, 0] = True
            tp[preds] = hit
            continue
        width = key.shape[1]
        cand = (key[:, None, :] >= thr) & ~locked[s]  # [n, T, width]
        masked = np.where(cand, key[:, None, :], -np.inf)[:, :, ::-1]
        rev_best = np.argmax(masked, axis=2)  # reversed: the later GT wins ties
        hit = np.take_along_axis(masked, rev_best[..., None], axis=2)[..., 0] > -np.inf
        n_idx, t_idx = np.nonzero(hit)
        locked[s[n_idx], t_idx, width - 1 - rev_best[n_idx, t_idx]] = True
        tp[preds] = hit
    return tp.T


@dataclass
class MatchedDetections:
    """Predictions in evaluation order with their true-positive flags: everything AP needs.

    The flags of a prediction depend only on the ground truth of its own video and on the
    predictions of the same class and video ranked above it, so they hold for any resample of
    the videos (``tal.evaluation.bootstrap`` reweights them)."""

    thresholds: np.ndarray
    class_index: dict[str, int]
    """Ground-truth class name -> code (order of first appearance, as the official code)."""
    video_ids: list[str]
    """The subset's videos, by code."""
    class_bounds: np.ndarray
    """Predictions of class c are ``[class_bounds[c], class_bounds[c + 1])``."""
    video: np.ndarray
    """Video code of each prediction in evaluation order (>= len(video_ids): outside the
    subset)."""
    tp: np.ndarray
    """True positives ``[T, N]`` in evaluation order."""
    gt_class: np.ndarray
    gt_video: np.ndarray
    """Class and video code of each ground-truth instance."""
    ignored_labels: dict[str, int]
    num_predictions: int


def match_detections(
    ground_truth: AnnotationSet,
    predictions: Detections,
    subset: str = "validation",
    tiou_thresholds: Sequence[float] = THUMOS14_TIOU,
) -> MatchedDetections:
    """Sort ``predictions`` as the official evaluation does and match them to the ``subset``
    ground truth at every threshold (``evaluate_detection`` without the AP)."""
    subset = normalize_subset(subset, f"{ground_truth.source}: evaluation subset")
    thresholds = np.asarray(list(tiou_thresholds), dtype=np.float64)
    if thresholds.ndim != 1 or len(thresholds) == 0:
        raise ValueError(
            f"tiou_thresholds: expected a non-empty list of numbers, got {tiou_thresholds!r}"
        )
    # Ground truth columns, in file order, with the class order of the official code
    # (order of first appearance); results are reported by sorted class name.
    class_index: dict[str, int] = {}
    video_index: dict[str, int] = {}
    g_vid, g_cls, g_start, g_end = [], [], [], []
    for video in ground_truth.videos.values():
        if video.subset != subset:
            continue
        code = video_index.setdefault(video.video_id, len(video_index))
        for inst in video.instances:
            g_vid.append(code)
            g_cls.append(class_index.setdefault(inst.label, len(class_index)))
            g_start.append(inst.start)
            g_end.append(inst.end)
    if not class_index:
        raise ValueError(
            f"{ground_truth.source}: subset {subset!r} has no annotated instances to evaluate against"
        )
    gv, gc = np.asarray(g_vid, dtype=np.int64), np.asarray(g_cls, dtype=np.int64)
    gs, ge = np.asarray(g_start, dtype=np.float64), np.asarray(g_end, dtype=np.float64)

    n_videos = len(video_index)
    p_cls = _codes(predictions.labels, class_index)
    p_vid = _codes(predictions.video_ids, video_index)
    known = p_cls < len(class_index)
    ignored: dict[str, int] = {}
    if not known.all():
        names, counts = np.unique(predictions.labels[~known].astype(str), return_counts=True)
        ignored = {str(k): int(c) for k, c in zip(names, counts, strict=True)}
        log.warning(
            "ignoring %d predictions with labels not in the %s ground truth: %s",
            int(counts.sum()),
            subset,
            ", ".join(f"{k} ({c})" for k, c in ignored.items()),
        )

    # Ground-truth groups: one slot per (class, video).
    slot_keys, g_slot = np.unique(gc * n_videos + gv, return_inverse=True)

    # Evaluation order: by class, then as the official ``score.argsort()[::-1]`` (stable):
    # decreasing score, of equal scores the later in file order first.
    by_cls = np.flatnonzero(known)
    by_cls = by_cls[np.argsort(p_cls[by_cls], kind="stable")]
    cls_bounds = np.searchsorted(p_cls[by_cls], np.arange(len(class_index) + 1))
    order = np.concatenate(
        [
            by_cls[lo:hi][np.argsort(predictions.score[by_cls[lo:hi]], kind="stable")[::-1]]
            for lo, hi in itertools.pairwise(cls_bounds)
        ]
    )
    p_key = np.where(p_vid[order] < n_videos, p_cls[order] * n_videos + p_vid[order], -1)
    pos = np.searchsorted(slot_keys, p_key).clip(0, len(slot_keys) - 1)
    slot = np.where(slot_keys[pos] == p_key, pos, -1)
    tp = _match(slot, predictions.start[order], predictions.end[order], g_slot, gs, ge, thresholds)
    return MatchedDetections(
        thresholds=thresholds,
        class_index=class_index,
        video_ids=list(video_index),
        class_bounds=cls_bounds,
        video=p_vid[order],
        tp=tp,
        gt_class=gc,
        gt_video=gv,
        ignored_labels=ignored,
        num_predictions=int(known.sum()),
    )


def evaluate_detection(
    ground_truth: AnnotationSet,
    predictions: Detections,
    subset: str = "validation",
    tiou_thresholds: Sequence[float] = THUMOS14_TIOU,
    curves: bool = False,
) -> DetectionResult:
    """mAP of ``predictions`` against the ``subset`` videos of ``ground_truth``.

    Predictions on videos outside the subset are false positives; labels that the subset's
    ground truth does not have are ignored and reported in ``ignored_labels`` (and logged).
    """
    m = match_detections(ground_truth, predictions, subset, tiou_thresholds)
    class_index, tp, thresholds = m.class_index, m.tp, m.thresholds
    npos = np.bincount(m.gt_class, minlength=len(class_index))
    ap = np.zeros((len(thresholds), len(class_index)))
    class_names = {c: name for name, c in class_index.items()}
    pr: dict[str, tuple[np.ndarray, np.ndarray]] | None = {} if curves else None
    for c, (lo, hi) in enumerate(itertools.pairwise(m.class_bounds)):  # one per class
        if hi == lo:
            continue  # no prediction of this class: AP 0
        tp_cum = np.cumsum(tp[:, lo:hi], axis=1, dtype=np.float64)
        fp_cum = np.arange(1, hi - lo + 1, dtype=np.float64) - tp_cum
        precision, recall = tp_cum / (tp_cum + fp_cum), tp_cum / float(npos[c])
        ap[:, c] = interpolated_ap(precision, recall)
        if pr is not None:
            pr[class_names[c]] = (precision, recall)
    m_ap = ap.mean(axis=1)
    per_class = {name: ap[:, class_index[name]].tolist() for name in sorted(class_index)}
    return DetectionResult(
        tiou=thresholds.tolist(),
        mAP=m_ap.tolist(),
        average_mAP=float(m_ap.mean()),
        per_class_ap=per_class,
        num_ground_truth=len(m.gt_video),
        num_predictions=m.num_predictions,
        ignored_labels=m.ignored_labels,
        curves=pr,
    )

"""A straightforward per-detection implementation of the official ActivityNet detection AP.

It follows the structure of the official ``compute_average_precision_detection`` one
prediction at a time, with plain Python containers. It exists to check the vectorised
evaluator (tests) and to time it (``bench/eval_speed.py``); it is not used for results.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from tal.data.annotations import AnnotationSet, normalize_subset
from tal.data.predictions import Detections


def _interpolated_ap(prec: list[float], rec: list[float]) -> float:
    mprec = [0.0, *prec, 0.0]
    mrec = [0.0, *rec, 1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(np.asarray(mrec[1:]) != np.asarray(mrec[:-1]))[0] + 1
    return float(
        np.sum((np.asarray(mrec)[idx] - np.asarray(mrec)[idx - 1]) * np.asarray(mprec)[idx])
    )


def reference_class_ap(
    gt: list[tuple[str, float, float]],
    preds: list[tuple[str, float, float, float]],
    thresholds: Sequence[float],
) -> list[float]:
    """AP per threshold for one class: ``gt`` = (video, start, end) in file order,
    ``preds`` = (video, start, end, score) in file order."""
    if not preds:
        return [0.0] * len(thresholds)
    gt_by_video: dict[str, list[int]] = defaultdict(list)
    for j, (vid, _, _) in enumerate(gt):
        gt_by_video[vid].append(j)
    scores = np.array([p[3] for p in preds], dtype=np.float64)
    order = np.argsort(scores, kind="stable")[::-1]
    lock = [[-1] * len(gt) for _ in thresholds]
    tp = [[0.0] * len(preds) for _ in thresholds]
    fp = [[0.0] * len(preds) for _ in thresholds]
    for rank, pi in enumerate(order):
        vid, ps, pe, _ = preds[pi]
        gts = gt_by_video.get(vid)
        if not gts:
            for t in range(len(thresholds)):
                fp[t][rank] = 1.0
            continue
        g_s = np.array([gt[j][1] for j in gts])
        g_e = np.array([gt[j][2] for j in gts])
        inter = (np.minimum(pe, g_e) - np.maximum(ps, g_s)).clip(0)
        union = (g_e - g_s) + (pe - ps) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            tiou = inter / union
        sorted_idx = np.argsort(tiou, kind="stable")[::-1]
        for t, thr in enumerate(thresholds):
            for k in sorted_idx:
                if tiou[k] < thr:
                    fp[t][rank] = 1.0
                    break
                if lock[t][gts[k]] >= 0:
                    continue
                tp[t][rank] = 1.0
                lock[t][gts[k]] = rank
                break
            if tp[t][rank] == 0.0 and fp[t][rank] == 0.0:
                fp[t][rank] = 1.0
    aps = []
    for t in range(len(thresholds)):
        tp_c = np.cumsum(tp[t])
        fp_c = np.cumsum(fp[t])
        rec = tp_c / float(len(gt))
        prec = tp_c / (tp_c + fp_c)
        aps.append(_interpolated_ap(prec.tolist(), rec.tolist()))
    return aps


def reference_evaluate(
    ground_truth: AnnotationSet,
    predictions: Detections,
    subset: str,
    tiou_thresholds: Sequence[float],
) -> dict[str, list[float]]:
    """AP per class (by name) and threshold; mAP is the mean over these classes."""
    subset = normalize_subset(subset, "reference evaluation subset")
    gt_by_label: dict[str, list[tuple[str, float, float]]] = {}
    for video in ground_truth.videos.values():
        if video.subset != subset:
            continue
        for inst in video.instances:
            gt_by_label.setdefault(inst.label, []).append((video.video_id, inst.start, inst.end))
    preds_by_label: dict[str, list[tuple[str, float, float, float]]] = defaultdict(list)
    for vid, label, s, e, sc in zip(
        predictions.video_ids,
        predictions.labels,
        predictions.start,
        predictions.end,
        predictions.score,
        strict=True,
    ):
        if label in gt_by_label:
            preds_by_label[label].append((vid, float(s), float(e), float(sc)))
    return {
        label: reference_class_ap(gt, preds_by_label.get(label, []), tiou_thresholds)
        for label, gt in gt_by_label.items()
    }

"""Figures of a detection run: timelines against ground truth, AP per class, precision-recall.

Written as PNG files (matplotlib's Agg backend, no display needed) so that they can be logged
as artifacts and opened anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from tal.data.annotations import Video
from tal.data.predictions import Detections
from tal.evaluation.detection import DetectionResult


def _save(fig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def timeline_figure(
    detections: Detections,
    video_ids: Sequence[str],
    label_names: Sequence[str],
    path: str | os.PathLike[str],
    ground_truth: dict[str, Video] | None = None,
    durations: dict[str, float] | None = None,
    min_score: float = 0.2,
    per_class: int = 3,
) -> Path:
    """One panel per video, one row per class: ground truth (grey, lower half of the row)
    against the top ``per_class`` detections of each class above ``min_score`` (coloured,
    upper half, opacity by score)."""
    ground_truth = ground_truth or {}
    video_ids = list(video_ids)
    if not video_ids:
        raise ValueError("timeline: no videos to draw")
    labels = list(label_names)
    rows = {name: i for i, name in enumerate(labels)}
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(
        len(video_ids), 1, figsize=(10, 0.45 * len(labels) * len(video_ids) + 0.8), squeeze=False
    )
    for ax, vid in zip(axes[:, 0], video_ids, strict=True):
        gt = ground_truth.get(vid)
        for inst in gt.instances if gt else []:
            if inst.label in rows:
                ax.broken_barh(
                    [(inst.start, inst.end - inst.start)],
                    (rows[inst.label] - 0.4, 0.38),
                    color="0.45",
                )
        mine = detections.video_ids == vid
        for name in labels:
            pick = np.flatnonzero(
                mine & (detections.labels == name) & (detections.score >= min_score)
            )
            pick = pick[np.argsort(-detections.score[pick], kind="stable")[:per_class]]
            for i in pick:
                start, end, score = detections.start[i], detections.end[i], detections.score[i]
                ax.broken_barh(
                    [(start, end - start)],
                    (rows[name] + 0.02, 0.38),
                    # scores outside [0, 1] (CO2-Net's contrast scores) saturate
                    color=colors(rows[name] % 10),
                    alpha=float(0.25 + 0.75 * np.clip(score, 0.0, 1.0)),
                )
                ax.text(start, rows[name] + 0.42, f"{score:.2f}", fontsize=6, va="bottom")
        end = (durations or {}).get(vid) or (gt.duration if gt and gt.duration else None)
        if end is None:
            ends = detections.end[mine]
            end = float(ends.max()) if len(ends) else 1.0
        ax.set_xlim(0, end)
        ax.set_ylim(-0.5, len(labels) - 0.5)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(
            f"{vid}: ground truth (grey, below) vs detections >= {min_score:g} (above)", fontsize=8
        )
        ax.set_xlabel("seconds", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def per_class_ap_figure(result: DetectionResult, path: str | os.PathLike[str]) -> Path:
    """AP per class averaged over the tIoU thresholds, with the mAP as a line."""
    names = sorted(result.per_class_ap)
    values = [float(np.mean(result.per_class_ap[n])) for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(names) + 2), 3.5))
    ax.bar(range(len(names)), values, color="tab:blue")
    ax.axhline(result.average_mAP, color="tab:red", linestyle="--", label="average mAP")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    tious = ", ".join(f"{t:g}" for t in result.tiou)
    ax.set_ylabel(f"AP (mean over tIoU {tious})")
    ax.legend(fontsize=8)
    return _save(fig, path)


def precision_recall_figure(
    result: DetectionResult, path: str | os.PathLike[str], tiou: float = 0.5
) -> Path:
    """Precision against recall per class at the threshold nearest ``tiou`` (needs a result
    evaluated with ``curves=True``). With no prediction of any ground-truth class (an
    untrained model), the figure is empty and says so."""
    if result.curves is None:
        raise ValueError("precision-recall figure: evaluate with curves=True")
    t = int(np.argmin(np.abs(np.asarray(result.tiou) - tiou)))
    fig, ax = plt.subplots(figsize=(5, 4))
    for name in sorted(result.curves):
        precision, recall = result.curves[name]
        ap = result.per_class_ap[name][t]
        ax.plot(recall[t], precision[t], label=f"{name} (AP {ap:.2f})", linewidth=1.2)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"precision-recall at tIoU {result.tiou[t]:g}")
    if result.curves:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no predictions of the ground truth's classes", ha="center")
    return _save(fig, path)


def training_curves_figure(
    history: Sequence[Mapping[str, float]],
    keys: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """One panel per key of the per-epoch ``history`` (losses, a method's own training
    signals such as ASL's mean positive weight, validation mAP), against the epoch: the
    curves a reader checks for collapse or divergence after a run. Keys absent from every
    row are left out; epochs without a key (validation every N epochs) are skipped."""
    present = [k for k in keys if any(k in row for row in history)]
    if not present:
        raise ValueError(f"training curves: none of {list(keys)} is in the history")
    cols = min(3, len(present))
    rows = -(-len(present) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, present, strict=False):
        points = [
            (row.get("epoch", i + 1), row[key]) for i, row in enumerate(history) if key in row
        ]
        epochs, values = zip(*points, strict=True)
        ax.plot(epochs, values, marker="." if len(points) < 30 else None, linewidth=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(present) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)

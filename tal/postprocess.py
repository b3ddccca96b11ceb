"""From the localizer's per-level outputs to scored segments in seconds.

The steps, each a function: ``decode_video`` turns one video's outputs into candidate
segments in feature steps, ``batched_nms`` suppresses duplicates (Soft-NMS per class or over
all classes, then optional segment voting), ``fuse_external_scores`` optionally relabels the
survivors with a video-level classifier's top classes, and ``to_seconds`` converts to
seconds (clipped to the video) as ``tal.data.predictions.Detections``.
Post-processing runs on the CPU in float32/64.

Parity with ActionFormer (happyharrycn/actionformer_release: ``PtTransformer.
inference_single_video`` and ``postprocessing`` in libs/modeling/meta_archs.py,
``batched_nms``/``seg_voting`` in libs/utils/nms.py, ``postprocess_results`` in
libs/utils/postprocessing.py) is the default; the former behaviour of this project stays
available through ``topk_per="video"``, ``duration_threshold=0``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from features.errors import UserInputError
from tal.data.predictions import Detections
from tal.data.timing import FeatureTiming

TopkPer = Literal["level", "video"]


@torch.no_grad()
def decode_video(
    cls_logits: Sequence[Tensor],
    offsets: Sequence[Tensor],
    masks: Sequence[Tensor],
    strides: Sequence[int],
    score_threshold: float = 0.001,
    pre_nms_topk: int = 2000,
    topk_per: TopkPer = "level",
    duration_threshold: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor]:
    """One video's candidates ``(segments [K, 2] steps, scores [K], labels [K])`` on the CPU.

    Every (valid point, class) pair is a candidate scored by the sigmoid of its logit; those
    above ``score_threshold`` are kept, then the ``pre_nms_topk`` best, sorted by decreasing
    score: on each pyramid level separately (``topk_per="level"``, ActionFormer: up to
    ``levels * pre_nms_topk`` candidates, levels in order) or over the whole video
    (``"video"``, the former rule). Point j of a level with stride s gives
    ``[j*s - d_start*s, j*s + d_end*s]``; segments not longer than ``duration_threshold``
    feature steps are then dropped (ActionFormer's ``duration_thresh``, measured like its
    segments on the feature grid, i.e. in feature steps; 0 drops only empty and negative
    ones, the former rule).
    """
    if topk_per not in ("level", "video"):
        raise ValueError(f"topk_per must be 'level' or 'video', got {topk_per!r}")
    lengths = [x.shape[0] for x in cls_logits]
    pos = torch.cat(
        [torch.arange(n, dtype=torch.float32) * s for n, s in zip(lengths, strides, strict=True)]
    )
    step = torch.cat([torch.full((n,), float(s)) for n, s in zip(lengths, strides, strict=True)])
    logits = torch.cat([x.detach().float().cpu() for x in cls_logits])  # [P, C]
    dist = torch.cat([x.detach().float().cpu() for x in offsets])  # [P, 2]
    valid = torch.cat([x.detach().cpu().bool() for x in masks])  # [P]
    num_classes = logits.shape[1]
    scores = torch.sigmoid(logits).masked_fill(~valid[:, None], 0.0).flatten()

    def top(lo: int, hi: int) -> Tensor:
        """Flat indices in ``[lo, hi)`` of the ``pre_nms_topk`` best scores above the
        threshold, best first (ties in index order)."""
        keep = lo + torch.nonzero(scores[lo:hi] > score_threshold).squeeze(1)
        order = torch.sort(scores[keep], descending=True, stable=True).indices
        return keep[order[:pre_nms_topk]]

    if topk_per == "level":
        bounds = np.cumsum([0, *lengths]) * num_classes
        idx = torch.cat([top(int(a), int(b)) for a, b in pairwise(bounds)])
    else:
        idx = top(0, scores.numel())
    point, labels = idx // num_classes, idx % num_classes
    start = pos[point] - dist[point, 0] * step[point]
    end = pos[point] + dist[point, 1] * step[point]
    ok = (end - start) > duration_threshold
    segments = torch.stack([start, end], dim=1)[ok]
    return segments, scores[idx][ok], labels[ok]


def _soft_nms_groups(
    segments: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    sigma: float,
    iou_threshold: float,
    min_score: float,
    max_detections: int,
    method: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS within each group (class), all groups at once: each round keeps the best
    live candidate of every group that still has one and decays the rest of that group.

    Rounds are bounded by the most kept in one group, not the sum over groups, and every
    operation is on whole arrays. The same picks, in the same order, with the same floating
    point operations per candidate as one greedy loop per group (ties: the lowest index).
    Returns the indices kept (grouped by group id, pick order within) and their scores."""
    n = scores.size
    order = np.argsort(groups, kind="stable")  # each group contiguous, index order within
    seg, sc, grp = segments[order], scores[order].copy(), groups[order]
    ids, starts, sizes = np.unique(grp, return_index=True, return_counts=True)
    slot = np.repeat(np.arange(ids.size), sizes)  # group slot of each candidate
    alive = sc >= min_score
    position = np.arange(n)
    kept_pos: list[np.ndarray] = []
    kept_score: list[np.ndarray] = []
    kept_slot: list[np.ndarray] = []
    count = np.zeros(ids.size, dtype=np.int64)
    while alive.any():
        live = np.where(alive, sc, -np.inf)
        best_score = np.maximum.reduceat(live, starts)
        is_best = alive & (live == best_score[slot])
        best = np.minimum.reduceat(np.where(is_best, position, n), starts)
        active = (best < n) & (count < max_detections)
        if not active.any():
            break
        picks = best[active]
        kept_pos.append(picks)
        kept_score.append(sc[picks])
        kept_slot.append(np.flatnonzero(active))
        count += active
        alive[picks] = False
        # groups that reached max_detections stop: their candidates are no longer live
        alive &= (count < max_detections)[slot]
        decay = alive & active[slot]
        if not decay.any():
            continue
        chosen = seg[np.where(best < n, best, 0)[slot]]  # each candidate's group pick
        s0, s1 = chosen[decay, 0], chosen[decay, 1]
        o = seg[decay]
        inter = np.clip(np.minimum(s1, o[:, 1]) - np.maximum(s0, o[:, 0]), 0.0, None)
        union = (s1 - s0) + (o[:, 1] - o[:, 0]) - inter
        iou = inter / np.maximum(union, 1e-12)
        if method == "gaussian":
            sc[decay] *= np.exp(-(iou**2) / sigma)
        elif method == "linear":
            sc[decay] *= np.where(iou >= iou_threshold, 1.0 - iou, 1.0)
        else:  # hard NMS
            sc[decay] *= np.where(iou >= iou_threshold, 0.0, 1.0)
        alive &= sc >= min_score
    if not kept_pos:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    pos = np.concatenate(kept_pos)
    by_group = np.argsort(np.concatenate(kept_slot), kind="stable")  # pick order within
    return order[pos[by_group]], np.concatenate(kept_score)[by_group]


def soft_nms(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor,
    sigma: float = 0.5,
    iou_threshold: float = 0.1,
    min_score: float = 0.001,
    max_detections: int = 200,
    method: str = "gaussian",
    class_agnostic: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class Soft-NMS (Bodla et al. 2017) of one video's candidates.

    Repeatedly keeps the highest-scoring remaining segment of a class and decays the others of
    that class by their tIoU with it: ``gaussian`` multiplies by ``exp(-iou^2 / sigma)``,
    ``linear`` by ``1 - iou`` where ``iou >= iou_threshold``, ``hard`` drops those at or above
    it (``>=`` as ActionFormer's nms_cpu.cpp). Segments falling below ``min_score`` are
    discarded. ``class_agnostic`` runs one suppression over all classes (segments of other
    classes decay each other too). Returns the kept segments with their decayed scores and
    labels, sorted by decreasing score, at most ``max_detections`` (also per class).
    """
    if method not in ("gaussian", "linear", "hard"):
        raise ValueError(f"method must be 'gaussian', 'linear' or 'hard', got {method!r}")
    segs = segments.detach().cpu().double().numpy().reshape(-1, 2)
    scs = scores.detach().cpu().double().numpy().reshape(-1)
    labs = labels.detach().cpu().long().numpy().reshape(-1)
    groups = np.zeros_like(labs) if class_agnostic else labs
    idx, new_scores = _soft_nms_groups(
        segs, scs, groups, sigma, iou_threshold, min_score, max_detections, method
    )
    if not idx.size:
        return segments.new_zeros((0, 2)), scores.new_zeros(0), labels.new_zeros(0)
    order = np.argsort(-new_scores, kind="stable")[:max_detections]
    idx, new_scores = idx[order], new_scores[order]
    return (
        torch.from_numpy(segs[idx]).to(segments.dtype),
        torch.from_numpy(new_scores).to(scores.dtype),
        torch.from_numpy(labs[idx]).to(labels.dtype),
    )


def segment_voting(
    kept: Tensor, candidates: Tensor, candidate_scores: Tensor, iou_threshold: float
) -> Tensor:
    """Each kept segment replaced by the average of the candidates overlapping it.

    ActionFormer's ``seg_voting`` (box voting): candidate j votes for kept segment i with
    weight ``score_j * tIoU(i, j)`` when ``tIoU(i, j) >= iou_threshold``; the kept segment is
    the weighted mean of its voters' boundaries. ``candidates`` are all pre-NMS segments with
    their original scores, so each kept segment votes for itself (tIoU 1).
    """
    if kept.numel() == 0 or candidates.numel() == 0:
        return kept
    k = kept.double()[:, None, :]
    c = candidates.double()[None, :, :]
    inter = (torch.minimum(k[..., 1], c[..., 1]) - torch.maximum(k[..., 0], c[..., 0])).clamp(min=0)
    union = (k[..., 1] - k[..., 0]) + (c[..., 1] - c[..., 0]) - inter
    iou = inter / union.clamp(min=1e-12)
    weights = (iou >= iou_threshold).double() * candidate_scores.double()[None, :] * iou
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return (weights @ candidates.double()).to(kept.dtype)


NmsMethod = Literal["soft", "hard", "linear", "none"]
_NMS_KERNEL = {"soft": "gaussian", "hard": "hard", "linear": "linear"}


def batched_nms(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor,
    method: NmsMethod = "soft",
    iou_threshold: float = 0.1,
    sigma: float = 0.5,
    min_score: float = 0.001,
    max_detections: int = 200,
    multiclass: bool = True,
    voting_threshold: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """ActionFormer's ``batched_nms`` on one video's candidates.

    ``method`` ``soft`` is Gaussian Soft-NMS (``sigma``), ``hard`` plain NMS at
    ``iou_threshold``, ``linear`` linear Soft-NMS, ``none`` no suppression (the best
    ``max_detections`` by score). ``multiclass`` suppresses within each class; otherwise
    over all classes together, and then, when ``voting_threshold > 0``, refines each kept
    segment by ``segment_voting`` over all candidates (ActionFormer votes only in this
    class-agnostic case: with per-class NMS a class has too few candidates to vote).
    Results are sorted by decreasing score, at most ``max_detections``.
    """
    if method not in ("soft", "hard", "linear", "none"):
        raise ValueError(f"method must be soft, hard, linear or none, got {method!r}")
    if method == "none":
        order = torch.sort(scores, descending=True, stable=True).indices[:max_detections]
        return segments[order], scores[order], labels[order]
    kept_segs, kept_scores, kept_labels = soft_nms(
        segments,
        scores,
        labels,
        sigma=sigma,
        iou_threshold=iou_threshold,
        min_score=min_score,
        max_detections=max_detections,
        method=_NMS_KERNEL[method],
        class_agnostic=not multiclass,
    )
    if not multiclass and voting_threshold > 0:
        kept_segs = segment_voting(kept_segs, segments, scores, voting_threshold)
    return kept_segs, kept_scores, kept_labels


# THUMOS14's 20 detection classes and their index among THUMOS's 101 classes (``type_idx``
# of the THUMOS14 annotation CSVs, e.g. G-TAD's test_Annotation.csv)
THUMOS14_CLASS_INDEX = {
    "BaseballPitch": 7,
    "BasketballDunk": 9,
    "Billiards": 12,
    "CleanAndJerk": 21,
    "CliffDiving": 22,
    "CricketBowling": 23,
    "CricketShot": 24,
    "Diving": 26,
    "FrisbeeCatch": 31,
    "GolfSwing": 33,
    "HammerThrow": 36,
    "HighJump": 40,
    "JavelinThrow": 45,
    "LongJump": 51,
    "PoleVault": 68,
    "Shotput": 79,
    "SoccerPenalty": 85,
    "TennisSwing": 92,
    "ThrowDiscus": 93,
    "VolleyballSpiking": 97,
}


@dataclass(frozen=True)
class ExternalScores:
    """Video-level class scores of an external classifier, read from a JSON file.

    The layout ActionFormer's ``postprocess_results`` reads (the CUHK ActivityNet file
    ``cuhk_val_simp_share.json``): ``{"results": {VIDEO_ID: [score per class, ...]}}`` or the
    bare ``{VIDEO_ID: [...]}``. Columns follow the label map (as ActionFormer indexes them by
    its label ids) unless the file names them in a ``"class"`` list, which is then matched to
    the label names by name. Video ids are matched as given, then with the ``v_`` prefix of
    ActivityNet ids removed or added. ``load`` also reads THUMOS14's UntrimmedNet ``.npy``.
    """

    path: str
    videos: Mapping[str, np.ndarray]
    classes: tuple[str, ...] | None = None

    @classmethod
    def load(cls, path: str | Path) -> ExternalScores:
        """Read ``path`` (JSON, or the THUMOS14 UntrimmedNet ``.npy``, see
        ``load_untrimmednet_npy``); a missing or malformed file is a ``UserInputError``
        naming it."""
        name = str(path)
        if name.endswith(".npy"):
            return cls.load_untrimmednet_npy(path)
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserInputError(f"inference.external_scores: {name} does not exist") from None
        except (OSError, ValueError) as exc:
            raise UserInputError(f"inference.external_scores: {name} is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise UserInputError(f"inference.external_scores: {name}: expected a JSON object")
        classes = raw.get("class")
        table = raw.get("results", raw if classes is None else None)
        if not isinstance(table, dict) or not table:
            raise UserInputError(
                f"inference.external_scores: {name}: expected {{'results': {{video: [scores]}}}}"
            )
        if classes is not None and not (
            isinstance(classes, list) and all(isinstance(c, str) for c in classes)
        ):
            raise UserInputError(f"inference.external_scores: {name}: 'class' must list names")
        videos: dict[str, np.ndarray] = {}
        for video, row in table.items():
            try:
                values = np.asarray(row, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                values = np.zeros(0)
            if values.size == 0 or (classes is not None and values.size != len(classes)):
                raise UserInputError(
                    f"inference.external_scores: {name}: video {video!r} needs a list of "
                    f"{len(classes) if classes is not None else 'per-class'} scores"
                )
            videos[str(video)] = values
        return cls(name, videos, tuple(classes) if classes is not None else None)

    @classmethod
    def load_untrimmednet_npy(cls, path: str | Path) -> ExternalScores:
        """The THUMOS14 UntrimmedNet video-level test scores of G-TAD/BSN-style
        post-processing (``uNet_test.npy``): a float array ``[videos, 101]`` whose row i is
        ``video_test_{i+1:07d}`` and whose column k is THUMOS class index k + 1 (the
        ``type_idx`` of the THUMOS14 annotation CSVs; G-TAD reads it the same way). The 20
        detection classes are named; the other 81 columns get placeholder names."""
        name = str(path)
        try:
            table = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise UserInputError(f"inference.external_scores: {name} does not exist") from None
        except (OSError, ValueError) as exc:
            raise UserInputError(f"inference.external_scores: {name} is not .npy: {exc}") from None
        if table.ndim != 2 or table.shape[1] != 101:
            raise UserInputError(
                f"inference.external_scores: {name}: expected [videos, 101] UntrimmedNet "
                f"scores, got shape {list(table.shape)}"
            )
        columns = [f"thumos_class_{k + 1}" for k in range(101)]
        for label, index in THUMOS14_CLASS_INDEX.items():
            columns[index - 1] = label
        videos = {f"video_test_{i + 1:07d}": row.astype(np.float64) for i, row in enumerate(table)}
        return cls(name, videos, tuple(columns))

    def for_labels(self, label_names: Sequence[str] | None) -> ExternalScores:
        """The same scores with columns in ``label_names`` order (when the file names its
        classes and the names are known); a label the file lacks is an error."""
        if self.classes is None or label_names is None:
            return self
        column = {c: i for i, c in enumerate(self.classes)}
        missing = [n for n in label_names if n not in column]
        if missing:
            raise UserInputError(
                f"inference.external_scores: {self.path} has no scores for {missing[:5]}"
            )
        idx = np.asarray([column[n] for n in label_names], dtype=np.int64)
        return ExternalScores(
            self.path, {v: s[idx] for v, s in self.videos.items()}, tuple(label_names)
        )

    def video(self, video_id: str, num_classes: int) -> np.ndarray:
        """``video_id``'s ``num_classes`` scores (an error names the file when it has none)."""
        for key in (video_id, video_id.removeprefix("v_"), "v_" + video_id):
            if key in self.videos:
                row = self.videos[key]
                if row.size != num_classes:
                    raise UserInputError(
                        f"inference.external_scores: {self.path}: video {key!r} has "
                        f"{row.size} class scores, the model {num_classes} classes"
                    )
                return row
        raise UserInputError(f"inference.external_scores: {self.path} has no video {video_id!r}")


def fuse_external_scores(
    segments: Tensor,
    scores: Tensor,
    video_scores: np.ndarray,
    topk: int = 2,
    max_segments: int = 200,
) -> tuple[Tensor, Tensor, Tensor]:
    """ActionFormer's score fusion with a video-level classifier (``postprocess_results``).

    The ``max_segments`` best segments (by score) are taken whatever their class, and each is
    repeated for the ``topk`` classes the classifier scores highest, with score
    ``sqrt(class_score * segment_score)`` and that class as label; rows come class by class
    (best class first), as in the official code. Returns ``(segments, scores, labels)``.
    """
    order = torch.sort(scores, descending=True, stable=True).indices[:max_segments]
    segs = segments[order].double()
    seg_scores = scores[order].double()
    cls_scores = torch.as_tensor(np.asarray(video_scores, dtype=np.float64))
    top = torch.sort(cls_scores, descending=True, stable=True).indices[:topk]
    fused = torch.sqrt(cls_scores[top][:, None] * seg_scores[None, :]).flatten()
    out_segs = segs.repeat(len(top), 1)
    out_labels = top[:, None].expand(len(top), len(order)).flatten()
    return out_segs.to(segments.dtype), fused.to(scores.dtype), out_labels.long()


def to_seconds(
    video_id: str,
    segments_steps: Tensor | np.ndarray,
    scores: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    timing: FeatureTiming,
    duration: float | None,
    label_names: Sequence[str],
) -> Detections:
    """One video's detections in seconds, as arrays.

    Segments are converted with ``timing.to_seconds``, clipped to ``[0, duration]`` (only at 0
    when ``duration`` is None), and dropped if empty after clipping.
    """
    segs = timing.to_seconds(_as_numpy(segments_steps).reshape(-1, 2))
    upper = np.inf if duration is None else float(duration)
    segs = np.asarray(np.clip(segs, 0.0, upper), dtype=np.float64)
    keep = segs[:, 1] > segs[:, 0]
    names = np.asarray(list(label_names), dtype=object)
    classes = _as_numpy(labels).reshape(-1)[keep].astype(np.int64)
    return Detections(
        video_ids=np.full(int(keep.sum()), video_id, dtype=object),
        labels=names[classes] if len(classes) else np.array([], dtype=object),
        start=segs[keep, 0],
        end=segs[keep, 1],
        score=_as_numpy(scores).reshape(-1)[keep].astype(np.float64),
    )


def _as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)

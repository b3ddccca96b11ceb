"""Losses of the one-stage localizer: sigmoid focal loss, 1-D DIoU loss and their combination.

``LocalizationLoss`` turns the localizer's outputs (``LocalizerOutput``) and per-video ground
truth in feature steps into ``cls_loss + reg_weight * reg_loss``, both divided by an
exponential moving average of the number of positive points, as ActionFormer does, so the
loss scale does not jump with the number of actions in a batch.

Parity with ActionFormer (``PtTransformer.losses`` in happyharrycn/actionformer_release):
the focal loss is summed over every valid (point, class) pair, the DIoU loss over positive
points, both divided by the same normaliser; the normaliser starts at ``init_loss_norm``
(100 in its THUMOS14 config, 200 in ActivityNet's) and moves with momentum 0.9 after every
batch, before the batch's loss is divided by it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tal.engine.assign import assign_targets, default_regression_ranges, make_points
from tal.models.localizer import LocalizerOutput


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "sum",
) -> Tensor:
    """Focal loss (Lin et al. 2017) on independent sigmoid outputs; targets may be soft.

    ``BCE(p, t) * (1 - p_t) ** gamma`` weighted by ``alpha_t``, with ``p_t = p t + (1-p)(1-t)``
    and ``alpha_t = alpha t + (1 - alpha)(1 - t)``; ``alpha=None`` (or < 0) disables weighting.
    """
    targets = targets.to(logits.dtype)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None and alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return _reduce(loss, reduction)


def segment_iou_1d(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """IoU of 1-D segments given as ``(d_start, d_end)`` distances from the same point, ``[N]``."""
    inter = torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 1], target[:, 1])
    inter = inter.clamp(min=0)
    union = pred.sum(1) + target.sum(1) - inter
    return inter / union.clamp(min=eps)


def diou_loss_1d(pred: Tensor, target: Tensor, reduction: str = "sum", eps: float = 1e-8) -> Tensor:
    """``1 - DIoU`` of 1-D segments given as ``(d_start, d_end)`` distances from one point.

    DIoU = IoU - (centre distance)^2 / (enclosing length)^2 (Zheng et al. 2020), so the loss
    is 0 for identical segments and exceeds 1 for disjoint ones (possible only when ``pred``
    has a negative distance).
    """
    ps, pe = pred[:, 0], pred[:, 1]
    ts, te = target[:, 0], target[:, 1]
    iou = segment_iou_1d(pred, target, eps)
    enclose = torch.maximum(ps, ts) + torch.maximum(pe, te)
    centre_gap = ((pe - ps) - (te - ts)) / 2
    diou = iou - centre_gap**2 / (enclose**2).clamp(min=eps)
    return _reduce(1 - diou, reduction)


class LocalizationLoss(nn.Module):
    """Assigns targets per video and computes the normalised focal + DIoU loss.

    The normaliser (buffer ``normalizer``) is an exponential moving average of the number of
    positive points per batch: every training call sets it to
    ``m * old + (1 - m) * max(num_pos, 1)`` and divides that batch's loss by the new value.
    It starts at ``normalizer_init`` (ActionFormer's ``init_loss_norm``, 100 by default, as in
    its THUMOS14 config). ``normalizer_init`` 0 or None keeps the older rule of this project:
    the buffer stays 0 (= not yet set) until the first training call sets it to
    ``max(num_pos, 1)`` itself. It is updated only in training mode (``loss.train()``, the
    default), so validation losses leave it alone; it travels with ``state_dict()`` /
    ``load_state_dict()``.

    Under data parallelism ``num_pos`` is the count over all ranks (``reduce_count``), so
    every rank holds the same normaliser, the one a single process would have on the global
    batch. (ActionFormer's own DDP runs keep one normaliser per GPU on its local count; ours
    is what its single-GPU runs, the published ones, do.)
    """

    normalizer: Tensor

    def __init__(
        self,
        num_classes: int,
        center_radius: float = 1.5,
        reg_weight: float = 1.0,
        label_smoothing: float = 0.0,
        normalizer_momentum: float = 0.9,
        regression_ranges: Sequence[tuple[float, float]] | None = None,
        normalizer_init: float | None = 100.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.center_radius = center_radius
        self.reg_weight = reg_weight
        self.label_smoothing = label_smoothing
        self.normalizer_momentum = normalizer_momentum
        self.regression_ranges = None if regression_ranges is None else list(regression_ranges)
        if not 0.0 <= normalizer_momentum < 1.0:
            raise ValueError(f"normalizer_momentum must lie in [0, 1), got {normalizer_momentum}")
        if normalizer_init is not None and normalizer_init < 0:
            raise ValueError(f"normalizer_init must be >= 0 or None, got {normalizer_init}")
        self.normalizer_init = float(normalizer_init or 0.0)
        self.register_buffer(
            "normalizer", torch.full((), self.normalizer_init, dtype=torch.float64)
        )
        # data parallel: turns this rank's positive count into the count over all ranks, so
        # that the normaliser is the one a single process would have on the global batch
        self.reduce_count: Callable[[float], float] | None = None

    def _update_normalizer(self, num_pos: float) -> float:
        count = max(num_pos, 1.0)
        old = float(self.normalizer)
        if not self.training:
            return old if old > 0 else count
        m = self.normalizer_momentum
        new = count if old <= 0 else m * old + (1 - m) * count
        self.normalizer.fill_(new)
        return new

    def targets(
        self,
        outputs: LocalizerOutput,
        gt_segments: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Stacked targets ``(cls [B, P, C], reg [B, P, 2], positive [B, P])`` of a batch."""
        logits = outputs.cls_logits
        ranges = self.regression_ranges or default_regression_ranges(len(logits))
        lengths = [x.shape[1] for x in logits]
        points = make_points(lengths, outputs.strides, ranges, device=logits[0].device)
        per_video = [
            assign_targets(points, segs, labels, self.num_classes, self.center_radius)
            for segs, labels in zip(gt_segments, gt_labels, strict=True)
        ]
        cls_t, reg_t, pos = (torch.stack(parts) for parts in zip(*per_video, strict=True))
        return cls_t, reg_t, pos

    def global_count(self, count: float) -> float:
        """``count`` summed over the data-parallel ranks (itself in one process)."""
        return self.reduce_count(count) if self.reduce_count is not None else count

    def prepare(
        self,
        outputs: LocalizerOutput,
        gt_segments: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, float]:
        """The batch's outputs over all levels, ``cls_logits [B, P, C]``, ``offsets [B, P, 2]``
        (fp32 under AMP) and ``valid [B, P]``; its targets ``cls, reg, positive`` (positives
        on real points only); and the normaliser after this batch's update."""
        cls_logits = torch.cat(list(outputs.cls_logits), dim=1).float()
        offsets = torch.cat(list(outputs.offsets), dim=1).float()
        valid = torch.cat(list(outputs.masks), dim=1).bool()
        if len(gt_segments) != cls_logits.shape[0]:
            raise ValueError(
                f"got ground truth for {len(gt_segments)} videos but outputs for "
                f"{cls_logits.shape[0]}"
            )
        cls_t, reg_t, pos = self.targets(outputs, gt_segments, gt_labels)
        pos = pos & valid
        norm = self._update_normalizer(self.global_count(float(pos.sum())))
        return cls_logits, offsets, valid, cls_t, reg_t, pos, norm

    def smoothed(self, cls_target: Tensor) -> Tensor:
        """Classification targets with ``label_smoothing`` applied."""
        if self.label_smoothing <= 0:
            return cls_target
        return cls_target * (1 - self.label_smoothing) + self.label_smoothing / (
            self.num_classes + 1
        )

    def forward(
        self,
        outputs: LocalizerOutput,
        gt_segments: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
    ) -> dict[str, Tensor]:
        """``{"cls_loss", "reg_loss", "loss"}`` scalar tensors."""
        cls_logits, offsets, valid, cls_t, reg_t, pos, norm = self.prepare(
            outputs, gt_segments, gt_labels
        )
        num_pos = float(pos.sum())
        cls_target = self.smoothed(cls_t[valid])
        cls_loss = sigmoid_focal_loss(cls_logits[valid], cls_target, reduction="sum") / norm
        if num_pos > 0:
            reg_loss = diou_loss_1d(offsets[pos], reg_t[pos], reduction="sum") / norm
        else:
            reg_loss = 0.0 * offsets.sum()
        loss = cls_loss + self.reg_weight * reg_loss
        return {
            "cls_loss": cls_loss,
            "reg_loss": reg_loss,
            "loss": loss,
        }

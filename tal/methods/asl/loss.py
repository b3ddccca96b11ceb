"""ASL's training loss: the localizer's focal + DIoU loss reweighted per point by action
sensitivity, the optional instance-level sensitivity loss, and the action-sensitive
contrastive loss.

The class-level weights follow the authors' release (github.com/JonnyS1226/ego4d_asl,
``PtTransformer.label_points_single_video`` and ``losses``): a positive point's focal loss
(summed over classes) is multiplied by its classification Gaussian, its DIoU loss by that
Gaussian times the mean of the two boundary Gaussians, negatives keep weight 1, the weights
are not detached (the Gaussians learn only from these losses) and not normalised, and both sums
are divided by the loss normaliser like the plain localizer's. The point's position inside its
action is taken per level as released (``tal.methods.asl.network.relative_position``).

The instance level is not in the release (``instance_branch: false``, the default). With it
(our reading of the paper), with ``p`` the class-level and ``q`` the instance-level weights,
a positive's weight per sub-task is ``p * q`` (``combine: prod``) or ``(p + q) / 2`` (``mean``),
``q`` detached so that it is trained only by its own loss, a squared error towards the quality
the localizer reaches at the point: its sigmoid probability of the true class(es) and the tIoU
of its decoded segment (both detached). Early in training that probability is about the
classifier's prior (0.01), so ``prod`` scales the positives' losses down a hundredfold and
keeps them there; ``normalize: true`` rescales the positives' weights to mean 1 per sub-task.

Besides the loss terms, the loss returns ``cls_pos_weight`` and ``reg_pos_weight``: the mean
weight of the positive points per sub-task (detached; the trainer logs them as
``train_cls_pos_weight_loss``/``train_reg_pos_weight_loss``), to watch for a collapse of the
weights over training. Each rank returns its share (its sum over the global count), so the
ranks' values add up to the global mean as the loss terms do.

The contrastive loss follows the authors' segment-level design (their
``get_segment_level_contra_loss``, which the release leaves switched off:
``cont_loss_weight: 0`` and the call commented out): per ground-truth action, on the
level-0 features, the mean feature of its centre region (action-aware for
classification), of its two boundary regions (for regression) and of the two regions just
outside it (action-irrelevant); regions are ``region * length`` (at least 1 step) wide. Centre
and boundary features are anchors; an anchor's positives are the other anchors of the same
class in the batch (both videos of a pair included), and everything else, outside features
included, is in its denominator (multi-positive InfoNCE at ``temperature`` on L2-normalised
features). All terms are divided by batch-global counts, so data-parallel ranks add up to the
loss of the whole batch; the contrastive pairs, though, are formed within each rank's share of
the batch (anchors are not gathered across ranks), so that term depends on the rank count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tal.engine.losses import (
    LocalizationLoss,
    diou_loss_1d,
    segment_iou_1d,
    sigmoid_focal_loss,
)
from tal.methods.asl.network import ASLOutput, relative_position

if TYPE_CHECKING:
    from tal.methods.asl import ASLConfig


def _region_mean(feats: Tensor, lo: float, hi: float) -> Tensor | None:
    """Mean of the features at integer steps in ``[lo, hi]`` (``feats`` ``[T, D]``), or None
    when no step falls inside."""
    first, last = max(math.ceil(lo), 0), min(math.floor(hi), len(feats) - 1)
    if last < first:
        return None
    return feats[first : last + 1].mean(0)


def contrastive_features(
    feats: Tensor, length: int, segments: Tensor, labels: Tensor, region: float
) -> tuple[list[Tensor], list[int], list[Tensor]]:
    """Anchors (centre and boundary means, with their labels) and outside means of the
    actions of one video; ``feats`` ``[T, D]`` with ``length`` real steps, segments in steps."""
    feats = feats[:length]
    anchors: list[Tensor] = []
    anchor_labels: list[int] = []
    outside: list[Tensor] = []
    for (start, end), label in zip(segments.tolist(), labels.tolist(), strict=True):
        width = max(1.0, region * (end - start))
        centre = (start + end) / 2
        centre_mean = _region_mean(feats, max(centre - width, start), min(centre + width, end))
        if centre_mean is None:  # an action shorter than a step: its nearest step
            centre_mean = feats[min(max(round(centre), 0), length - 1)]
        bounds = [
            b
            for b in (
                _region_mean(feats, start, start + width),
                _region_mean(feats, end - width, end),
            )
            if b is not None
        ]
        anchors.append(centre_mean)
        anchor_labels.append(int(label))
        if bounds:
            anchors.append(torch.stack(bounds).mean(0))
            anchor_labels.append(int(label))
        outer = [
            o
            for o in (
                _region_mean(feats, start - 1 - width, start - 1),
                _region_mean(feats, end + 1, end + 1 + width),
            )
            if o is not None
        ]
        if outer:
            outside.append(torch.stack(outer).mean(0))
    return anchors, anchor_labels, outside


def action_sensitive_contrastive(
    features: Tensor,
    masks: Tensor,
    gt_segments: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    region: float = 0.2,
    temperature: float = 0.07,
) -> tuple[Tensor, int]:
    """Sum over anchors of the multi-positive InfoNCE loss, and the number of anchors with a
    positive (see the module docstring). ``features`` ``[B, T, D]``, ``masks`` ``[B, T]``."""
    anchors: list[Tensor] = []
    labels: list[int] = []
    outside: list[Tensor] = []
    for b, (segs, labs) in enumerate(zip(gt_segments, gt_labels, strict=True)):
        a, la, o = contrastive_features(
            features[b], int(masks[b].sum()), segs.float().reshape(-1, 2), labs, region
        )
        anchors += a
        labels += la
        outside += o
    if len(anchors) < 2:
        return features.sum() * 0.0, 0
    unit = F.normalize(torch.stack(anchors).float(), dim=1)  # [M, D]
    keys = torch.cat([unit, F.normalize(torch.stack(outside).float(), dim=1)]) if outside else unit
    sim = unit @ keys.T / temperature  # [M, M + K]
    m = len(anchors)
    lab = torch.tensor(labels, device=unit.device)
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[:, :m] = torch.eye(m, dtype=torch.bool, device=unit.device)
    positive = torch.zeros_like(self_mask)
    positive[:, :m] = (lab[:, None] == lab[None, :]) & ~self_mask[:, :m]
    has_pos = positive.any(1)
    if not bool(has_pos.any()):
        return features.sum() * 0.0, 0
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_all = torch.logsumexp(sim, dim=1)
    log_pos = torch.logsumexp(sim.masked_fill(~positive, float("-inf")), dim=1)
    loss = (log_all - log_pos)[has_pos]
    return loss.sum(), int(has_pos.sum())


def point_strides(outputs: ASLOutput) -> Tensor:
    """The level stride of every point ``[P]``, levels concatenated as the loss does."""
    device = outputs.cls_logits[0].device
    return torch.cat(
        [
            torch.full((x.shape[1],), float(stride), device=device)
            for x, stride in zip(outputs.cls_logits, outputs.strides, strict=True)
        ]
    )


class ActionSensitiveLoss(LocalizationLoss):
    """``LocalizationLoss`` with ASL's reweighting and extra terms; returns ``cls_loss``,
    ``reg_loss``, ``sensitivity_loss``, ``contrastive_loss`` and ``loss``, plus the
    ``cls_pos_weight`` and ``reg_pos_weight`` metrics (see the module docstring). Keyword
    arguments go to ``LocalizationLoss``."""

    def __init__(self, num_classes: int, asl: ASLConfig, **localization: Any) -> None:
        super().__init__(num_classes, **localization)
        self.asl = asl

    def forward(  # type: ignore[override]
        self, outputs: ASLOutput, gt_segments: Sequence[Tensor], gt_labels: Sequence[Tensor]
    ) -> dict[str, Tensor]:
        if not isinstance(outputs, ASLOutput) or outputs.class_sensitivity is None:
            raise ValueError("ActionSensitiveLoss needs an ASL model's outputs (model.name: asl)")
        cls_logits, offsets, valid, cls_t, reg_t, pos, norm = self.prepare(
            outputs, gt_segments, gt_labels
        )
        num_pos = float(pos.sum())

        # class-level weights of the positives, and the instance-level ones
        strides = None
        if self.asl.position_by_stride:
            strides = point_strides(outputs).expand_as(pos)[pos]
        position = relative_position(reg_t[pos], strides)
        weights = outputs.class_sensitivity(position, cls_t[pos]).float()
        sensitivity_loss = cls_logits.sum() * 0.0
        if outputs.sensitivity is not None:
            predicted = torch.cat(list(outputs.sensitivity), dim=1).float()[pos]  # [N, 2]
            with torch.no_grad():
                prob = torch.sigmoid(cls_logits[pos])
                cls_quality = (prob * cls_t[pos]).sum(1) / cls_t[pos].sum(1).clamp(min=1)
                loc_quality = segment_iou_1d(offsets[pos], reg_t[pos])
                quality = torch.stack([cls_quality, loc_quality], dim=1)
            sensitivity_loss = F.mse_loss(predicted, quality, reduction="sum") / norm
            q = predicted.detach()
            weights = weights * q if self.asl.combine == "prod" else (weights + q) / 2

        if self.asl.normalize and len(weights):
            weights = weights / weights.mean(0, keepdim=True).clamp(min=1e-6)

        cls_target = self.smoothed(cls_t[valid])
        focal = sigmoid_focal_loss(cls_logits[valid], cls_target, reduction="none").sum(1)
        point_weight = torch.ones_like(pos, dtype=focal.dtype)
        point_weight[pos] = weights[:, 0]
        cls_loss = (focal * point_weight[valid]).sum() / norm
        if num_pos > 0:
            diou = diou_loss_1d(offsets[pos], reg_t[pos], reduction="none")
            reg_loss = (diou * weights[:, 1]).sum() / norm
        else:
            reg_loss = 0.0 * offsets.sum()

        total, anchors = action_sensitive_contrastive(
            outputs.features,
            outputs.masks[0],
            gt_segments,
            gt_labels,
            self.asl.region,
            self.asl.temperature,
        )
        contrastive_loss = total / max(self.global_count(float(anchors)), 1.0)
        loss = (
            cls_loss
            + self.reg_weight * reg_loss
            + self.asl.instance_weight * sensitivity_loss
            + self.asl.contrastive_weight * contrastive_loss
        )
        # the positives' mean weights: this rank's share of the global mean
        share = weights.detach().sum(0) / max(self.global_count(num_pos), 1.0)
        return {
            "cls_loss": cls_loss,
            "reg_loss": reg_loss,
            "sensitivity_loss": sensitivity_loss,
            "contrastive_loss": contrastive_loss,
            "loss": loss,
            "cls_pos_weight": share[0],
            "reg_pos_weight": share[1],
        }

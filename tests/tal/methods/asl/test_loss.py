"""ASL's loss on small hand-checked inputs: the contrastive term, the reweighting of the
focal and DIoU terms, the instance-level targets, detaching, and padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tal.config import TrainingConfig
from tal.engine.losses import LocalizationLoss, segment_iou_1d, sigmoid_focal_loss
from tal.methods import build_method
from tal.methods.actionformer import ActionFormerConfig
from tal.methods.asl import ASLConfig
from tal.methods.asl.loss import ActionSensitiveLoss, action_sensitive_contrastive
from tal.methods.asl.network import ASLOutput, ClassSensitivity
from tal.models.localizer import LocalizerOutput

GT_SEGMENTS = [torch.tensor([[4.0, 12.0]]), torch.tensor([[2.0, 5.0]])]
GT_LABELS = [torch.tensor([1]), torch.tensor([0])]


def _outputs(sens: ClassSensitivity, instance: float | None = None) -> ASLOutput:
    """Two videos, levels of 16 and 8 points (strides 1, 2), 3 classes; video 1 padded after
    12 steps; level-0 features of width 4."""
    gen = torch.Generator().manual_seed(0)
    masks = [torch.ones(2, 16, dtype=torch.bool), torch.ones(2, 8, dtype=torch.bool)]
    masks[0][1, 12:] = False
    masks[1][1, 6:] = False
    out = ASLOutput(
        cls_logits=[torch.randn(2, n, 3, generator=gen, requires_grad=True) for n in (16, 8)],
        offsets=[F.softplus(torch.randn(2, n, 2, generator=gen)) for n in (16, 8)],
        masks=masks,
        strides=[1, 2],
        features=torch.randn(2, 16, 4, generator=gen) * masks[0][:, :, None],
        class_sensitivity=sens,
    )
    if instance is not None:
        out.sensitivity = [torch.full((2, n, 2), instance, requires_grad=True) for n in (16, 8)]
    return out


def test_segment_iou_by_hand():
    pred = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    target = torch.tensor([[2.0, 1.0], [2.0, 2.0]])
    assert segment_iou_1d(pred, target).tolist() == pytest.approx([2 / 5, 1.0])


def _two_actions(label_b: int) -> tuple[torch.Tensor, list, list]:
    """One video of 20 steps: actions [2, 7] (class 0) and [12, 17] (class ``label_b``) whose
    frames are e1, every other frame e2."""
    feats = torch.zeros(1, 20, 2)
    feats[0, :, 1] = 1.0
    for lo, hi in ((2, 7), (12, 17)):
        feats[0, lo : hi + 1] = torch.tensor([1.0, 0.0])
    segs = [torch.tensor([[2.0, 7.0], [12.0, 17.0]])]
    return feats, segs, [torch.tensor([0, label_b])]


def test_contrastive_loss_by_hand():
    # same class: 4 anchors (centre and boundary of each) all e1, 2 outside means e2; per
    # anchor 3 positives at similarity 1/t, and 2 outside keys at 0
    feats, segs, labels = _two_actions(0)
    masks = torch.ones(1, 20, dtype=torch.bool)
    total, count = action_sensitive_contrastive(feats, masks, segs, labels, 0.2, 1.0)
    e = math.e
    assert count == 4
    assert total.item() == pytest.approx(4 * (math.log(3 * e + 2) - math.log(3 * e)), rel=1e-6)
    # other classes: 1 positive each (the other anchor of its own action); the other action's
    # anchors are negatives however similar
    feats, segs, labels = _two_actions(1)
    total, count = action_sensitive_contrastive(feats, masks, segs, labels, 0.2, 1.0)
    assert count == 4
    assert total.item() == pytest.approx(4 * (math.log(3 * e + 2) - math.log(e)), rel=1e-6)


def test_contrastive_loss_reads_only_real_steps_and_needs_two_anchors():
    feats, segs, labels = _two_actions(0)
    masks = torch.ones(1, 20, dtype=torch.bool)
    base, _ = action_sensitive_contrastive(feats, masks, segs, labels, 0.2, 0.5)
    padded = torch.cat([feats, 1e3 * torch.ones(1, 12, 2)], dim=1)
    masks = torch.cat([masks, torch.zeros(1, 12, dtype=torch.bool)], dim=1)
    again, _ = action_sensitive_contrastive(padded, masks, segs, labels, 0.2, 0.5)
    assert again.item() == pytest.approx(base.item())
    none, count = action_sensitive_contrastive(
        feats, masks[:, :20], [torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)]
    )
    assert count == 0 and none.item() == 0.0


def test_with_flat_gaussians_and_no_extras_it_is_the_plain_loss():
    sens = ClassSensitivity(3)
    sens.set_sigma(1e6)  # every weight is 1
    asl = ASLConfig(instance_branch=False, contrastive_weight=0.0)
    out = _outputs(sens)
    got = ActionSensitiveLoss(3, asl, reg_weight=2.0)(out, GT_SEGMENTS, GT_LABELS)
    want = LocalizationLoss(3, reg_weight=2.0)(out, GT_SEGMENTS, GT_LABELS)
    for key in ("cls_loss", "reg_loss", "loss"):
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-6), key
    assert set(got) == {
        "cls_loss",
        "reg_loss",
        "sensitivity_loss",
        "contrastive_loss",
        "loss",
        "cls_pos_weight",
        "reg_pos_weight",
    }
    assert got["cls_pos_weight"].item() == pytest.approx(1.0)
    assert got["reg_pos_weight"].item() == pytest.approx(1.0)


def test_positives_are_reweighted_and_negatives_are_not():
    sens = ClassSensitivity(3, min_sigma=0.05)
    with torch.no_grad():
        sens.mu.fill_(100.0)  # far from every position: positive weights ~ 0
    sens.set_sigma(0.06)
    asl = ASLConfig(instance_branch=False, contrastive_weight=0.0)
    out = _outputs(sens)
    criterion = ActionSensitiveLoss(3, asl)
    res = criterion(out, GT_SEGMENTS, GT_LABELS)
    cls_t, _, pos = criterion.targets(out, GT_SEGMENTS, GT_LABELS)
    valid = torch.cat(out.masks, 1)
    logits = torch.cat(out.cls_logits, 1)
    negatives = valid & ~pos
    norm = float(criterion.normalizer)  # the loss normaliser after this call
    expected = sigmoid_focal_loss(logits[negatives], cls_t[negatives]).item() / norm
    assert res["cls_loss"].item() == pytest.approx(expected, rel=1e-6)
    assert res["reg_loss"].item() == pytest.approx(0.0, abs=1e-9)


def test_instance_targets_and_detaching():
    sens = ClassSensitivity(3)
    asl = ASLConfig(instance_branch=True, contrastive_weight=0.0, instance_weight=1.0)
    out = _outputs(sens, instance=0.5)
    criterion = ActionSensitiveLoss(3, asl)
    _, reg_t, pos = criterion.targets(out, GT_SEGMENTS, GT_LABELS)
    out.offsets = [reg_t[:, :16], reg_t[:, 16:]]  # exact segments: tIoU 1
    out.cls_logits = [torch.zeros_like(x, requires_grad=True) for x in out.cls_logits]
    res = criterion(out, GT_SEGMENTS, GT_LABELS)
    # per positive: (0.5 - sigmoid(0))^2 + (0.5 - 1)^2 = 0.25; 6 positives, over the normaliser
    assert int(pos.sum()) == 6
    assert res["sensitivity_loss"].item() == pytest.approx(6 * 0.25 / float(criterion.normalizer))
    # the predictions weight the other losses but get gradients only from their own loss
    res["cls_loss"].backward(retain_graph=True)
    assert all(s.grad is None for s in out.sensitivity)
    res["sensitivity_loss"].backward()
    assert out.sensitivity[0].grad.abs().sum() > 0


def test_combine_mean_and_contrastive_term_enter_the_total():
    sens = ClassSensitivity(3)
    asl = ASLConfig(
        instance_branch=True, combine="mean", contrastive_weight=0.5, instance_weight=2.0
    )
    out = _outputs(sens, instance=0.3)
    res = ActionSensitiveLoss(3, asl, reg_weight=1.5)(out, GT_SEGMENTS, GT_LABELS)
    total = (
        res["cls_loss"]
        + 1.5 * res["reg_loss"]
        + 2.0 * res["sensitivity_loss"]
        + 0.5 * res["contrastive_loss"]
    )
    assert res["loss"].item() == pytest.approx(total.item())
    assert res["contrastive_loss"].item() > 0
    res["loss"].backward()
    assert sens.mu.grad is not None and sens.mu.grad.abs().sum() > 0


def test_plain_outputs_are_refused():
    out = _outputs(ClassSensitivity(3))
    plain = LocalizerOutput(out.cls_logits, out.offsets, out.masks, out.strides, out.features)
    with pytest.raises(ValueError, match="model.name: asl"):
        ActionSensitiveLoss(3, ASLConfig())(plain, GT_SEGMENTS, GT_LABELS)
    out.class_sensitivity = None
    with pytest.raises(ValueError, match="model.name: asl"):
        ActionSensitiveLoss(3, ASLConfig())(out, GT_SEGMENTS, GT_LABELS)


@pytest.mark.parametrize("normalize", [True, False])
def test_normalized_weights_keep_the_foreground_share(normalize):
    sens = ClassSensitivity(3)
    sens.set_sigma(1e6)  # class-level weights 1; instance-level 0.3 everywhere
    asl = ASLConfig(instance_branch=True, contrastive_weight=0.0, normalize=normalize)
    out = _outputs(sens, instance=0.3)
    got = ActionSensitiveLoss(3, asl)(out, GT_SEGMENTS, GT_LABELS)
    plain = LocalizationLoss(3)(out, GT_SEGMENTS, GT_LABELS)
    if normalize:  # weights 0.3 / mean 0.3 = 1: the plain loss
        assert got["reg_loss"].item() == pytest.approx(plain["reg_loss"].item(), rel=1e-6)
        assert got["cls_loss"].item() == pytest.approx(plain["cls_loss"].item(), rel=1e-6)
    else:
        assert got["reg_loss"].item() == pytest.approx(0.3 * plain["reg_loss"].item(), rel=1e-6)
        assert got["cls_loss"].item() < plain["cls_loss"].item()


def test_localization_settings_are_the_one_stage_methods():
    training = TrainingConfig(center_radius=2.0, reg_weight=0.5, loss_norm_init=50.0)
    ours = build_method(ASLConfig()).build_loss(3, training)
    plain = build_method(ActionFormerConfig()).build_loss(3, training)
    settings = {k: v for k, v in vars(plain).items() if not k.startswith("_")}
    assert settings == {k: v for k, v in vars(ours).items() if k in settings}
    assert float(ours.normalizer) == float(plain.normalizer)

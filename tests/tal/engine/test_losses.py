"""Focal and DIoU losses against hand computations; the combined loss end to end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tal.config import TrainingConfig
from tal.engine.losses import LocalizationLoss, diou_loss_1d, sigmoid_focal_loss
from tal.methods import build_method
from tal.methods.actionformer import ActionFormerConfig
from tal.models.localizer import LocalizerOutput


def test_focal_loss_by_hand():
    logits = torch.tensor([0.0, 2.0])
    targets = torch.tensor([1.0, 0.0])
    p = 1 / (1 + math.exp(-2.0))
    pos = 0.25 * 0.5**2 * math.log(2)  # p_t = 0.5, alpha_t = 0.25
    neg = 0.75 * p**2 * -math.log(1 - p)  # p_t = 1 - p, alpha_t = 0.75
    out = sigmoid_focal_loss(logits, targets, reduction="none")
    assert out.tolist() == pytest.approx([pos, neg], rel=1e-6)
    assert sigmoid_focal_loss(logits, targets).item() == pytest.approx(pos + neg, rel=1e-6)
    assert sigmoid_focal_loss(logits, targets, reduction="mean").item() == pytest.approx(
        (pos + neg) / 2, rel=1e-6
    )


def test_focal_loss_without_focusing_is_bce():
    logits = torch.tensor([[-1.0, 0.5], [3.0, 0.0]])
    targets = torch.tensor([[0.0, 1.0], [1.0, 0.3]])
    got = sigmoid_focal_loss(logits, targets, alpha=None, gamma=0.0)
    want = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_diou_identical_disjoint_and_partial():
    a = torch.tensor([[1.0, 3.0], [0.5, 0.5]])
    assert diou_loss_1d(a, a, reduction="none").tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    # pred [2, 3] vs target [-1, 0]: IoU 0, centres 3 apart, enclosing length 4
    disjoint = diou_loss_1d(torch.tensor([[-2.0, 3.0]]), torch.tensor([[1.0, 0.0]]))
    assert disjoint.item() == pytest.approx(1 + 9 / 16)
    assert disjoint.item() > 1
    # pred [-1, 3] vs target [-2, 1]: inter 2, union 5, centres 1 and -0.5, enclosing 5
    partial = diou_loss_1d(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 1.0]]))
    assert partial.item() == pytest.approx(1 - (0.4 - 1.5**2 / 25))


def _fake_outputs(requires_grad: bool = True) -> tuple[LocalizerOutput, list[torch.Tensor]]:
    """Two videos, two levels (T=16, strides 1 and 2), 3 classes; video 1 padded after 12;
    and the raw offsets before softplus."""
    gen = torch.Generator().manual_seed(0)
    logits = [torch.randn(2, n, 3, generator=gen) for n in (16, 8)]
    raw = [torch.randn(2, n, 2, generator=gen) for n in (16, 8)]
    for x in logits + raw:
        x.requires_grad_(requires_grad)
    masks = [torch.ones(2, 16, dtype=torch.bool), torch.ones(2, 8, dtype=torch.bool)]
    masks[0][1, 12:] = False
    masks[1][1, 6:] = False
    out = LocalizerOutput(
        cls_logits=logits,
        offsets=[F.softplus(x) for x in raw],
        masks=masks,
        strides=[1, 2],
        features=torch.zeros(2, 16, 4),
    )
    return out, raw


GT_SEGMENTS = [torch.tensor([[4.0, 12.0]]), torch.tensor([[2.0, 5.0]])]
GT_LABELS = [torch.tensor([1]), torch.tensor([0])]


def test_localization_loss_is_finite_and_differentiable():
    out, raw = _fake_outputs()
    criterion = LocalizationLoss(num_classes=3)
    res = criterion(out, GT_SEGMENTS, GT_LABELS)
    # video 0, [4, 12]: level 0 point 8 (reach 4), level 1 positions 6, 8, 10 (reach 6, 4, 6);
    # video 1, [2, 5]: level 0 points 3, 4
    # ActionFormer's normaliser: starts at init_loss_norm 100, then 0.9 * 100 + 0.1 * 6
    assert float(criterion.normalizer) == pytest.approx(90.6)
    for key in ("cls_loss", "reg_loss", "loss"):
        assert res[key].ndim == 0 and torch.isfinite(res[key])
    assert res["loss"].item() == pytest.approx(res["cls_loss"].item() + res["reg_loss"].item())
    res["loss"].backward()
    for x in out.cls_logits + raw:
        assert x.grad is not None and torch.isfinite(x.grad).all()
    # padded points get no classification gradient
    assert out.cls_logits[0].grad[1, 12:].abs().sum() == 0


def test_localization_loss_by_hand_with_zero_logits_and_exact_offsets():
    out, _ = _fake_outputs(requires_grad=False)
    out.cls_logits = [torch.zeros_like(x) for x in out.cls_logits]
    criterion = LocalizationLoss(num_classes=3, reg_weight=2.0)
    _, reg_t, _ = criterion.targets(out, GT_SEGMENTS, GT_LABELS)
    out.offsets = [reg_t[:, :16], reg_t[:, 16:]]
    res = criterion(out, GT_SEGMENTS, GT_LABELS)
    # 126 valid (point, class) pairs (24*3 + 18*3), 6 positive; focal loss at logit 0;
    # divided by the normaliser after this batch, 0.9 * 100 + 0.1 * 6 (ActionFormer's rule)
    ln2 = math.log(2)
    expected = (6 * 0.0625 * ln2 + 120 * 0.1875 * ln2) / 90.6
    assert res["cls_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert res["reg_loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_no_positives_gives_zero_reg_loss_with_a_graph():
    out, raw = _fake_outputs()
    empty = [torch.zeros(0, 2), torch.zeros(0, 2)]
    labels = [torch.zeros(0, dtype=torch.long)] * 2
    criterion = LocalizationLoss(num_classes=3)
    res = criterion(out, empty, labels)
    assert float(criterion.normalizer) == pytest.approx(90.1)  # 0.9 * 100 + 0.1 * max(0, 1)
    assert res["reg_loss"].item() == 0.0
    assert torch.isfinite(res["loss"])
    res["loss"].backward()
    assert all(x.grad is not None for x in raw)


def test_positives_on_padded_points_do_not_count():
    out, _ = _fake_outputs(requires_grad=False)
    # video 1 is valid up to step 12 on level 0 and 12 on level 1: [13, 15] falls in padding
    criterion = LocalizationLoss(3)
    res = criterion(out, [torch.zeros(0, 2), torch.tensor([[13.0, 15.0]])], GT_LABELS)
    assert float(criterion.normalizer) == pytest.approx(90.1) and res["reg_loss"].item() == 0.0


def test_normalizer_ema_eval_mode_and_state_round_trip():
    out, _ = _fake_outputs(requires_grad=False)
    # the former rule (training.loss_norm_init 0): the first batch sets the normaliser
    criterion = LocalizationLoss(num_classes=3, normalizer_momentum=0.9, normalizer_init=0)
    criterion(out, GT_SEGMENTS, GT_LABELS)  # 6 positives: set to 6
    empty = [torch.zeros(0, 2)] * 2
    criterion(out, empty, [torch.zeros(0, dtype=torch.long)] * 2)  # max(0, 1) = 1
    assert float(criterion.normalizer) == pytest.approx(0.9 * 6 + 0.1 * 1)
    criterion.eval()
    criterion(out, GT_SEGMENTS, GT_LABELS)
    assert float(criterion.normalizer) == pytest.approx(5.5)  # unchanged in eval mode
    restored = LocalizationLoss(num_classes=3)
    restored.load_state_dict(criterion.state_dict())
    assert float(restored.normalizer) == pytest.approx(5.5)


def test_normalizer_starts_at_init_loss_norm_like_actionformer():
    """ActionFormer (PtTransformer.losses): normaliser = 0.9 * normaliser + 0.1 * max(pos, 1)
    from init_loss_norm, updated before the batch's loss is divided by it. Hand values:
    step 1 with 6 positives 0.9 * 100 + 0.1 * 6 = 90.6; step 2 with none 0.9 * 90.6 + 0.1."""
    out, _ = _fake_outputs(requires_grad=False)
    criterion = LocalizationLoss(num_classes=3)  # defaults: init 100, momentum 0.9
    assert float(criterion.normalizer) == 100.0
    first = criterion(out, GT_SEGMENTS, GT_LABELS)
    assert float(criterion.normalizer) == pytest.approx(90.6)
    empty = [torch.zeros(0, 2)] * 2
    criterion(out, empty, [torch.zeros(0, dtype=torch.long)] * 2)
    assert float(criterion.normalizer) == pytest.approx(0.9 * 90.6 + 0.1)
    # the same batch's loss under the former rule is divided by 6 instead of 90.6
    former = LocalizationLoss(num_classes=3, normalizer_init=None)(out, GT_SEGMENTS, GT_LABELS)
    assert first["loss"].item() * 90.6 == pytest.approx(former["loss"].item() * 6, rel=1e-5)
    # ActivityNet's init_loss_norm 200 with another momentum
    anet = LocalizationLoss(num_classes=3, normalizer_init=200, normalizer_momentum=0.5)
    anet(out, GT_SEGMENTS, GT_LABELS)
    assert float(anet.normalizer) == pytest.approx(0.5 * 200 + 0.5 * 6)


def test_normalizer_counts_positives_over_all_ranks():
    """Data parallel: ``reduce_count`` turns this rank's count into the global one, so each
    rank's normaliser is the single-process one on the global batch (here: 6 + 10)."""
    out, _ = _fake_outputs(requires_grad=False)
    criterion = LocalizationLoss(num_classes=3)
    criterion.reduce_count = lambda n: n + 10.0  # another rank had 10 positives
    criterion(out, GT_SEGMENTS, GT_LABELS)
    assert float(criterion.normalizer) == pytest.approx(0.9 * 100 + 0.1 * 16)


def test_loss_functions_match_actionformer_on_a_hand_case():
    """Values printed by ActionFormer's own ``ctr_diou_loss_1d`` and ``sigmoid_focal_loss``
    (libs/modeling/losses.py, run outside this repository on these tensors)."""
    pred = torch.tensor([[1.0, 2.0], [0.5, 3.0], [2.0, 0.0], [1.5, 1.5]])
    target = torch.tensor([[1.0, 2.0], [1.0, 1.0], [0.5, 0.5], [3.0, 1.0]])
    official_diou = [0.0, 0.72265625, 0.96, 0.49382713437080383]
    assert diou_loss_1d(pred, target, reduction="none").tolist() == pytest.approx(
        official_diou, abs=1e-6
    )
    logits = torch.tensor([[-2.0, 0.5], [1.0, 3.0]])
    targets = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    official_focal = [
        [0.0013526726979762316, 0.01689337007701397],
        [0.005664513446390629, 2.0747103691101074],
    ]
    got = sigmoid_focal_loss(logits, targets, reduction="none")
    for row, want in zip(got.tolist(), official_focal, strict=True):
        assert row == pytest.approx(want, rel=1e-6)
    smoothed = LocalizationLoss(num_classes=2, label_smoothing=0.1).smoothed(targets)
    assert sigmoid_focal_loss(logits, smoothed).item() == pytest.approx(
        1.8746821880340576, rel=1e-6
    )


def test_bad_normalizer_settings_are_rejected():
    with pytest.raises(ValueError, match="normalizer_momentum"):
        LocalizationLoss(3, normalizer_momentum=1.0)
    with pytest.raises(ValueError, match="normalizer_init"):
        LocalizationLoss(3, normalizer_init=-1.0)


def test_one_stage_methods_take_the_normaliser_from_training():
    method = build_method(ActionFormerConfig(max_seq_len=64))
    loss = method.build_loss(3, TrainingConfig(loss_norm_init=200, loss_norm_momentum=0.5))
    assert float(loss.normalizer) == 200.0 and loss.normalizer_momentum == 0.5
    former = method.build_loss(3, TrainingConfig(loss_norm_init=None))
    assert float(former.normalizer) == 0.0  # set by the first batch

"""ASL against the authors' release (github.com/JonnyS1226/ego4d_asl) on one hand case.

The expected numbers come from running the release's own ``PtTransformer.
label_points_single_video`` and ``PtTransformer.losses`` (``libs/modeling/meta_archs.py``,
with its ``sigmoid_focal_loss`` and ``ctr_diou_loss_1d``), extracted unchanged and run outside
this repository on the inputs built here: one video, levels of 16 points (stride 1) and 8
points (stride 2), one action [3, 12] of class 1 of 2, open regression ranges, centre
sampling radius 1.5, loss normaliser 100 with momentum 0.9, and Gaussians for class 1 of
means 0.1 (classification), 0.35 (``mu_reg_right``, our start column) and -0.3
(``mu_reg_left``, our end column) with widths 0.4, 0.3, 0.2; class 0 at the release's start.
"""

from __future__ import annotations

import pytest
import torch

from tal.methods.asl import ASLConfig
from tal.methods.asl.loss import ActionSensitiveLoss, point_strides
from tal.methods.asl.network import ASLOutput, ClassSensitivity, relative_position

LENGTHS, STRIDES = (16, 8), (1, 2)
START, END, LABEL = 3.0, 12.0, 1
# from the release, see the module docstring
RELEASE_POSITIVES = [7, 8, 19, 20, 21]
RELEASE_CLS_WEIGHT_ALL = [
    0.186271, 0.298234, 0.442039, 0.606531, 0.770433, 0.905955, 0.986207, 0.993846,
    0.927171, 0.800737, 0.640192, 0.473827, 0.324652, 0.205924, 0.120917, 0.065729,
    0.730981, 0.876305, 0.972511, 0.999132, 0.950257, 0.83666, 0.681941, 0.514557,
]  # fmt: skip
RELEASE_REG_WEIGHT_POS = [0.409308, 0.405565, 0.416121, 0.403174, 0.413296]
RELEASE_CLS_LOSS, RELEASE_REG_LOSS, RELEASE_NORMALIZER = 0.0690988, 0.0146628, 90.5


def _gaussians() -> ClassSensitivity:
    sens = ClassSensitivity(num_classes=2)
    with torch.no_grad():
        sens.mu[LABEL] = torch.tensor([0.1, 0.35, -0.3])
    sens.set_sigma(torch.tensor([[1.0, 1.0, 1.0], [0.4, 0.3, 0.2]]))
    return sens


def _points() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every point's time (in steps), stride and level, levels concatenated."""
    t = torch.cat([torch.arange(0, 16, s, dtype=torch.float) for s in STRIDES])
    stride = torch.cat([torch.full((n,), float(s)) for n, s in zip(LENGTHS, STRIDES, strict=True)])
    level = torch.cat([torch.full((n,), float(i)) for i, n in enumerate(LENGTHS)])
    return t, stride, level


def _targets() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The release's targets for the action: distances in stride units, its positives."""
    t, stride, _ = _points()
    reg = torch.stack([(t - START) / stride, (END - t) / stride], dim=1)
    pos = torch.zeros(len(t), dtype=torch.bool)
    pos[RELEASE_POSITIVES] = True
    cls = torch.zeros(len(t), 2)
    cls[pos, LABEL] = 1.0
    return cls[None], reg[None], pos[None]


def test_relative_position_divides_by_the_stride_by_hand():
    # 1.5 steps-of-2 after the start and 3 before the end: (3 - 1.5) / (2 * 4.5) = 1/6 of the
    # action's length from its centre, over stride 2
    reg = torch.tensor([[1.5, 3.0], [4.0, 5.0]])
    got = relative_position(reg, torch.tensor([2.0, 1.0]))
    assert got.tolist() == pytest.approx([1 / 12, 1 / 18])
    assert relative_position(reg).tolist() == pytest.approx([1 / 6, 1 / 18])


def test_gaussian_weights_match_the_release_on_every_point():
    _, reg, _ = _targets()
    _, stride, _ = _points()
    sens = _gaussians()
    classes = torch.zeros(len(stride), 2)
    classes[:, LABEL] = 1.0
    w = sens(relative_position(reg[0], stride), classes)
    assert w[:, 0].tolist() == pytest.approx(RELEASE_CLS_WEIGHT_ALL, abs=2e-6)
    assert w[RELEASE_POSITIVES, 1].tolist() == pytest.approx(RELEASE_REG_WEIGHT_POS, abs=2e-6)
    # without the stride (our earlier reading) the second level's weights differ
    old = sens(relative_position(reg[0]), classes)
    assert not torch.allclose(old[16:, 0], w[16:, 0], atol=1e-3)


def test_loss_matches_the_release():
    t, _, level = _points()
    logits = torch.stack([2 * torch.sin(0.7 * t + 1.3 * c + level) - 1 for c in range(2)], 1)
    offsets = torch.stack(
        [1 + 0.5 * torch.cos(0.3 * t + level), 1.5 + 0.4 * torch.sin(0.2 * t + level)], 1
    )
    out = ASLOutput(
        cls_logits=[logits[None, :16], logits[None, 16:]],
        offsets=[offsets[None, :16], offsets[None, 16:]],
        masks=[torch.ones(1, n, dtype=torch.bool) for n in LENGTHS],
        strides=list(STRIDES),
        features=torch.zeros(1, 16, 4),
        class_sensitivity=_gaussians(),
    )
    assert point_strides(out).tolist() == [1.0] * 16 + [2.0] * 8
    criterion = ActionSensitiveLoss(2, ASLConfig(contrastive_weight=0.0))
    criterion.targets = lambda *_: _targets()  # the release's assignment (see _targets)
    criterion.normalizer.fill_(100.0)  # the release's init_loss_norm in its configs
    res = criterion(out, [torch.tensor([[START, END]])], [torch.tensor([LABEL])])
    assert float(criterion.normalizer) == pytest.approx(RELEASE_NORMALIZER)
    assert res["cls_loss"].item() == pytest.approx(RELEASE_CLS_LOSS, rel=1e-5)
    assert res["reg_loss"].item() == pytest.approx(RELEASE_REG_LOSS, rel=1e-5)
    assert res["loss"].item() == pytest.approx(RELEASE_CLS_LOSS + RELEASE_REG_LOSS, rel=1e-5)
    # the logged metric: the positives' mean weights
    assert res["cls_pos_weight"].item() == pytest.approx(
        sum(RELEASE_CLS_WEIGHT_ALL[i] for i in RELEASE_POSITIVES) / 5, rel=1e-5
    )
    assert res["reg_pos_weight"].item() == pytest.approx(sum(RELEASE_REG_WEIGHT_POS) / 5, rel=1e-5)

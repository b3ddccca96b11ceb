"""ASL's model parts: class-level Gaussians, the instance-level head, relative positions, and
the localizer's extra outputs with ``name: asl`` (shapes and masking)."""

from __future__ import annotations

import math

import pytest
import torch

from tal.config import TrainingConfig
from tal.engine.trainer import make_optimizer
from tal.methods import build_method
from tal.methods.actionformer import ActionFormerConfig
from tal.methods.asl import ASLConfig
from tal.methods.asl.network import (
    ASLOutput,
    ClassSensitivity,
    InstanceSensitivity,
    relative_position,
)


def test_relative_position_by_hand():
    # distances (to start, to end): at the start, the centre, the end, a quarter in
    reg = torch.tensor([[0.0, 8.0], [4.0, 4.0], [8.0, 0.0], [2.0, 6.0]])
    assert relative_position(reg).tolist() == pytest.approx([0.5, 0.0, -0.5, 0.25])


def test_class_gaussians_by_hand():
    sens = ClassSensitivity(num_classes=2, min_sigma=0.05)
    with torch.no_grad():
        sens.mu[1] = torch.tensor([0.1, 0.4, -0.4])
    sens.set_sigma(torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.25, 0.25]]))
    x = torch.tensor([0.0, 0.0, 0.3])
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    w = sens(x, classes)

    def g(v, mu, sigma):
        return math.exp(-((v - mu) ** 2) / (2 * sigma**2))

    # class 0 at the centre: classification weight 1, boundaries at +-0.5 with sigma 1
    assert w[0].tolist() == pytest.approx([1.0, g(0, 0.5, 1)])
    c1 = [g(0, 0.1, 0.5), g(0, 0.4, 0.25), g(0, -0.4, 0.25)]
    assert w[1].tolist() == pytest.approx([c1[0], c1[0] * (c1[1] + c1[2]) / 2])
    # two classes (a tied assignment): the mean of their Gaussians
    a = [g(0.3, 0, 1), g(0.3, 0.5, 1), g(0.3, -0.5, 1)]
    b = [g(0.3, 0.1, 0.5), g(0.3, 0.4, 0.25), g(0.3, -0.4, 0.25)]
    m = [(p + q) / 2 for p, q in zip(a, b, strict=True)]
    assert w[2].tolist() == pytest.approx([m[0], m[0] * (m[1] + m[2]) / 2])


def test_gaussian_width_has_a_floor_that_keeps_a_gradient():
    sens = ClassSensitivity(num_classes=1, min_sigma=0.1)
    assert sens.sigma().flatten().tolist() == pytest.approx([1.0] * 3)  # the release's start
    with torch.no_grad():
        sens.sigma_raw.fill_(-30.0)  # far past the floor
    assert sens.sigma().min().item() >= 0.1
    assert sens.sigma().min().item() == pytest.approx(0.1)
    # near the floor the width still gets a gradient (a clamp would give exactly 0)
    with torch.no_grad():
        sens.sigma_raw.fill_(-4.0)
    sens(torch.tensor([0.2, -0.3]), torch.ones(2, 1)).sum().backward()
    assert sens.mu.grad.abs().sum() > 0 and (sens.sigma_raw.grad != 0).all()
    with pytest.raises(ValueError, match="min_sigma"):
        sens.set_sigma(0.05)


def test_old_checkpoints_load_their_widths():
    # before the softplus widths, checkpoints stored log(sigma)
    sens = ClassSensitivity(num_classes=2, min_sigma=0.05)
    old = {"mu": sens.mu.detach().clone(), "log_sigma": torch.log(torch.full((2, 3), 0.3))}
    sens.load_state_dict(old)
    assert sens.sigma().flatten().tolist() == pytest.approx([0.3] * 6, rel=1e-5)


@pytest.mark.parametrize("decay_on", ["modules", "matrices", "all"])
def test_gaussians_get_no_weight_decay(decay_on):
    shape = {"embed_dim": 16, "num_heads": 2, "num_levels": 3, "attention_window": 3}
    model = build_method(ASLConfig(**shape)).build_network(in_dim=6, num_classes=3)
    names = model.no_weight_decay()
    assert names == {"class_sensitivity.mu", "class_sensitivity.sigma_raw"}
    # the trainer's optimiser honours it under every weight-decay rule
    training = TrainingConfig(weight_decay=0.05, weight_decay_on=decay_on)
    groups = make_optimizer(model, training).param_groups
    gaussians = {id(p) for p in model.class_sensitivity.parameters()}
    for group in groups:
        if gaussians & {id(p) for p in group["params"]}:
            assert group["weight_decay"] == 0.0


def test_frozen_gaussians():
    shape = {"embed_dim": 16, "num_heads": 2, "num_levels": 3, "attention_window": 3}
    frozen = build_method(ASLConfig(learn_gaussians=False, **shape)).build_network(6, 3)
    assert not any(p.requires_grad for p in frozen.class_sensitivity.parameters())
    assert frozen.class_sensitivity.sigma().flatten().tolist() == pytest.approx([1.0] * 9)


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="classes"):
        ClassSensitivity(3)(torch.zeros(4), torch.zeros(4, 2))


def test_instance_head_is_in_range_and_zero_on_padding():
    head = InstanceSensitivity(8)
    x = torch.randn(2, 8, 10)
    mask = torch.arange(10)[None] < torch.tensor([10, 6])[:, None]
    out = head(x, mask)
    assert out.shape == (2, 10, 2)
    assert ((out[mask] > 0) & (out[mask] < 1)).all() and out[~mask].abs().sum() == 0


@pytest.mark.parametrize("instance", [True, False])
def test_asl_localizer_outputs(instance):
    shape = {"embed_dim": 16, "num_heads": 2, "num_levels": 3, "attention_window": 3}
    cfg = ASLConfig(instance_branch=instance, **shape)
    model = build_method(cfg).build_network(in_dim=6, num_classes=3)
    feats = torch.randn(2, 6, 16)
    masks = torch.arange(16)[None] < torch.tensor([16, 12])[:, None]
    out = model(feats, masks)
    assert isinstance(out, ASLOutput)
    assert out.features.shape == (2, 16, 16)
    assert out.features[1, 12:].abs().sum() == 0
    assert out.class_sensitivity is model.class_sensitivity
    if instance:
        assert out.sensitivity is not None
        assert [s.shape for s in out.sensitivity] == [(2, 16, 2), (2, 8, 2), (2, 4, 2)]
        assert out.sensitivity[1][1, 6:].abs().sum() == 0
    else:
        assert out.sensitivity is None and model.sensitivity is None
    # other methods' networks have none of it
    plain = build_method(ActionFormerConfig(**shape)).build_network(in_dim=6, num_classes=3)
    assert not isinstance(plain(feats, masks), ASLOutput)
    assert not hasattr(plain, "class_sensitivity")

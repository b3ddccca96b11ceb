"""Optimiser construction of the training loop: which parameters get weight decay (ActionFormer's
make_optimizer, the timm ``no_weight_decay()`` convention, the former and CO2-Net rules) and
Adam versus AdamW."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tal.config import TrainingConfig
from tal.engine.trainer import _param_groups, make_optimizer
from tal.methods import build_method
from tal.methods.actionformer import ActionFormerConfig
from tal.models.blocks import MaskedConv1d


class _Net(nn.Module):
    """One of each kind of parameter ActionFormer's make_optimizer sorts."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.conv = nn.Conv1d(4, 4, 3)
        self.masked = MaskedConv1d(4, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.scale = nn.Parameter(torch.ones(4))
        self.rel_pe = nn.Parameter(torch.zeros(1, 4, 8))  # 3-d, but a position encoding
        self.gauss = nn.Linear(2, 2)  # listed by no_weight_decay() below


class _NetWithExemptions(_Net):
    def no_weight_decay(self) -> set[str]:
        return {"gauss.weight"}


def _names(model: nn.Module, groups: list[dict[str, object]]) -> tuple[set[str], set[str]]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = ({by_id[id(p)] for p in g["params"]} for g in groups)  # type: ignore[attr-defined]
    return decay, no_decay


def test_modules_rule_decays_only_linear_and_conv_weights():
    """By hand from ActionFormer's make_optimizer: whitelisted Linear/Conv1d/MaskedConv1D
    weights are decayed; biases, LayerNorm weights, scales and rel_pe are not."""
    net = _Net()
    groups = _param_groups(net, 0.05)
    decay, no_decay = _names(net, groups)
    assert decay == {"fc.weight", "conv.weight", "masked.conv.weight", "gauss.weight"}
    assert no_decay == set(dict(net.named_parameters())) - decay
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]


def test_no_weight_decay_names_are_exempt():
    net = _NetWithExemptions()
    for rule in ("modules", "matrices", "all"):
        decay, no_decay = _names(net, _param_groups(net, 0.05, rule))
        assert "gauss.weight" in no_decay and "gauss.weight" not in decay

    class _Typo(_Net):
        def no_weight_decay(self) -> set[str]:
            return {"gaus.weight"}

    with pytest.raises(ValueError, match="gaus.weight"):
        _param_groups(_Typo(), 0.05)


def test_former_and_all_rules():
    net = _Net()
    decay, _ = _names(net, _param_groups(net, 0.05, "matrices"))
    # the former rule also decays the 3-d position table
    assert decay == {"fc.weight", "conv.weight", "masked.conv.weight", "gauss.weight", "rel_pe"}
    decay, no_decay = _names(net, _param_groups(net, 0.05, "all"))
    assert no_decay == set() and decay == set(dict(net.named_parameters()))
    with pytest.raises(ValueError, match="decay_on"):
        _param_groups(net, 0.05, "biases")  # type: ignore[arg-type]


def test_localizer_groups_and_wrapped_network():
    network = build_method(ActionFormerConfig(max_seq_len=64)).build_network(8, 3)
    decay, no_decay = _names(network, _param_groups(network, 0.05))
    modules = dict(network.named_modules())
    for name in decay:
        layer, _, kind = name.rpartition(".")
        assert kind == "weight" and isinstance(modules[layer], (nn.Linear, nn.Conv1d))
    assert any(n.endswith("scales") for n in no_decay)  # the regression head's scales
    assert all(not n.endswith("bias") for n in decay)
    # a DataParallel-style wrapper is looked through: same names
    wrapped = nn.DataParallel(network)
    assert _names(network, _param_groups(wrapped, 0.05)) == (decay, no_decay)


def test_make_optimizer_adam_and_adamw():
    net = _Net()
    adamw = make_optimizer(net, TrainingConfig(lr=1e-3, weight_decay=0.05))
    assert type(adamw) is torch.optim.AdamW
    adam = make_optimizer(
        net, TrainingConfig(optimizer="adam", lr=1e-4, weight_decay=1e-3, weight_decay_on="all")
    )
    assert type(adam) is torch.optim.Adam
    assert [g["weight_decay"] for g in adam.param_groups] == [1e-3, 0.0]
    assert adam.param_groups[0]["lr"] == 1e-4
    # Adam's weight decay is L2 on the gradient: one step from w = 1 with zero loss gradient
    # moves w by -lr * sign(wd * w) = -lr (Adam normalises the gradient wd * w)
    w = nn.Parameter(torch.ones(1))
    step = torch.optim.Adam([w], lr=0.1, weight_decay=1e-3)
    w.grad = torch.zeros(1)
    step.step()
    assert w.item() == pytest.approx(0.9, rel=1e-4)


def test_training_keys_validate():
    t = TrainingConfig()
    assert (t.optimizer, t.weight_decay_on, t.schedule, t.warmup_shape) == (
        "adamw",
        "modules",
        "cosine",
        "actionformer",
    )
    assert (t.loss_norm_init, t.loss_norm_momentum) == (100.0, 0.9)
    with pytest.raises(ValueError, match="optimizer"):
        TrainingConfig(optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss_norm_momentum"):
        TrainingConfig(loss_norm_momentum=1.0)

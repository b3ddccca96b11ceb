"""CO2-Net's losses on hand-checked small inputs, with padding."""

from __future__ import annotations

import math

import pytest
import torch

from tal.methods.co2net.config import CO2NetConfig
from tal.methods.co2net.loss import (
    CO2NetLoss,
    coactivity_loss,
    mil_loss,
    suppressed,
    topk_mean,
)
from tal.methods.co2net.network import CO2NetOutput


def test_topk_mean_by_hand_and_over_real_points_only():
    values = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 0.0])[None, :, None]
    every = torch.ones(1, 6, dtype=torch.bool)
    assert topk_mean(values, every, 3).item() == pytest.approx(4.5)  # k = 2
    first4 = torch.arange(6)[None] < 4
    assert topk_mean(values, first4, 3).item() == pytest.approx(5.0)  # k = 4 // 3 = 1
    padded = values.clone()
    padded[0, 4:] = 100.0
    assert topk_mean(padded, first4, 2).item() == pytest.approx(4.5)  # padding never picked


def test_mil_loss_by_hand():
    logits = torch.zeros(1, 3)
    # the official normaliser: two labels weigh 1 / (2 + 1e-4) each
    assert mil_loss(logits, torch.tensor([[1.0, 0.0, 1.0]])).item() == pytest.approx(
        2 / 2.0001 * math.log(3), rel=1e-6
    )
    confident = torch.tensor([[10.0, -10.0, 10.0]])
    assert mil_loss(confident, torch.tensor([[1.0, 0.0, 1.0]])).item() == pytest.approx(
        2 / 2.0001 * math.log(2), rel=1e-5
    )


def test_suppression_by_hand():
    cas = torch.tensor([[[1.0, 3.0, -1.0]]])
    assert suppressed(cas, torch.zeros(1, 1)).tolist() == [[[-1.0, -1.0, -1.0]]]
    assert suppressed(cas, torch.ones(1, 1)).tolist() == [[[1.0, 3.0, -1.0]]]
    assert suppressed(cas, torch.full((1, 1), 0.5)).tolist() == [[[0.0, 1.0, -1.0]]]


def _pair(second_at_end: bool):
    """Two videos of 2 points, features e1 then e2; one class, active at point 0 in the first
    video and at point 0 or 1 in the second."""
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]] * 2)
    cas = torch.tensor(
        [[[50.0], [-50.0]], [[-50.0], [50.0]] if second_at_end else [[50.0], [-50.0]]]
    )
    return feats, cas, torch.ones(2, 2, dtype=torch.bool), torch.ones(2, 1)


def test_coactivity_by_hand():
    # same place: high features equal (d 0), other's low feature orthogonal (d 1): no loss
    feats, cas, masks, labels = _pair(second_at_end=False)
    assert coactivity_loss(feats, cas, masks, labels, [(0, 1)]).item() == pytest.approx(0.0)
    # different places: d(H1, H2) = 1 and d(H, other L) = 0, each direction 1.5
    feats, cas, masks, labels = _pair(second_at_end=True)
    assert coactivity_loss(feats, cas, masks, labels, [(0, 1)]).item() == pytest.approx(1.5)
    # no shared class: zero, not NaN
    none = coactivity_loss(feats, cas, masks, torch.tensor([[1.0], [0.0]]), [(0, 1)])
    assert none.item() == 0.0


def _outputs(seed: int = 0, length: int = 12, valid: tuple[int, int] = (12, 8)):
    gen = torch.Generator().manual_seed(seed)
    masks = torch.arange(length)[None] < torch.tensor(valid)[:, None]
    att_rgb = torch.rand(2, length, generator=gen, requires_grad=True)
    att_flow = torch.rand(2, length, generator=gen, requires_grad=True)
    return CO2NetOutput(
        cas=torch.randn(2, length, 4, generator=gen, requires_grad=True),
        attention=(att_rgb + att_flow) / 2,
        attention_rgb=att_rgb,
        attention_flow=att_flow,
        features=torch.randn(2, length, 5, generator=gen),
        masks=masks,
    )


def test_total_is_the_weighted_sum_and_padding_is_ignored():
    labels = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    config = CO2NetConfig()
    out = _outputs()
    res = CO2NetLoss(config)(out, labels, [(0, 1)])
    weighted = [0.8 * res["sparsity"], 0.8 * res["guide"]]
    total = res["mil"] + res["mil_suppressed"] + res["coactivity"] + res["mutual"] + sum(weighted)
    assert res["loss"].item() == pytest.approx(total.item())
    assert all(torch.isfinite(v) for v in res.values())
    # anything in the padding of video 1 changes nothing
    junk = _outputs()
    for key in ("cas", "attention", "attention_rgb", "attention_flow", "features"):
        value = getattr(junk, key).detach().clone()
        value[1, 8:] = 7.0
        setattr(junk, key, value)
    again = CO2NetLoss(config)(junk, labels, [(0, 1)])
    for key, value in res.items():
        assert again[key].item() == pytest.approx(value.item(), rel=1e-6), key


def test_mutual_learning_pulls_each_attention_towards_the_other_detached():
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    config = CO2NetConfig(coactivity_weight=0, sparsity_weight=0, guide_weight=0)
    out = _outputs()
    res = CO2NetLoss(config)(out, labels)
    res["mutual"].backward()
    real = out.masks
    # d/dA_rgb of 0.5 * mean((A_rgb - sg A_flow)^2) = (A_rgb - A_flow) / n on real points
    n = int(real.sum())
    diff = (out.attention_rgb - out.attention_flow).detach()
    assert torch.allclose(out.attention_rgb.grad[real], diff[real] / n, atol=1e-6)
    assert torch.allclose(out.attention_flow.grad[real], -diff[real] / n, atol=1e-6)
    assert out.attention_rgb.grad[~real].abs().sum() == 0


def test_labels_must_be_video_level():
    with pytest.raises(ValueError, match="multi-hot video"):
        CO2NetLoss(CO2NetConfig())(_outputs(), torch.ones(2, 5))

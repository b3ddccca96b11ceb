"""CO2-Net's network: shapes, masking, and the cross-modal consensus (each module's gate
depends on the other modality)."""

from __future__ import annotations

import pytest
import torch

from tal.methods.co2net.config import CO2NetConfig
from tal.methods.co2net.network import CO2Net, ConsensusModule, masked_mean

CONFIG = CO2NetConfig(attention_dim=8, fusion_dim=12)


def _inputs(length: int = 20, valid: tuple[int, int] = (20, 13), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 10, length, generator=gen)
    return feats, torch.arange(length)[None] < torch.tensor(valid)[:, None]


def test_shapes_ranges_and_zero_padding():
    model = CO2Net(CONFIG, in_dim=10, num_classes=3).eval()
    feats, masks = _inputs()
    out = model(feats, masks)
    assert out.cas.shape == (2, 20, 4) and out.features.shape == (2, 20, 12)
    for key in ("attention", "attention_rgb", "attention_flow"):
        assert getattr(out, key).shape == (2, 20)
        assert ((getattr(out, key)[masks] > 0) & (getattr(out, key)[masks] < 1)).all()
        assert getattr(out, key)[~masks].abs().sum() == 0
    assert out.cas[1, 13:].abs().sum() == 0 and out.features[1, 13:].abs().sum() == 0
    torch.testing.assert_close(out.attention, (out.attention_rgb + out.attention_flow) / 2)


def test_padding_content_does_not_change_real_outputs():
    model = CO2Net(CONFIG, in_dim=10, num_classes=3).eval()
    feats, masks = _inputs()
    junk = torch.where(masks[:, None, :], feats, torch.full_like(feats, 1e3))
    a, b = model(feats, masks), model(junk, masks)
    for key in ("cas", "attention", "features"):
        torch.testing.assert_close(getattr(a, key)[masks], getattr(b, key)[masks])


def test_global_context_is_the_mean_of_real_points():
    x = torch.tensor([[[1.0, 3.0, 100.0]]])
    assert masked_mean(x, torch.tensor([[True, True, False]])).item() == 2.0


def test_each_gate_reads_the_other_modality():
    torch.manual_seed(0)
    module = ConsensusModule(dim=4, attention_dim=4, dropout=0.0).eval()
    main = torch.randn(1, 4, 6)
    mask = torch.ones(1, 6, dtype=torch.bool)
    _, gated = module(main, torch.randn(1, 4, 6), mask)
    _, other = module(main, torch.randn(1, 4, 6), mask)
    assert not torch.allclose(gated, other)  # same main modality, other auxiliary: new gate
    # the gate is a sigmoid in (0, 1) times the main features
    ratio = gated / main
    assert ((ratio > 0) & (ratio < 1)).all()


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="even in_dim"):
        CO2Net(CONFIG, in_dim=9, num_classes=3)
    model = CO2Net(CONFIG, in_dim=10, num_classes=3)
    with pytest.raises(ValueError, match="feats"):
        model(torch.zeros(2, 8, 5), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="real"):
        model(torch.zeros(1, 10, 5), torch.zeros(1, 5, dtype=torch.bool))

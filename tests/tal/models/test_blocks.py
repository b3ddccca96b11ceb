"""ActionFormer's blocks: the strided conv-attention block, drop-path with its per-channel
scale, the sinusoidal position encoding; each keeps the padding guarantees of
``tal.models.blocks`` (real outputs independent of padding, padded outputs zero)."""

from __future__ import annotations

import math

import pytest
import torch

from tal.models.blocks import (
    AffineDropPath,
    ConvTransformerBlock,
    LocalTransformerBlock,
    MaskedDepthwiseConv,
    drop_path,
    position_encoding,
    sinusoid_encoding,
)


def _seq(batch: int, length: int, dim: int, valid: list[int], seed: int = 0):
    x = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(seed))
    mask = torch.arange(length)[None, :] < torch.tensor(valid)[:, None]
    return x, mask


def _block(stride: int, window: int | None = 3, drop: float = 0.1) -> ConvTransformerBlock:
    torch.manual_seed(0)
    block = ConvTransformerBlock(8, 2, window, stride=stride, drop_path=drop).eval()
    with torch.no_grad():  # residual scales of 1, so that the branches count
        block.path_attn.scale.fill_(1.0)
        block.path_mlp.scale.fill_(1.0)
    return block


def test_depthwise_conv_downsamples_centred_on_even_points():
    conv = MaskedDepthwiseConv(1, stride=2)
    with torch.no_grad():
        conv.conv.weight.copy_(torch.tensor([[[1.0, 10.0, 100.0]]]))
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 99.0]])[:, :, None]
    mask = torch.tensor([[True, True, True, True, True, False]])
    out, out_mask = conv(x, mask)
    # output j = x[2j-1] + 10 x[2j] + 100 x[2j+1]; zeros outside and at the padded x[5]
    assert out[0, :, 0].tolist() == [10 + 200, 2 + 30 + 400, 4 + 50 + 0]
    assert out_mask.tolist() == [[True, True, True]]
    out, out_mask = conv(x, torch.tensor([[True, True, True, False, False, False]]))
    assert out[0, :, 0].tolist() == [210, 2 + 30, 0] and out_mask.tolist() == [[1, 1, 0]]


@pytest.mark.parametrize("window", [3, None])
def test_strided_block_halves_length_and_mask_and_zeroes_padding(window):
    block = _block(2, window)
    x, mask = _seq(2, 16, 8, [16, 7])
    out, out_mask = block(x, mask)
    assert out.shape == (2, 8, 8)
    # point j of the output sits at input 2j: real iff 2j < 7
    assert out_mask.sum(1).tolist() == [8, 4]
    assert torch.all(out[1, 4:] == 0)


@pytest.mark.parametrize("stride", [1, 2])
def test_blocks_ignore_what_padding_holds_and_how_much_there_is(stride):
    block = _block(stride)
    x, mask = _seq(1, 16, 8, [10])
    junk = torch.where(mask[:, :, None], x, 1e3 * torch.randn(x.shape))
    out, out_mask = block(x, mask)
    dirty, _ = block(junk, mask)
    torch.testing.assert_close(dirty[out_mask], out[out_mask], atol=1e-5, rtol=0)
    alone, _ = block(x[:, :10], mask[:, :10])
    n = alone.shape[1]
    torch.testing.assert_close(out[:, :n], alone, atol=1e-5, rtol=0)


def test_window_limits_what_a_strided_block_sees():
    """Window 3 at stride 2: output j reads downsampled points j-1..j+1, each a conv of input
    points 2k-1..2k+1, plus the max-pool of 2j-1..2j+1: inputs 2j-3..2j+3 and no further."""
    block = _block(2, window=3)
    x, mask = _seq(1, 16, 8, [16])
    moved = x.clone()
    # not the same shift on every channel: LayerNorm removes that, leaving the attention only
    # a rounding difference (0 or not depending on the CPU's kernels)
    moved[0, 15] += torch.linspace(-1.0, 1.0, 8)
    a, _ = block(x, mask)
    b, _ = block(moved, mask)
    changed = [not torch.equal(a[0, j], b[0, j]) for j in range(8)]
    assert changed == [False] * 6 + [True, True]  # 2j + 3 >= 15 iff j >= 6


def test_drop_path_is_identity_in_eval_and_per_sample_in_train():
    x = torch.randn(64, 5, 4, generator=torch.Generator().manual_seed(0))
    assert drop_path(x, 0.3, training=False) is x
    assert drop_path(x, 0.0, training=True) is x
    torch.manual_seed(1)
    out = drop_path(x, 0.25, training=True)
    kept = [bool(torch.allclose(out[i], x[i] / 0.75)) for i in range(64)]
    dropped = [bool(torch.all(out[i] == 0)) for i in range(64)]
    assert all(k != d for k, d in zip(kept, dropped, strict=True))  # whole samples, each way
    assert 0 < sum(dropped) < 64


def test_affine_drop_path_scales_per_channel():
    layer = AffineDropPath(4, drop_prob=0.5)
    assert torch.equal(layer.scale.data, torch.full((4,), 1e-4))  # ActionFormer's LayerScale init
    with torch.no_grad():
        layer.scale.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.ones(3, 2, 4)
    assert layer.eval()(x)[0, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    torch.manual_seed(0)
    train = layer.train()(x)
    for sample in train:  # dropped, or scaled and divided by the keep probability
        assert sample[0].tolist() in ([0.0] * 4, [2.0, 4.0, 6.0, 8.0])
    with pytest.raises(ValueError, match="drop_prob"):
        AffineDropPath(4, drop_prob=1.0)


def test_drop_path_zero_adds_no_scale_as_the_official_block():
    assert not any("path" in n for n, _ in ConvTransformerBlock(8, 2, 3).named_parameters())
    assert not any("path" in n for n, _ in LocalTransformerBlock(8, 2, 3).named_parameters())
    names = [n for n, _ in ConvTransformerBlock(8, 2, 3, drop_path=0.1).named_parameters()]
    assert "path_attn.scale" in names and "path_mlp.scale" in names


def test_sinusoid_table_by_hand():
    table = sinusoid_encoding(3, 4)
    # channel pairs (0, 1) at frequency 1, (2, 3) at 1 / 10000**(2/4) = 1 / 100
    for p in range(3):
        expected = [math.sin(p), math.cos(p), math.sin(p / 100), math.cos(p / 100)]
        torch.testing.assert_close(table[p], torch.tensor(expected), atol=1e-7, rtol=0)


def test_position_encoding_slices_short_and_interpolates_long_sequences():
    table = torch.tensor([[0.0], [2.0]])
    assert position_encoding(table, 1).tolist() == [[0.0]]
    assert position_encoding(table, 2).tolist() == [[0.0], [2.0]]
    # linear, align_corners=False: output i samples (i + 0.5) * 2 / 4 - 0.5, clamped to the ends
    assert position_encoding(table, 4)[:, 0].tolist() == [0.0, 0.5, 1.5, 2.0]

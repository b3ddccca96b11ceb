"""The one-stage localizer (ActionFormer's, and I2Net's with its two attentions) and its
blocks: shapes, masks, locality, the attentions, gradients; ActionFormer's architecture
(in-block downsampling, stem, neck, position encoding, per-level windows) and our earlier one
(``pool_then_block``)."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from tal.methods import build_method
from tal.methods.actionformer import ActionFormerConfig, LocalizerConfig
from tal.methods.i2net import I2NetConfig, I2NetLocalizer
from tal.models.blocks import (
    AffineDropPath,
    ConvTransformerBlock,
    CrossAttentionBlock,
    LocalTransformerBlock,
    attention_mask,
    masked_max_pool,
)
from tal.models.localizer import Localizer, LocalizerOutput, PyramidSettings

IN_DIM, NUM_CLASSES = 6, 3
SWITCHES = [(intra, inter) for intra in (False, True) for inter in (False, True)]
# our earlier network, kept as options (ActionFormer's is the default)
OLD = {"downsample": "pool_then_block", "stem_blocks": 1, "drop_path": 0.0, "neck_norm": False}
# the padding checks: every switch with ActionFormer's default, the two extremes with the
# earlier network and with the absolute position encoding
PADDING_CASES = [(intra, inter, {}) for intra, inter in SWITCHES] + [
    (intra, inter, arch)
    for intra, inter in [(False, False), (True, True)]
    for arch in (OLD, {"abs_pe": True})
]


def config(intra_attention: bool = True, inter_attention: bool = True, **kw) -> LocalizerConfig:
    """I2Net's section with these switches; ActionFormer's when both are off."""
    base = {"embed_dim": 16, "num_heads": 2, "num_levels": 3, "attention_window": 3, **kw}
    if not (intra_attention or inter_attention):
        return ActionFormerConfig(**base)
    return I2NetConfig(intra_attention=intra_attention, inter_attention=inter_attention, **base)


def make(seed: int = 0, **kw) -> Localizer:
    """The network in eval mode; drop-path's residual scales (init 1e-4) are set to 1 so that
    the attention and MLP branches weigh in the checks below."""
    torch.manual_seed(seed)
    model = build_method(config(**kw)).build_network(IN_DIM, NUM_CLASSES).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, AffineDropPath):
                module.scale.fill_(1.0)
    return model


def call(model: Localizer, *args: torch.Tensor | None) -> LocalizerOutput:
    """The model on a video and, for I2Net's network, a partner (ActionFormer's takes none)."""
    return model(*args) if isinstance(model, I2NetLocalizer) else model(*args[:2])


def inputs(batch: int, length: int, valid: list[int], seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, IN_DIM, length, generator=gen)
    masks = torch.arange(length)[None, :] < torch.tensor(valid)[:, None]
    return feats, masks


def with_garbage(feats: torch.Tensor, masks: torch.Tensor, fill: float | None) -> torch.Tensor:
    """The same features with the padded part replaced by ``fill`` (None: large noise)."""
    noise = 1e3 * torch.randn(feats.shape, generator=torch.Generator().manual_seed(9))
    junk = noise if fill is None else torch.full_like(feats, fill)
    return torch.where(masks[:, None, :], feats, junk)


def assert_same_on_valid(a: LocalizerOutput, b: LocalizerOutput, atol: float = 1e-6) -> None:
    for level, mask in enumerate(a.masks):
        assert torch.equal(mask, b.masks[level])
        for key in ("cls_logits", "offsets"):
            x, y = getattr(a, key)[level][mask], getattr(b, key)[level][mask]
            torch.testing.assert_close(x, y, atol=atol, rtol=0)


# --- blocks -------------------------------------------------------------------------------


def test_masked_max_pool_centres_on_even_points_and_ignores_padding():
    x = torch.tensor([[-1.0, -5.0, -2.0, 100.0, 7.0, 9.0]])[:, :, None]
    mask = torch.tensor([[True, True, True, False, False, False]])
    pooled, down = masked_max_pool(x, mask)
    # point 0 = max(x0, x1); point 1 = max(x1, x2, x3) but x3 is padding; point 2 is padding
    assert pooled[0, :, 0].tolist() == [-1.0, -2.0, 0.0]
    assert down.tolist() == [[True, True, False]]


def test_attention_mask_band_key_padding_and_empty_rows():
    mask = torch.tensor([[True, True, True, False]])
    allowed = attention_mask(mask, mask, window=3)[0, 0].int().tolist()
    assert allowed == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0]]
    # window 1: padded query 3 has no real key left -> it gets every key (finite softmax)
    allowed = attention_mask(mask, mask, window=1)[0, 0].int().tolist()
    assert allowed == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 1, 1]]
    # cross-attention: every query sees all real keys of another length
    ctx = torch.tensor([[True, True, False]])
    assert attention_mask(mask, ctx).shape == (1, 1, 4, 3)
    assert attention_mask(mask, ctx)[0, 0, :3].int().tolist() == [[1, 1, 0]] * 3


def test_cross_attention_sees_whole_context_and_zeroes_padded_queries():
    torch.manual_seed(0)
    block = CrossAttentionBlock(8, 2).eval()
    q, ctx = torch.randn(1, 4, 8), torch.randn(1, 10, 8)
    q_mask = torch.tensor([[True, True, True, False]])
    ctx_mask = torch.ones(1, 10, dtype=torch.bool)
    out = block(q, q_mask, ctx, ctx_mask)
    assert torch.all(out[0, 3] == 0)
    far = ctx.clone()
    far[0, 9] += torch.randn(8)  # the last context point is far from every query, yet it is seen
    assert not torch.allclose(block(q, q_mask, far, ctx_mask)[0, 0], out[0, 0])
    ctx_mask[0, 9] = False  # ...unless it is padding
    base = block(q, q_mask, ctx, ctx_mask)
    torch.testing.assert_close(block(q, q_mask, far, ctx_mask), base, atol=0, rtol=0)


# --- config -------------------------------------------------------------------------------


def test_config_window_and_heads_are_validated():
    assert ActionFormerConfig().attention_window == 9
    with pytest.raises(ValidationError, match="odd"):
        ActionFormerConfig(attention_window=4)
    with pytest.raises(ValidationError, match="divisible by num_heads"):
        I2NetConfig(embed_dim=18, num_heads=4)
    assert build_method(config(num_levels=4)).divisible_by == 8 == make(num_levels=4).divisible_by
    assert build_method(config(num_levels=1, max_seq_len=16)).divisible_by == 1


# --- localizer ----------------------------------------------------------------------------


@pytest.mark.parametrize(("intra", "inter"), SWITCHES)
def test_output_shapes_strides_and_masks(intra, inter):
    model = make(intra_attention=intra, inter_attention=inter, num_levels=4)
    feats, masks = inputs(2, 32, [32, 13])
    out = model(feats, masks)
    assert out.strides == [1, 2, 4, 8]
    assert out.features.shape == (2, 32, 16)
    for level, size in enumerate([32, 16, 8, 4]):
        assert out.cls_logits[level].shape == (2, size, NUM_CLASSES)
        assert out.offsets[level].shape == (2, size, 2)
        assert out.masks[level].dtype == torch.bool
        # point j is real iff its step j * 2**l < 13: ceil(13 / 2**l) real points
        assert out.masks[level].sum(1).tolist() == [size, math.ceil(13 / 2**level)]
        pad = ~out.masks[level]
        assert torch.all(out.cls_logits[level][pad] == 0)
        assert torch.all(out.offsets[level][pad] == 0)
        assert torch.all(out.offsets[level] >= 0)
        assert torch.isfinite(out.cls_logits[level]).all()


def test_classification_prior_and_nonnegative_offsets():
    model = make(num_levels=3)
    bias = model.cls_head.out.conv.bias
    torch.testing.assert_close(torch.sigmoid(bias), torch.full_like(bias, 0.01))
    assert model.reg_head.scales.tolist() == [1.0, 1.0, 1.0]
    out = model(*inputs(2, 32, [32, 20]))
    offsets = torch.cat([o.flatten() for o in out.offsets])
    assert torch.all(offsets >= 0) and torch.any(offsets > 0)


@pytest.mark.parametrize(("intra", "inter", "arch"), PADDING_CASES)
@pytest.mark.parametrize("fill", [0.0, None])
def test_padding_content_does_not_change_valid_outputs(intra, inter, arch, fill):
    model = make(intra_attention=intra, inter_attention=inter, **arch)
    feats, masks = inputs(2, 32, [32, 11])
    p_feats, p_masks = inputs(2, 16, [7, 16], seed=2)
    clean = call(
        model, with_garbage(feats, masks, 0.0), masks, with_garbage(p_feats, p_masks, 0.0), p_masks
    )
    dirty = call(
        model,
        with_garbage(feats, masks, fill),
        masks,
        with_garbage(p_feats, p_masks, fill),
        p_masks,
    )
    assert_same_on_valid(clean, dirty)
    if inter:
        assert_same_on_valid(clean.partner, dirty.partner)
    dirty_nan = model(with_garbage(feats, masks, float("nan")), masks)
    assert_same_on_valid(model(feats, masks), dirty_nan)


@pytest.mark.parametrize(("intra", "inter", "arch"), PADDING_CASES)
def test_amount_of_padding_does_not_change_valid_outputs(intra, inter, arch):
    """A video alone (T=16) and padded to 32 in a batch give the same outputs on its points."""
    model = make(intra_attention=intra, inter_attention=inter, **arch)
    feats, masks = inputs(1, 32, [16])
    alone = model(feats[:, :, :16], masks[:, :16])
    padded = model(feats, masks)
    for level in range(3):
        n = 16 // 2**level
        for key in ("cls_logits", "offsets"):
            x, y = getattr(padded, key)[level][:, :n], getattr(alone, key)[level]
            torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def _perturb_far(model: Localizer) -> tuple[LocalizerOutput, LocalizerOutput]:
    feats, masks = inputs(1, 32, [32])
    far = feats.clone()
    far[0, :, 31] += torch.randn(IN_DIM, generator=torch.Generator().manual_seed(4))
    return model(feats, masks), model(far, masks)


@pytest.mark.parametrize(
    ("arch", "bounds"),
    [
        # window 3, ActionFormer: level 0 sees +-9 steps (2 embed convs, 2 stem blocks of
        # +-2: a depthwise conv and one attention point, 3 head convs); level 1 +-15 (level 0
        # without heads +-6, the strided block +-3, 3 head convs at stride 2)
        ({}, [(0, 21), (1, 7)]),
        # our earlier network: 2 embed convs, 1 attention point, 3 head convs: +-6 steps at
        # level 0; level 1 +-12 (pool +-1, attention +-2, head convs +-6)
        (OLD, [(0, 24), (1, 9)]),
    ],
    ids=["in_block", "pool_then_block"],
)
def test_self_attention_is_local_without_intra(arch, bounds):
    # a change at step 31 cannot reach points whose receptive field ends before it
    base, moved = _perturb_far(make(intra_attention=False, inter_attention=False, **arch))
    for level, last_unseen in bounds:
        for key in ("cls_logits", "offsets"):
            a, b = getattr(base, key)[level][0], getattr(moved, key)[level][0]
            assert torch.equal(a[: last_unseen + 1], b[: last_unseen + 1])
        # the bound is tight: the next point does see the change (the window is really 3)
        seen = last_unseen + 1
        assert not torch.equal(base.cls_logits[level][0, seen], moved.cls_logits[level][0, seen])


def test_a_window_of_minus_one_is_global_attention_on_that_level():
    # window 3 on levels 0 and 1, global on level 2: level 2's first point (step 0) sees step 31
    model = make(intra_attention=False, inter_attention=False, attention_window=[3, 3, -1])
    windows = [block.attn.window for block in [*model.stem, *model.branch]]
    assert windows == [3, 3, 3, None]
    base, moved = _perturb_far(model)
    assert torch.equal(base.cls_logits[0][0, :22], moved.cls_logits[0][0, :22])
    assert not torch.allclose(base.cls_logits[2][0, 0], moved.cls_logits[2][0, 0])
    local = make(intra_attention=False, inter_attention=False, attention_window=3)
    base, moved = _perturb_far(local)
    assert torch.equal(base.cls_logits[2][0, 0], moved.cls_logits[2][0, 0])


def test_default_is_actionformers_arch_and_the_old_one_an_option():
    model = make(intra_attention=False, inter_attention=False, num_levels=4)
    # arch (2, 2, 3): two embedding convs, two stride-1 blocks, one strided block per level
    assert len(model.embed.layers) == 2
    assert [b.stride for b in model.stem] == [1, 1]
    assert [b.stride for b in model.branch] == [2, 2, 2]
    assert all(isinstance(b, ConvTransformerBlock) for b in [*model.stem, *model.branch])
    assert model.neck is not None and len(model.neck) == 4
    assert all(isinstance(b.path_attn, AffineDropPath) for b in model.stem)
    old = make(intra_attention=False, inter_attention=False, num_levels=4, **OLD)
    assert [type(b) for b in [*old.stem, *old.branch]] == [LocalTransformerBlock] * 4
    assert old.neck is None
    assert not any(isinstance(m, AffineDropPath) for m in old.modules())


def test_neck_normalises_every_level_before_the_heads():
    model = make(intra_attention=False, inter_attention=False)
    feats, masks = inputs(2, 32, [32, 13])
    out = model(feats, masks)
    levels, _ = model.pyramid(feats, masks)
    # features are level 0 after its LayerNorm (weight 1, bias 0 at init): zero mean, unit
    # variance over channels on real points, zero on padded ones
    real = out.features[masks]
    torch.testing.assert_close(real.mean(-1), torch.zeros(len(real)), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        real.var(-1, unbiased=False), torch.ones(len(real)), atol=1e-3, rtol=0
    )
    assert torch.all(out.features[~masks] == 0)
    torch.testing.assert_close(out.features[masks], model.neck[0](levels[0])[masks])


def test_absolute_position_encoding_is_added_after_the_embedding_on_real_points():
    feats, masks = inputs(2, 32, [32, 13])
    with_pe = make(intra_attention=False, inter_attention=False, abs_pe=True, max_seq_len=64)
    without = make(intra_attention=False, inter_attention=False)
    diff = with_pe.embed_video(feats, masks) - without.embed_video(feats, masks)
    # ActionFormer: the sinusoid table of max_seq_len rows divided by sqrt(embed_dim)
    table = with_pe.position_table
    assert table is not None and table.shape == (64, 16)
    torch.testing.assert_close(diff[0], table[:32], atol=1e-6, rtol=0)
    torch.testing.assert_close(diff[1, :13], table[:13], atol=1e-6, rtol=0)
    assert torch.all(diff[1, 13:] == 0)
    assert "position_table" not in with_pe.state_dict()  # rebuilt, not saved (as official)
    # longer than the table (inference on a long video): the table interpolated to T
    long_feats, long_masks = inputs(1, 128, [128])
    model = make(intra_attention=False, inter_attention=False, abs_pe=True, max_seq_len=64)
    plain = make(intra_attention=False, inter_attention=False)
    diff = model.embed_video(long_feats, long_masks) - plain.embed_video(long_feats, long_masks)
    stretched = torch.nn.functional.interpolate(table.T[None], size=128, mode="linear")
    torch.testing.assert_close(diff[0], stretched[0].T, atol=1e-6, rtol=0)


class _Recorder(Localizer):
    """Records what ``refine_level`` receives."""

    def build_attention(self, settings: PyramidSettings) -> None:
        self.seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def refine_level(self, level, x, mask, finer, finer_mask):
        self.seen.append((level, x, finer))
        return x


@pytest.mark.parametrize("downsample", ["in_block", "pool_then_block"])
def test_refine_level_sees_the_block_output_or_the_pooled_level(downsample):
    arch = {} if downsample == "in_block" else OLD
    torch.manual_seed(0)
    model = _Recorder(config(False, False, **arch).pyramid(), IN_DIM, NUM_CLASSES).eval()
    feats, masks = inputs(1, 32, [32])
    levels, _ = model.pyramid(feats, masks)
    assert [level for level, _, _ in model.seen] == [1, 2]
    for level, x, finer in model.seen:
        assert torch.equal(finer, levels[level - 1])
        if downsample == "in_block":  # after the level's block: the level's output itself
            assert torch.equal(x, levels[level])
        else:  # between the pool and the block
            assert torch.equal(x, masked_max_pool(finer, masks[:, :: 2 ** (level - 1)])[0])


def test_intra_attention_gives_coarser_levels_a_global_view():
    base, moved = _perturb_far(make(intra_attention=True, inter_attention=False))
    # level 0 has no finer level and stays local (steps <= 21, as without intra)...
    assert torch.equal(base.cls_logits[0][0, :22], moved.cls_logits[0][0, :22])
    # ...while level 1's first point, 31 steps away, now sees the change
    for level in (1, 2):
        assert not torch.allclose(base.cls_logits[level][0, 0], moved.cls_logits[level][0, 0])


def test_inter_attention_uses_the_partner_only_when_on():
    feats, masks = inputs(2, 32, [32, 24])
    pa, pa_masks = inputs(2, 32, [32, 32], seed=2)
    pb, pb_masks = inputs(2, 16, [16, 9], seed=3)
    on = make(inter_attention=True)
    out_a, out_b = on(feats, masks, pa, pa_masks), on(feats, masks, pb, pb_masks)
    assert out_a.partner is not None
    for level in range(3):
        assert not torch.allclose(out_a.cls_logits[level], out_b.cls_logits[level])

    off = make(intra_attention=True, inter_attention=False)
    alone = off(feats, masks)
    assert off(feats, masks, pa, pa_masks).partner is None
    assert_same_on_valid(off(feats, masks, pa, pa_masks), alone, atol=0)
    assert_same_on_valid(off(feats, masks, pb, pb_masks), alone, atol=0)


def test_without_partner_the_video_is_its_own_partner():
    model = make(inter_attention=True)
    feats, masks = inputs(2, 32, [32, 17])
    single = model(feats, masks)
    paired = model(feats, masks, feats, masks)
    assert single.partner is None
    assert_same_on_valid(single, paired, atol=0)
    assert_same_on_valid(single, paired.partner, atol=0)


def test_partner_of_another_length_gets_its_own_outputs():
    model = make(inter_attention=True, num_levels=3)
    feats, masks = inputs(2, 32, [32, 20])
    p_feats, p_masks = inputs(2, 8, [8, 5], seed=2)
    out = model(feats, masks, p_feats, p_masks)
    partner = out.partner
    assert partner.strides == [1, 2, 4]
    for level, size in enumerate([8, 4, 2]):
        assert partner.cls_logits[level].shape == (2, size, NUM_CLASSES)
        assert partner.offsets[level].shape == (2, size, 2)
        assert partner.masks[level].sum(1).tolist() == [size, math.ceil(5 / 2**level)]
        assert out.cls_logits[level].shape == (2, 32 // 2**level, NUM_CLASSES)


def test_inter_attention_is_one_shared_module_per_level():
    model = make(intra_attention=True, inter_attention=True, num_levels=4)
    assert len(model.inter) == 4 and len(model.intra) == 3
    blocks = [m for m in model.modules() if isinstance(m, CrossAttentionBlock)]
    assert len(blocks) == 4 + 3
    assert make(intra_attention=True, inter_attention=False).inter is None
    assert not hasattr(make(intra_attention=False, inter_attention=False), "inter")
    # the same weights serve both directions: swapping the videos swaps the outputs
    a, a_masks = inputs(2, 32, [32, 21])
    b, b_masks = inputs(2, 16, [10, 16], seed=2)
    ab, ba = model(a, a_masks, b, b_masks), model(b, b_masks, a, a_masks)
    assert_same_on_valid(ab, ba.partner, atol=0)
    assert_same_on_valid(ab.partner, ba, atol=0)


def test_same_seed_same_model_and_outputs():
    feats, masks = inputs(2, 32, [32, 12])
    one, two = make(seed=5, dropout=0.1), make(seed=5, dropout=0.1)
    for (name, p1), p2 in zip(one.state_dict().items(), two.state_dict().values(), strict=True):
        assert torch.equal(p1, p2), name
    assert not torch.equal(make(seed=6).cls_head.out.conv.weight, one.cls_head.out.conv.weight)
    one.train(), two.train()
    torch.manual_seed(0)
    out1 = one(feats, masks, feats, masks)
    torch.manual_seed(0)
    out2 = two(feats, masks, feats, masks)
    assert_same_on_valid(out1, out2, atol=0)


def test_gradients_reach_every_parameter():
    model = make(intra_attention=True, inter_attention=True).train()
    feats, masks = inputs(2, 32, [32, 19])
    p_feats, p_masks = inputs(2, 16, [16, 11], seed=2)
    out = model(feats, masks, p_feats, p_masks)
    loss = sum((t**2).sum() for o in (out, out.partner) for t in [*o.cls_logits, *o.offsets])
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_bad_inputs_are_rejected():
    model = make(num_levels=3, inter_attention=True)
    feats, masks = inputs(1, 32, [32])
    with pytest.raises(ValueError, match="multiple of"):
        model(feats[:, :, :30], masks[:, :30])
    with pytest.raises(ValueError, match=r"expected \[B, 6, T\]"):
        model(feats[:, :4], masks)
    with pytest.raises(ValueError, match="at least one real"):
        model(feats, torch.zeros_like(masks))
    with pytest.raises(ValueError, match="both partner"):
        model(feats, masks, feats, None)
    with pytest.raises(ValueError, match="partner batch"):
        model(feats, masks, *inputs(2, 32, [32, 32]))

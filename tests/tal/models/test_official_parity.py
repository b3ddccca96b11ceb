"""Our ActionFormer backbone against the official one (happyharrycn/actionformer_release).

The expected outputs in ``data/actionformer_official_backbone.json`` were produced by running
the official ``ConvTransformerBackbone`` + ``FPNIdentity`` outside this repository, on a
copy of its ``libs/modeling``, with the weights of the model built here (``_model``) copied
onto it through this state-dict mapping (official name <- ours, LayerNorm and scale vectors
reshaped to ``[1, C, 1]``, linear weights given a trailing kernel dimension):

- ``embd.i.conv`` <- ``embed.layers.i.conv.conv``; ``embd_norm.i`` <- ``embed.layers.i.norm.norm``
- ``stem.i`` / ``branch.i`` (``TransformerBlock``) <- ``stem.i`` / ``branch.i``:
  ``ln1``/``ln2`` <- ``norm_attn``/``norm_mlp``; ``attn.{query,key,value}_conv`` <-
  ``attn.{q,k,v}_conv``; ``attn.{query,key,value}_norm`` <- ``attn.{q,k,v}_norm``;
  ``attn.{query,key,value}`` <- ``attn.{q,k,v}`` (the official key bias, which we do not
  have, was set to random values: softmax ignores it); ``attn.proj`` <- ``attn.out``;
  ``mlp.0``/``mlp.3`` <- ``mlp.0``/``mlp.3``; ``drop_path_{attn,mlp}.scale`` <-
  ``path_{attn,mlp}.scale``
- neck ``fpn_norms.i`` <- ``neck.i``

The case covers the (2, 2, 2) arch with two local-attention levels (window 5) and a global
one (-1), drop-path's per-channel scales, the neck's LayerNorms and the absolute position
encoding, sliced (T = 8 < max_len = 12) and interpolated (T = 16). The parameter counts
were printed by the official modules built with the settings in each row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tal.models.localizer import Localizer, PyramidSettings

DATA = Path(__file__).parent / "data" / "actionformer_official_backbone.json"
IN_DIM, DIM, HEADS, LEVELS, MAX_LEN, WINDOWS = 5, 8, 2, 3, 12, (5, 5, None)


def _model() -> Localizer:
    """The hand case: every parameter drawn from one seeded generator, in registration order
    (so that the residual scales, LayerNorms and biases all matter)."""
    torch.manual_seed(0)
    settings = PyramidSettings(
        DIM,
        HEADS,
        LEVELS,
        0.0,
        WINDOWS,
        embed_convs=2,
        stem_blocks=2,
        downsample="in_block",
        drop_path=0.1,
        neck_norm=True,
        abs_pe=True,
        max_len=MAX_LEN,
    )
    model = Localizer(settings, IN_DIM, 2).eval()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _, param in model.named_parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=gen))
    return model


@pytest.mark.parametrize("length", [16, 8])
def test_backbone_and_neck_match_the_official_code(length):
    expected = json.loads(DATA.read_text())["cases"][str(length)]
    model = _model()
    feats = torch.randn(1, IN_DIM, length, generator=torch.Generator().manual_seed(length))
    masks = torch.ones(1, length, dtype=torch.bool)
    with torch.no_grad():
        levels, level_masks = model.pyramid(feats, masks)
        assert model.neck is not None
        levels = [model.neck[i](x) for i, x in enumerate(levels)]
    assert [m.shape[1] for m in level_masks] == [length, length // 2, length // 4]
    for level, (ours, theirs) in enumerate(zip(levels, expected, strict=True)):
        theirs = torch.tensor(theirs)
        assert ours[0].shape == theirs.shape, level
        torch.testing.assert_close(ours[0], theirs, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    ("embed_dim", "num_levels", "windows", "max_len", "official"),
    [
        (128, 5, 9, 32, 2040064),  # our demo size
        (512, 6, 19, 2304, 26067968),  # configs/thumos_i3d.yaml
        (256, 6, (7, 7, 7, 7, 7, None), 192, 7332352),  # configs/anet_i3d.yaml
    ],
)
def test_parameter_count_matches_the_official_backbone(
    embed_dim, num_levels, windows, max_len, official
):
    """Backbone + neck, 2048 input channels, 4 heads: the official count less one key bias
    (``embed_dim`` values) per transformer block (2 stem + ``num_levels - 1`` branch)."""
    settings = PyramidSettings(embed_dim, 4, num_levels, 0.0, windows, abs_pe=True, max_len=max_len)
    model = Localizer(settings, 2048, 20)
    parts = ("embed", "stem", "branch", "neck")
    ours = sum(p.numel() for n, p in model.named_parameters() if n.split(".")[0] in parts)
    assert ours == official - (2 + num_levels - 1) * embed_dim

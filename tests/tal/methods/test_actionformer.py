"""ActionFormer's ``model:`` keys: the official architecture by default, the earlier one by
options, per-level windows, and one-line errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tal.config import load_config
from tal.methods import build_method
from tal.methods.actionformer import ActionFormerConfig
from tal.models.blocks import ConvTransformerBlock, LocalTransformerBlock

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_defaults_are_the_official_architecture():
    c = ActionFormerConfig()
    # libs/core/config.py: backbone_arch (2, 2, 5), droppath 0.1, fpn_type identity with
    # fpn_with_ln, use_abs_pe False; the strided conv-attention blocks
    assert c.backbone_arch == (2, 2, 5)
    assert (c.downsample, c.drop_path, c.neck_norm, c.abs_pe) == ("in_block", 0.1, True, False)
    s = c.pyramid()
    assert (s.embed_convs, s.stem_blocks, s.num_levels) == (2, 2, 6)
    assert s.max_len == c.max_seq_len and s.windows() == (9,) * 6


def test_windows_per_level_and_global():
    c = ActionFormerConfig(num_levels=6, max_seq_len=192, attention_window=[7, 7, 7, 7, 7, -1])
    assert c.pyramid().windows() == (7, 7, 7, 7, 7, None)
    assert ActionFormerConfig(attention_window=-1).pyramid().windows() == (None,) * 6
    net = build_method(ActionFormerConfig(num_levels=3, embed_dim=16, attention_window=[3, 5, -1]))
    model = net.build_network(4, 2)
    assert [b.attn.window for b in [*model.stem, *model.branch]] == [3, 3, 5, None]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"attention_window": 4}, r"attention_window\n.*window 4: must be odd"),
        ({"attention_window": [3, 0, 3, 3, 3, 3]}, "window 0: must be odd"),
        ({"attention_window": [3, 3]}, "attention_window has 2 values but num_levels is 6"),
        ({"downsample": "pool"}, "downsample"),
        ({"drop_path": 1.0}, "drop_path"),
        ({"embed_convs": 0}, "embed_convs"),
        ({"stem_blocks": -1}, "stem_blocks"),
    ],
)
def test_bad_values_name_the_key(keys, message):
    with pytest.raises(ValidationError, match=message):
        ActionFormerConfig(**keys)


def test_old_network_is_reachable_by_options():
    old = ActionFormerConfig(
        num_levels=3,
        embed_dim=16,
        downsample="pool_then_block",
        stem_blocks=1,
        drop_path=0.0,
        neck_norm=False,
    )
    model = build_method(old).build_network(4, 2)
    assert [type(b) for b in [*model.stem, *model.branch]] == [LocalTransformerBlock] * 3
    new = build_method(ActionFormerConfig(num_levels=3, embed_dim=16)).build_network(4, 2)
    assert [type(b) for b in [*new.stem, *new.branch]] == [ConvTransformerBlock] * 4


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("demo*.yaml")))
def test_demo_configs_still_validate(name, tmp_path):
    config = load_config(CONFIGS / name)
    model = config.model
    if hasattr(model, "pyramid"):
        assert model.pyramid().num_levels == model.num_levels
        yaml.safe_dump(config.to_yaml_dict())  # the resolved config still dumps

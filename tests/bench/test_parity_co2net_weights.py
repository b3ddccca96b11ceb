"""bench/parity_co2net_weights.py: the official CO2-Net state dict maps onto ours exactly, and
one that does not fit stops with a message naming what is off."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from parity_co2net_step import to_official  # noqa: E402
from parity_co2net_weights import official_into_ours  # noqa: E402

from tal.methods.co2net.config import CO2NetConfig  # noqa: E402
from tal.methods.co2net.network import CO2Net  # noqa: E402


def test_official_state_dict_maps_onto_ours_and_misfits_are_named() -> None:
    ours = CO2Net(CO2NetConfig(attention_dim=4), in_dim=8, num_classes=3).state_dict()
    official = {to_official(k): v for k, v in ours.items()}
    official["feat_encoder.0.weight"] = ours["fusion.conv.weight"]  # built, never used: skipped
    mapped = official_into_ours(official, ours)
    assert set(mapped) == set(ours) and all(mapped[k] is ours[k] for k in ours)
    del official["vAttn.attention.5.bias"]
    with pytest.raises(SystemExit, match=r"missing \['rgb.att3.conv.bias'\]"):
        official_into_ours(official, ours)
    official["vAttn.attention.5.bias"] = ours["fusion.conv.bias"]  # another shape
    with pytest.raises(SystemExit, match="rgb.att3.conv.bias"):
        official_into_ours(official, ours)

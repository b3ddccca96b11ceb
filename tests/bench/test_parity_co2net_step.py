"""bench/parity_co2net_step.py: our CO2-Net network and loss on the recorded official step.

``data/co2net_official_step.json`` holds what the official code (``harlanhong/MM2021-CO2-Net``,
commit in the file) computed on the bench's seeded case: one batch of 10 videos, dropout off.
Our network and loss on the same weights and batch must give the same loss, outputs and
gradients; no official checkout is needed here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import parity_co2net_step as step  # noqa: E402

RECORD = json.loads((Path(__file__).parent / "data" / "co2net_official_step.json").read_text())


@pytest.fixture(scope="module")
def ours() -> dict:
    torch.manual_seed(0)
    feats, labels = step.case_batch(RECORD["length"])
    return step.summary(step.our_step(step.case_weights(), feats, labels))


def test_loss_equals_the_official_step(ours: dict) -> None:
    # a sum(labels) normaliser without the official + 1e-4 is 5e-5 off: caught here
    assert ours["loss"] == pytest.approx(RECORD["official"]["loss"], rel=5e-6)


def test_outputs_equal_the_official_step(ours: dict) -> None:
    official = RECORD["official"]["output_sums"]
    assert ours["output_sums"].keys() == official.keys()
    for name, value in official.items():
        assert ours["output_sums"][name] == pytest.approx(value, rel=1e-5), name


def test_every_gradient_equals_the_official_step(ours: dict) -> None:
    official = RECORD["official"]["grad_norms"]
    assert sorted(ours["grad_norms"]) == sorted(official)
    assert len(official) == 26  # every parameter but the official unused feat_encoder
    for name, value in official.items():
        assert ours["grad_norms"][name] == pytest.approx(value, rel=1e-5), name


def test_official_names_map_onto_every_parameter_of_ours() -> None:
    ours = set(step._network(step.NUM_CLASSES).state_dict())
    mapped = {step.to_ours(k) for k in step.case_weights()}
    assert mapped == ours
    assert step.to_ours("feat_encoder.0.weight") is None

"""The weights' EMA: with warm-up (ours) a short run forgets the initial weights quickly;
without (ActionFormer's ModelEma) the initial weights keep ``decay**n`` of the average."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tal.engine.ema import ModelEMA


def _run(warmup: bool, steps: int) -> float:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.999, warmup=warmup)
    with torch.no_grad():
        model.weight.fill_(1.0)  # trained weights jump to 1 and stay there
    for _ in range(steps):
        ema.update(model)
    return float(ema.module.weight)


def test_without_warmup_the_initial_weights_keep_decay_to_the_n():
    # ActionFormer's ModelEma: e <- 0.999 e + 0.001 m from the first update
    assert _run(warmup=False, steps=770) == pytest.approx(1 - 0.999**770, rel=1e-4)
    assert _run(warmup=False, steps=770) < 0.54  # 46% of the average is still the initial 0


def test_warmup_forgets_the_initial_weights_in_a_short_run():
    # d_n = min(0.999, (1 + n) / (10 + n)): the product of d_1..d_770 is tiny
    expected = 1.0
    for n in range(1, 771):
        expected *= min(0.999, (1 + n) / (10 + n))
    assert _run(warmup=True, steps=770) == pytest.approx(1 - expected, rel=1e-6)
    assert _run(warmup=True, steps=770) > 0.99

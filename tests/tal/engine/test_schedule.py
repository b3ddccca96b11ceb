"""Learning-rate schedules: ActionFormer's warm-up and cosine, the constant rate, the former
warm-up."""

from __future__ import annotations

import math

import pytest
import torch

from tal.engine.schedule import warmup_cosine, warmup_schedule


def _rates(scheduler: torch.optim.lr_scheduler.LambdaLR, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_actionformer_warmup_then_cosine():
    """ActionFormer's own LinearWarmupCosineAnnealingLR (libs/utils/lr_schedulers.py, run
    outside this repository with lr 1, warmup 4 and max 8 steps, stepped per iteration)
    printed these rates; its eta_min 1e-8 is the only difference (rounded to 0 here)."""
    official = [0.0, 1 / 3, 2 / 3, 1.0, 1.0, 0.8535533920577398, 0.500000005, 0.14644661794226016]
    rates = _rates(warmup_schedule(_optimizer(), 4, 8), 8)
    assert rates == pytest.approx(official, abs=1e-7)
    cosine = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert rates[4:] == pytest.approx(cosine)


def test_constant_schedule_after_warmup():
    rates = _rates(warmup_schedule(_optimizer(0.5), 2, 6, after="constant"), 6)
    assert rates == pytest.approx([0.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    # no warm-up (CO2-Net): the rate from the first step
    assert _rates(warmup_schedule(_optimizer(0.5), 0, 3, after="constant"), 3) == [0.5] * 3


def test_former_warmup_shape_is_kept_as_an_option():
    former = _rates(warmup_schedule(_optimizer(), 4, 8, warmup_shape="from_step_one"), 4)
    assert former == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert _rates(warmup_cosine(_optimizer(), 4, 8), 4) == pytest.approx(former)
    # one warm-up step: ActionFormer's first step has lr 0
    assert _rates(warmup_schedule(_optimizer(), 1, 4), 2) == pytest.approx([0.0, 1.0])


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="total_steps"):
        warmup_schedule(_optimizer(), 1, 0)
    with pytest.raises(ValueError, match="after"):
        warmup_schedule(_optimizer(), 1, 4, after="step")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="warmup_shape"):
        warmup_schedule(_optimizer(), 1, 4, warmup_shape="late")  # type: ignore[arg-type]

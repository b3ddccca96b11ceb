"""Learning-rate schedule: linear warm-up, then cosine decay to zero or a constant rate,
stepped per iteration.

ActionFormer (``LinearWarmupCosineAnnealingLR`` in libs/utils/lr_schedulers.py of
happyharrycn/actionformer_release) starts the warm-up at lr 0 and reaches the full rate at
step ``W - 1`` (``s / (W - 1)``), then decays with a cosine over the remaining steps (to
``eta_min`` 1e-8, which we round to 0). Its ``epochs`` exclude the warm-up (it trains
``epochs + warmup_epochs`` epochs); our ``training.epochs`` is the whole run, so its THUMOS14
recipe (30 + 5) is ``epochs: 35, warmup_epochs: 5`` here. CO2-Net keeps a constant rate
(``constant``, with ``warmup_epochs: 0``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

After = Literal["cosine", "constant"]
WarmupShape = Literal["actionformer", "from_step_one"]


def warmup_factor(step: int, warmup_steps: int, shape: WarmupShape = "actionformer") -> float:
    """The warm-up multiplier at ``step < warmup_steps``: ``s / (W - 1)`` from 0
    (``actionformer``; 0 when W is 1) or ``(s + 1) / W`` (``from_step_one``, the former rule)."""
    if shape == "from_step_one":
        return (step + 1) / warmup_steps
    return step / (warmup_steps - 1) if warmup_steps > 1 else 0.0


def warmup_schedule(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    after: After = "cosine",
    warmup_shape: WarmupShape = "actionformer",
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps`` (``warmup_factor``), then ``after``: ``cosine``
    multiplies by ``0.5 (1 + cos(pi x))`` with x the share of the remaining steps done,
    ``constant`` by 1."""
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(
            f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}"
        )
    if after not in ("cosine", "constant"):
        raise ValueError(f"after must be 'cosine' or 'constant', got {after!r}")
    if warmup_shape not in ("actionformer", "from_step_one"):
        raise ValueError(
            f"warmup_shape must be 'actionformer' or 'from_step_one', got {warmup_shape!r}"
        )
    warmup_steps = min(warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_factor(step, warmup_steps, warmup_shape)
        if after == "constant":
            return 1.0
        rest = max(total_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / rest, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The former schedule: warm-up ``(s + 1) / W``, then cosine decay to zero."""
    return warmup_schedule(optimizer, warmup_steps, total_steps, "cosine", "from_step_one")

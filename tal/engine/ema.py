"""Exponential moving average of a model's weights (evaluated and saved next to the model)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """A frozen copy whose floating-point weights follow ``d * ema + (1 - d) * model``.

    ``d = min(decay, (1 + n) / (10 + n))`` after n updates: the average warms up, so that a
    short run is not dominated by the initial weights (with 0.999 and a few hundred steps it
    would be); ``warmup=False`` uses ``decay`` from the first update, as ActionFormer's
    ``ModelEma``. Buffers that are not floating point (counters) are copied as they are.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        self.updates += 1
        d = self.decay
        if self.warmup:
            d = min(d, (1 + self.updates) / (10 + self.updates))
        for name, value in self.module.state_dict().items():
            source = current[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source.to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(source)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = updates

"""The positives' weights over a short training: the release's class-level weighting (our
default) keeps them away from zero; our earlier instance-level product collapses them."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from tal.config import TrainingConfig
from tal.methods import build_method
from tal.methods.asl import ASLConfig

SHAPE = {"embed_dim": 16, "num_heads": 2, "num_levels": 3, "attention_window": 3}
STEPS, LR = 60, 1e-3


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(before)


def _mean_positive_weights(config: ASLConfig) -> list[float]:
    """``cls_pos_weight`` at each of ``STEPS`` AdamW steps on one tiny synthetic batch."""
    torch.manual_seed(0)
    method = build_method(config)
    network = method.build_network(in_dim=6, num_classes=3)
    loss = method.build_loss(3, TrainingConfig())
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 6, 32, generator=gen)
    feats[0, :, 8:20] += 1.0
    feats[1, :, 4:24] -= 1.0
    masks = torch.ones(2, 32, dtype=torch.bool)
    segments = [torch.tensor([[8.0, 20.0]]), torch.tensor([[4.0, 24.0]])]
    labels = [torch.tensor([0]), torch.tensor([2])]
    history = []
    for _ in range(STEPS):
        terms = loss(network(feats, masks), segments, labels)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        history.append(terms["cls_pos_weight"].item())
    return history


@pytest.mark.slow
def test_positive_weights_stay_away_from_collapse(one_thread):
    # The floor: the default weights are the class-level Gaussians alone, at positions
    # |x| <= 1/2, started at mean 0 (classification) and width 1. An AdamW step moves a
    # parameter by at most (1 - beta1) / sqrt(1 - beta2) * lr ~ 3.2 lr (no weight decay here,
    # none on the Gaussians in the trainer), and softplus' slope is below 1, so after STEPS
    # steps the mean is within d = 3.2 * STEPS * LR of 0 and the width above 1 - d; every
    # positive's classification weight, hence their mean, stays above
    # exp(-(1/2 + d)^2 / (2 (1 - d)^2)).
    d = (1 - 0.9) / math.sqrt(1 - 0.999) * STEPS * LR
    floor = math.exp(-((0.5 + d) ** 2) / (2 * (1 - d) ** 2))
    assert floor > 0.65
    new = _mean_positive_weights(ASLConfig(contrastive_weight=0.0, **SHAPE))
    assert min(new) >= floor
    # our earlier rule: the class-level weight times the instance-level prediction, trained
    # towards the classifier's probability of the true class (about its prior, 0.01, early on)
    old = _mean_positive_weights(
        ASLConfig(
            instance_branch=True,
            combine="prod",
            position_by_stride=False,
            contrastive_weight=0.0,
            **SHAPE,
        )
    )
    assert min(old) < 0.25 < floor

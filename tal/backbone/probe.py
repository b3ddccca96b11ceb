"""Linear probe: how well a frozen backbone's clip features separate the classes.

The standard way to compare feature extractors without training a localizer: pooled I3D
features of trimmed clips, standardised with the training clips' statistics, then a
multinomial logistic regression (L2, full-batch L-BFGS, deterministic) fitted on training
clips and scored on held-out clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from features.extractor import to_network_input
from features.i3d import InceptionI3d


@torch.inference_mode()
def clip_features(
    model: InceptionI3d, clips: np.ndarray, batch_size: int = 8, device: str = "cpu"
) -> np.ndarray:
    """Pooled features ``[N, 1024]`` of clips ``[N, T, S, S, C]`` (uint8 RGB or float flow)."""
    model = model.to(device).eval()
    out = []
    for i in range(0, len(clips), batch_size):
        batch = clips[i : i + batch_size]
        if batch.dtype == np.float16:
            batch = batch.astype(np.float32)
        out.append(model.features(to_network_input(batch).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1024), np.float32)


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float  # on the held-out clips
    train_accuracy: float
    train_clips: int
    test_clips: int
    l2: float  # the regularisation used (chosen by cross-validation unless given)


L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int):
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def _accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    return float(((x @ w + b).argmax(1) == y).double().mean())


def choose_l2(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    groups: np.ndarray | None = None,
    folds: int = 4,
    grid: tuple[float, ...] = L2_GRID,
    max_iter: int = 200,
) -> float:
    """The L2 weight of best mean accuracy over ``folds`` folds; clips of one group (video)
    stay in one fold, so that near-duplicate clips do not leak across."""
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    names = np.unique(groups)  # sorted: deterministic folds
    fold_of = {g: i % folds for i, g in enumerate(names)}
    fold = np.array([fold_of[g] for g in groups])
    xt, yt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.long)
    scores = []
    for l2 in grid:
        accs = []
        for k in range(min(folds, len(names))):
            tr, va = torch.as_tensor(fold != k), torch.as_tensor(fold == k)
            xtr, xva = _standardise(xt[tr], xt[va])
            accs.append(_accuracy(xva, yt[va], *_fit(xtr, yt[tr], num_classes, l2, max_iter)))
        scores.append(float(np.mean(accs)))
    return grid[int(np.argmax(scores))]


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    l2: float | None = None,
    groups: np.ndarray | None = None,
    max_iter: int = 200,
) -> ProbeResult:
    """Fit a logistic regression on ``train_x`` and score it on ``test_x``.

    ``l2`` None: chosen by cross-validation on the training clips (``groups``: their videos).
    """
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError(
            f"linear probe needs clips on both sides, got {len(train_x)} training and "
            f"{len(test_x)} held-out"
        )
    if l2 is None:
        l2 = choose_l2(train_x, train_y, num_classes, groups, max_iter=max_iter)
    xtr, xte = _standardise(
        torch.as_tensor(train_x, dtype=torch.float64), torch.as_tensor(test_x, dtype=torch.float64)
    )
    ytr = torch.as_tensor(train_y, dtype=torch.long)
    yte = torch.as_tensor(test_y, dtype=torch.long)
    w, b = _fit(xtr, ytr, num_classes, l2, max_iter)
    return ProbeResult(_accuracy(xte, yte, w, b), _accuracy(xtr, ytr, w, b), len(ytr), len(yte), l2)

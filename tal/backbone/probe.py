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


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> ProbeResult:
    """Fit a logistic regression on ``train_x`` and score it on ``test_x``."""
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError(
            f"linear probe needs clips on both sides, got {len(train_x)} training and "
            f"{len(test_x)} held-out"
        )
    xtr = torch.as_tensor(train_x, dtype=torch.float64)
    xte = torch.as_tensor(test_x, dtype=torch.float64)
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    ytr = torch.as_tensor(train_y, dtype=torch.long)
    yte = torch.as_tensor(test_y, dtype=torch.long)
    w = torch.zeros(xtr.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ w + b, ytr) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        train_acc = float(((xtr @ w + b).argmax(1) == ytr).double().mean())
        test_acc = float(((xte @ w + b).argmax(1) == yte).double().mean())
    return ProbeResult(test_acc, train_acc, len(ytr), len(yte))

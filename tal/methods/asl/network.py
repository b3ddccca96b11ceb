"""Action Sensitivity Learning (ASL, Shao et al., ICCV 2023): how much each frame of an action
counts for the two sub-tasks of a one-stage localizer, classification and boundary regression.

- **Class-level sensitivity** (``ClassSensitivity``): per action class, three learned Gaussians
  over a frame's relative position inside its action, ``x = (centre - t) / length`` in
  ``[-1/2, 1/2]`` (``+1/2`` at the start): one for classification (initialised on the centre),
  one per boundary (initialised on each end). A frame's classification weight is the first;
  its regression weight is the first times the mean of the boundary ones, as in the authors'
  released class-level code (github.com/JonnyS1226/ego4d_asl, ``PtTransformer``). The
  Gaussians are unnormalised (peak 1) and their widths have a floor, so they cannot collapse
  to zero width.
- **Instance-level sensitivity** (``InstanceSensitivity``): a small masked-conv head on every
  pyramid level predicts, per point, a classification and a regression sensitivity in
  ``(0, 1)``; the loss trains them towards the quality the localizer reaches at that point
  (its probability of the true class, the tIoU of its segment), a choice of ours where the
  paper's text was not available (see ``tal/engine/asl_loss.py``).

Both only shape the training losses; inference is the plain localizer's. ``ASLLocalizer`` is
the one-stage localizer carrying both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tal.models.blocks import ConvNormReLU, MaskedConv1d
from tal.models.localizer import Localizer, LocalizerOutput, PyramidSettings


class ClassSensitivity(nn.Module):
    """Learned per-class Gaussians over relative positions; see the module docstring.

    ``forward(x [N], classes [N, C] multi-hot) -> [N, 2]`` (classification, regression)
    weights in ``(0, 1]``; a frame of several classes (tied assignments) gets the mean of
    their Gaussians.
    """

    def __init__(self, num_classes: int, min_sigma: float = 0.05) -> None:
        super().__init__()
        if num_classes < 1 or min_sigma <= 0:
            raise ValueError(
                f"need num_classes >= 1 and min_sigma > 0, got {num_classes}, {min_sigma}"
            )
        self.min_sigma = min_sigma
        # columns: classification (centre), start boundary (x = +1/2), end boundary (x = -1/2)
        self.mu = nn.Parameter(torch.tensor([0.0, 0.5, -0.5]).repeat(num_classes, 1))
        self.log_sigma = nn.Parameter(torch.zeros(num_classes, 3))

    def sigma(self) -> Tensor:
        return self.log_sigma.exp().clamp(min=self.min_sigma)

    def forward(self, x: Tensor, classes: Tensor) -> Tensor:
        if x.dim() != 1 or classes.shape != (x.shape[0], self.mu.shape[0]):
            raise ValueError(
                f"expected x [N] and classes [N, {self.mu.shape[0]}], got {tuple(x.shape)} and "
                f"{tuple(classes.shape)}"
            )
        g = torch.exp(-((x[:, None, None] - self.mu) ** 2) / (2 * self.sigma() ** 2))  # [N, C, 3]
        classes = classes.to(g.dtype)
        g = (classes[:, :, None] * g).sum(1) / classes.sum(1, keepdim=True).clamp(min=1)
        return torch.stack([g[:, 0], g[:, 0] * (g[:, 1] + g[:, 2]) / 2], dim=1)


class InstanceSensitivity(nn.Module):
    """Per-point (classification, regression) sensitivity ``[B, T, 2]`` in ``(0, 1)`` from a
    level's features ``[B, D, T]``; shared by all levels; padded points are zero."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.trunk = ConvNormReLU(dim, dim)
        self.out = MaskedConv1d(dim, 2, 3)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = torch.sigmoid(self.out(self.trunk(x, mask), mask)).transpose(1, 2)
        return out * mask[:, :, None].to(out.dtype)


def relative_position(reg_targets: Tensor) -> Tensor:
    """``x = (centre - t) / length`` of points from their regression targets ``[N, 2]``
    (distances to the start and the end, in any common unit): ``+1/2`` at the start, ``0`` at
    the centre, ``-1/2`` at the end."""
    d_start, d_end = reg_targets[:, 0], reg_targets[:, 1]
    return (d_end - d_start) / (2 * (d_start + d_end).clamp(min=1e-6))


@dataclass
class ASLOutput(LocalizerOutput):
    """The localizer's outputs plus what ASL's loss needs: the class-level Gaussians (the
    module, so that DDP sees its parameters used) and, with the instance branch, the
    per-level sensitivity ``[B, T_l, 2]``."""

    class_sensitivity: ClassSensitivity | None = None
    sensitivity: list[Tensor] | None = None


class ASLLocalizer(Localizer):
    """The one-stage localizer with ASL's class-level Gaussians and, when
    ``instance_branch``, its per-level instance sensitivity head; returns ``ASLOutput``."""

    def __init__(
        self,
        settings: PyramidSettings,
        in_dim: int,
        num_classes: int,
        min_sigma: float,
        instance_branch: bool,
    ) -> None:
        self._min_sigma, self._instance_branch = min_sigma, instance_branch
        super().__init__(settings, in_dim, num_classes)

    def build_extra_heads(self, settings: PyramidSettings) -> None:
        self.class_sensitivity = ClassSensitivity(self.num_classes, self._min_sigma)
        self.sensitivity = (
            InstanceSensitivity(settings.embed_dim) if self._instance_branch else None
        )

    def extra_head(self, x: Tensor, mask: Tensor) -> Tensor | None:
        return self.sensitivity(x, mask) if self.sensitivity is not None else None

    def with_extras(self, out: LocalizerOutput, extras: list[Tensor | None]) -> ASLOutput:
        sensitivity = [s for s in extras if s is not None]
        return ASLOutput(
            out.cls_logits,
            out.offsets,
            out.masks,
            out.strides,
            out.features,
            class_sensitivity=self.class_sensitivity,
            sensitivity=sensitivity if self.sensitivity is not None else None,
        )

"""Action Sensitivity Learning (ASL, Shao et al., ICCV 2023): how much each frame of an action
counts for the two sub-tasks of a one-stage localizer, classification and boundary regression.

- **Class-level sensitivity** (``ClassSensitivity``): per action class, three learned Gaussians
  over a point's position inside its action, one for classification (initialised on the
  centre, mean 0), one per boundary (means +-1/2), all of width 1, as in the authors' released
  code (github.com/JonnyS1226/ego4d_asl, ``libs/modeling/meta_archs.py``, ``PtTransformer``:
  ``mu``/``sigma``, ``mu_reg_left``/``right``). A point's classification weight is the first;
  its regression weight is the first times the mean of the boundary ones, as released. The
  Gaussians are unnormalised (peak 1) and learned only through the weighted losses, as
  released (no other term trains them).
- **Position** (``relative_position``): as released, the offset of the point from the
  action's centre divided by the level's stride times the action's length,
  ``x = (centre - t) / (stride * length)`` (``+1/(2 stride)`` at the start); with
  ``position_by_stride: false``, our earlier reading, by the length alone (``x`` in
  ``[-1/2, 1/2]`` on every level).
- **Widths**: the release learns ``sigma`` itself, unbounded (it can reach 0, and then every
  weight but the one at the mean is 0). Ours is ``sigma = min_sigma + softplus(raw)``, started
  at 1: a floor that keeps a gradient (a clamp has none once reached). The means are free, as
  released. ``ASLLocalizer.no_weight_decay()`` names both parameters so that the trainer can
  exempt them from weight decay (the timm convention), whatever ``training.weight_decay_on``
  says. The release's optimiser decays them (they are neither biases nor weights of its
  listed modules and land in its remainder group, decayed), which pulls the boundary means
  towards the centre and its raw ``sigma`` towards 0: one more push towards narrow
  Gaussians, so we leave it out (on our parametrisation it would pull the widths towards
  ``min_sigma + log 2`` instead, no better reason).
- **Instance-level sensitivity** (``InstanceSensitivity``): not in the authors' released code
  (its forward passes no instance-level output to its losses). Our reading of the paper,
  optional (``instance_branch: true``): a small masked-conv head on every pyramid level
  predicts, per point, a classification and a regression sensitivity in ``(0, 1)``, trained
  towards the quality the localizer reaches at that point (see ``loss``).

Both only shape the training losses; inference is the plain localizer's. ``ASLLocalizer`` is
the one-stage localizer carrying both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tal.models.blocks import ConvNormReLU, MaskedConv1d
from tal.models.localizer import Localizer, LocalizerOutput, PyramidSettings


def _softplus_inverse(y: Tensor) -> Tensor:
    """``raw`` with ``softplus(raw) = y`` (``y > 0``)."""
    return y + torch.log(-torch.expm1(-y))


class ClassSensitivity(nn.Module):
    """Learned per-class Gaussians over relative positions; see the module docstring.

    ``forward(x [N], classes [N, C] multi-hot) -> [N, 2]`` (classification, regression)
    weights in ``(0, 1]``. A point assigned to several classes (a tie between actions of the
    same length) gets the mean of their Gaussians; the release takes the first tied action's
    (our reading: the mean treats the tied actions alike).

    Parameters: ``mu`` ``[C, 3]`` and ``sigma_raw`` ``[C, 3]``, columns classification (centre),
    start boundary (``x = +1/2``), end boundary (``x = -1/2``); ``sigma() = min_sigma +
    softplus(sigma_raw)``. ``learn: false`` freezes them at their start.
    """

    def __init__(self, num_classes: int, min_sigma: float = 0.05, learn: bool = True) -> None:
        super().__init__()
        if num_classes < 1 or not 0 < min_sigma < 1:
            raise ValueError(
                f"need num_classes >= 1 and 0 < min_sigma < 1, got {num_classes}, {min_sigma}"
            )
        self.min_sigma = min_sigma
        self.mu = nn.Parameter(
            torch.tensor([0.0, 0.5, -0.5]).repeat(num_classes, 1), requires_grad=learn
        )
        self.sigma_raw = nn.Parameter(torch.zeros(num_classes, 3), requires_grad=learn)
        self.set_sigma(torch.ones(num_classes, 3))

    def sigma(self) -> Tensor:
        """The widths ``[C, 3]``, each above ``min_sigma``."""
        return self.min_sigma + F.softplus(self.sigma_raw)

    @torch.no_grad()
    def set_sigma(self, sigma: Tensor | float) -> None:
        """Set the widths (each must exceed ``min_sigma``)."""
        target = torch.as_tensor(sigma, dtype=self.sigma_raw.dtype).expand_as(self.sigma_raw)
        if bool((target <= self.min_sigma).any()):
            raise ValueError(f"widths must exceed min_sigma = {self.min_sigma}")
        self.sigma_raw.copy_(_softplus_inverse(target - self.min_sigma))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        # checkpoints from before the softplus widths stored log(sigma) (a clamp at min_sigma)
        old = state_dict.pop(prefix + "log_sigma", None)
        if old is not None and prefix + "sigma_raw" not in state_dict:
            sigma = old.exp().clamp(min=self.min_sigma * (1 + 1e-4) + 1e-6)
            state_dict[prefix + "sigma_raw"] = _softplus_inverse(sigma - self.min_sigma)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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


def relative_position(reg_targets: Tensor, strides: Tensor | None = None) -> Tensor:
    """Positions of points inside their actions from their regression targets ``[N, 2]``
    (distances to the start and the end, in any common unit): ``(centre - t) / length``,
    ``+1/2`` at the start, ``0`` at the centre, ``-1/2`` at the end; divided by each point's
    level stride ``strides`` ``[N]`` when given, as the authors' release does
    (``dist2center / (stride * length)``)."""
    d_start, d_end = reg_targets[:, 0], reg_targets[:, 1]
    x = (d_end - d_start) / (2 * (d_start + d_end).clamp(min=1e-6))
    return x if strides is None else x / strides.to(x.dtype)


@dataclass
class ASLOutput(LocalizerOutput):
    """The localizer's outputs plus what ASL's loss needs: the class-level Gaussians (the
    module, so that DDP sees its parameters used) and, with the instance branch, the
    per-level sensitivity ``[B, T_l, 2]``."""

    class_sensitivity: ClassSensitivity | None = None
    sensitivity: list[Tensor] | None = None


class ASLLocalizer(Localizer):
    """The one-stage localizer with ASL's class-level Gaussians and, when
    ``instance_branch``, its per-level instance sensitivity head; returns ``ASLOutput``.

    ``learn_gaussians: False`` freezes the Gaussians at their start; ``no_weight_decay()``
    names their parameters (see the module docstring)."""

    def __init__(
        self,
        settings: PyramidSettings,
        in_dim: int,
        num_classes: int,
        min_sigma: float,
        instance_branch: bool,
        learn_gaussians: bool = True,
    ) -> None:
        self._min_sigma, self._instance_branch = min_sigma, instance_branch
        self._learn_gaussians = learn_gaussians
        super().__init__(settings, in_dim, num_classes)

    def build_extra_heads(self, settings: PyramidSettings) -> None:
        self.class_sensitivity = ClassSensitivity(
            self.num_classes, self._min_sigma, learn=self._learn_gaussians
        )
        self.sensitivity = (
            InstanceSensitivity(settings.embed_dim) if self._instance_branch else None
        )

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters to keep out of weight decay (the timm convention): the
        Gaussians' means and widths."""
        return {
            f"class_sensitivity.{name}" for name, _ in self.class_sensitivity.named_parameters()
        }

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

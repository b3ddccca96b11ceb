"""ASL, Action Sensitivity Learning (Shao et al., ICCV 2023), on the one-stage localizer.

How much each frame of an action counts in the classification and regression losses comes
from a class-level branch (learned Gaussians over the frame's position inside the action,
per class and sub-task) and an instance-level branch (per-frame sensitivity predicted from
features), plus the action-sensitive contrastive loss. The parts: ``network`` (the Gaussians,
the sensitivity head, ``ASLLocalizer``), ``loss`` (``ActionSensitiveLoss``). Decoding is the
plain localizer's. Where the paper is silent, the choices are ours and said in each part.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from tal.config import TrainingConfig
from tal.methods.actionformer import LocalizerConfig, OneStageMethod
from tal.methods.asl.loss import ActionSensitiveLoss
from tal.methods.asl.network import ASLLocalizer
from tal.methods.registry import register_method


class ASLConfig(LocalizerConfig):
    name: Literal["asl"] = "asl"
    instance_branch: bool = True
    combine: Literal["prod", "mean"] = Field(
        "prod", description="class-level and instance-level weights: product or mean"
    )
    instance_weight: float = Field(1.0, ge=0, description="weight of the instance-level MSE")
    contrastive_weight: float = Field(0.1, ge=0, description="weight of the contrastive loss")
    temperature: float = Field(0.07, gt=0)
    region: float = Field(
        0.2, gt=0, le=0.5, description="half-width of centre/boundary regions, x action length"
    )
    min_sigma: float = Field(0.05, gt=0, description="floor of the Gaussians' widths")
    normalize: bool = Field(
        False,
        description="scale the positives' weights to mean 1 per sub-task (they then shift "
        "emphasis between a batch's positive frames without shrinking the foreground's share)",
    )


@register_method
class ASL(OneStageMethod[ASLConfig]):
    """The one-stage localizer trained with action-sensitivity weights."""

    name = "asl"
    config_class = ASLConfig

    def describe(self) -> str:
        c = self.config
        return f"asl (instance branch {c.instance_branch}, combine {c.combine})"

    def build_network(self, in_dim: int, num_classes: int) -> nn.Module:
        c = self.config
        return ASLLocalizer(c.pyramid(), in_dim, num_classes, c.min_sigma, c.instance_branch)

    def build_loss(self, num_classes: int, training: TrainingConfig) -> nn.Module:
        return ActionSensitiveLoss(
            num_classes,
            self.config,
            center_radius=training.center_radius,
            reg_weight=training.reg_weight,
        )

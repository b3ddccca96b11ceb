"""ASL, Action Sensitivity Learning (Shao et al., ICCV 2023), on the one-stage localizer.

How much each frame of an action counts in the classification and regression losses comes
from a class-level branch (learned Gaussians over the frame's position inside the action,
per class and sub-task, as in the authors' released code) and, optionally, an
instance-level branch (per-frame sensitivity predicted from features; not in the release),
plus the action-sensitive contrastive loss. The parts: ``network`` (the Gaussians,
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
    """ASL's ``model:`` keys (besides the pyramid's). Defaults follow the authors' released
    code (github.com/JonnyS1226/ego4d_asl); each key says where ours differs or where the
    release is silent."""

    name: Literal["asl"] = "asl"
    instance_branch: bool = Field(
        False,
        description="the instance-level sensitivity head (our reading of the paper; the "
        "release has none): its weights join the class-level ones by `combine`",
    )
    combine: Literal["prod", "mean"] = Field(
        "prod",
        description="with instance_branch: class-level x instance-level weight (prod) or "
        "their mean",
    )
    instance_weight: float = Field(
        1.0, ge=0, description="weight of the instance-level squared error (instance_branch)"
    )
    contrastive_weight: float = Field(
        0.0,
        ge=0,
        description="weight of the action-sensitive contrastive loss: 0 as released "
        "(cont_loss_weight 0, its call switched off); our earlier default 0.1",
    )
    temperature: float = Field(0.07, gt=0, description="contrastive InfoNCE temperature")
    region: float = Field(
        0.2, gt=0, le=0.5, description="half-width of centre/boundary regions, x action length"
    )
    min_sigma: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="floor of the Gaussians' widths: sigma = min_sigma + softplus(raw), "
        "started at 1 (the release has no floor)",
    )
    learn_gaussians: bool = Field(
        True, description="learn the class-level Gaussians (as released); false: fixed"
    )
    position_by_stride: bool = Field(
        True,
        description="a point's position inside its action: (centre - t) / (stride x length) "
        "as released (true), or / length alone (false, our earlier reading)",
    )
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
        instance = f"instance branch ({c.combine})" if c.instance_branch else "no instance branch"
        return f"asl (class-level Gaussians, {instance})"

    def build_network(self, in_dim: int, num_classes: int) -> nn.Module:
        c = self.config
        return ASLLocalizer(
            c.pyramid(),
            in_dim,
            num_classes,
            c.min_sigma,
            c.instance_branch,
            learn_gaussians=c.learn_gaussians,
        )

    def build_loss(self, num_classes: int, training: TrainingConfig) -> nn.Module:
        # the same localization settings as OneStageMethod.build_loss (a test checks)
        return ActionSensitiveLoss(
            num_classes,
            self.config,
            center_radius=training.center_radius,
            reg_weight=training.reg_weight,
            normalizer_init=training.loss_norm_init,
            normalizer_momentum=training.loss_norm_momentum,
            label_smoothing=training.label_smoothing,
        )

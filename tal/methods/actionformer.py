"""ActionFormer (Zhang et al., ECCV 2022): the one-stage anchor-free localizer.

A pyramid of local-attention transformer levels over the video's features, shared
classification (sigmoid focal loss) and boundary regression (DIoU loss) heads with centre
sampling, Soft-NMS decoding. The network is ``tal.models.localizer.Localizer``, the losses
``tal.engine.losses``, the decoding ``tal.postprocess``. I2Net and ASL extend this method.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from tal.config import ModelConfig, TrainingConfig
from tal.data.dataset import Batch
from tal.engine.losses import LocalizationLoss
from tal.methods.base import (
    InferenceAssets,
    LossTerms,
    Method,
    PostprocessSettings,
    StepDetections,
    single_video,
    to_device,
)
from tal.methods.registry import register_method
from tal.models.localizer import Localizer, LocalizerOutput, PyramidSettings
from tal.postprocess import decode_video, soft_nms


class LocalizerConfig(ModelConfig):
    """The pyramid every one-stage method shares (ActionFormer, I2Net, ASL)."""

    embed_dim: int = Field(256, ge=8)
    num_heads: int = Field(4, ge=1)
    num_levels: int = Field(6, ge=1, description="temporal pyramid levels (each halves time)")
    dropout: float = Field(0.0, ge=0, lt=1)
    attention_window: int = Field(
        9, ge=1, description="points each self-attention query sees (odd, centred on it)"
    )

    @field_validator("attention_window")
    @classmethod
    def _odd_window(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (a window centred on each point)")
        return v

    @model_validator(mode="after")
    def _crop_fits_pyramid(self) -> LocalizerConfig:
        levels = 2 ** (self.num_levels - 1)
        if self.max_seq_len % levels:
            raise ValueError(
                f"max_seq_len ({self.max_seq_len}) must be a multiple of 2**(num_levels-1) "
                f"= {levels}, so that every pyramid level halves it exactly"
            )
        return self

    @model_validator(mode="after")
    def _heads_divide_width(self) -> LocalizerConfig:
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        return self

    def pyramid(self) -> PyramidSettings:
        return PyramidSettings(
            self.embed_dim, self.num_heads, self.num_levels, self.dropout, self.attention_window
        )


class ActionFormerConfig(LocalizerConfig):
    name: Literal["actionformer"] = "actionformer"


L = TypeVar("L", bound=LocalizerConfig)


class OneStageMethod(Method[L]):
    """The one-stage localizer's training and decoding, shared by the methods built on it."""

    @property
    def divisible_by(self) -> int:
        return 2 ** (self.config.num_levels - 1)

    def build_network(self, in_dim: int, num_classes: int) -> nn.Module:
        return Localizer(self.config.pyramid(), in_dim, num_classes)

    def build_loss(self, num_classes: int, training: TrainingConfig) -> nn.Module:
        return LocalizationLoss(
            num_classes, center_radius=training.center_radius, reg_weight=training.reg_weight
        )

    def loss_terms(
        self,
        network: nn.Module,
        loss: nn.Module,
        first: Batch,
        second: Batch,
        num_classes: int,
        device: torch.device,
    ) -> LossTerms:
        """Both sides of the pairs as one batch of single videos."""
        batch = first.join(second)
        out = network(batch.feats.to(device), batch.masks.to(device))
        return loss(out, to_device(batch.segments, device), to_device(batch.labels, device))

    def forward_video(
        self,
        network: nn.Module,
        video_id: str,
        feats: Tensor,
        device: torch.device,
        assets: InferenceAssets | None,
    ) -> LocalizerOutput:
        """The network's outputs on one video (a batch of one)."""
        return network(*single_video(feats, self.divisible_by, device))

    @torch.no_grad()
    def decode(
        self,
        network: nn.Module,
        video_id: str,
        feats: Tensor,
        device: torch.device,
        post: PostprocessSettings,
        assets: InferenceAssets | None,
    ) -> StepDetections:
        out = self.forward_video(network, video_id, feats, device, assets)
        segs, scores, labels = decode_video(
            [x[0] for x in out.cls_logits],
            [x[0] for x in out.offsets],
            [x[0] for x in out.masks],
            out.strides,
            score_threshold=post.score_threshold,
            pre_nms_topk=post.pre_nms_topk,
        )
        segs, scores, labels = soft_nms(
            segs,
            scores,
            labels,
            sigma=post.nms_sigma,
            min_score=post.min_score,
            max_detections=post.max_detections,
        )
        return StepDetections(segs, scores, labels)


@register_method
class ActionFormer(OneStageMethod[ActionFormerConfig]):
    """ActionFormer-style baseline: the one-stage localizer alone."""

    name = "actionformer"
    config_class = ActionFormerConfig

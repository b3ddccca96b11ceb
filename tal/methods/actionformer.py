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
from tal.postprocess import batched_nms, decode_video, fuse_external_scores


class LocalizerConfig(ModelConfig):
    """The pyramid every one-stage method shares (ActionFormer, I2Net, ASL).

    Official ActionFormer keys map as: ``backbone_arch = (embed_convs, stem_blocks,
    num_levels - 1)``, ``n_mha_win_size`` = ``attention_window`` (-1: global), ``embd_dim`` =
    ``fpn_dim`` = ``head_dim`` = ``embed_dim``, ``n_head`` = ``num_heads``, ``train_cfg.dropout``
    = ``dropout``, ``train_cfg.droppath`` = ``drop_path``, ``fpn_type: identity`` with
    ``fpn_with_ln`` = ``neck_norm``, ``use_abs_pe`` = ``abs_pe``, and the network is the
    ``convTransformer`` backbone when ``downsample: in_block``. The official THUMOS14 recipe
    sets ``attention_window: 19`` and ``embed_dim: 512``; ActivityNet ``[7, 7, 7, 7, 7, -1]``,
    ``embed_dim: 256`` and ``abs_pe: true``. Our earlier network is ``downsample:
    pool_then_block, stem_blocks: 1, drop_path: 0, neck_norm: false``.
    """

    embed_dim: int = Field(256, ge=8)
    num_heads: int = Field(4, ge=1)
    num_levels: int = Field(6, ge=1, description="temporal pyramid levels (each halves time)")
    dropout: float = Field(0.0, ge=0, lt=1)
    attention_window: int | list[int] = Field(
        9,
        description="points each self-attention query sees (odd, centred on it; -1: the whole "
        "video), one value for every level or a list with one per level",
    )
    embed_convs: int = Field(
        2, ge=1, description="conv layers embedding the features (ActionFormer backbone_arch[0])"
    )
    stem_blocks: int = Field(
        2,
        ge=0,
        description="stride-1 transformer blocks making level 0 (ActionFormer backbone_arch[1]); "
        "each further level is one block (backbone_arch[2] = num_levels - 1)",
    )
    downsample: Literal["in_block", "pool_then_block"] = Field(
        "in_block",
        description="in_block: ActionFormer's strided conv-attention blocks halve time; "
        "pool_then_block: our earlier max pool, then a plain transformer block",
    )
    drop_path: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="drop-path rate of every transformer block's residual branches; > 0 also "
        "adds ActionFormer's per-channel residual scale (init 1e-4)",
    )
    neck_norm: bool = Field(
        True, description="a LayerNorm per pyramid level before the heads (fpn_with_ln)"
    )
    abs_pe: bool = Field(
        False,
        description="add a sinusoidal absolute position encoding (of max_seq_len positions, "
        "interpolated for longer inputs) after the embedding (use_abs_pe)",
    )

    @field_validator("attention_window")
    @classmethod
    def _odd_window(cls, v: int | list[int]) -> int | list[int]:
        for w in v if isinstance(v, list) else [v]:
            if w != -1 and (w < 1 or w % 2 == 0):
                raise ValueError(
                    f"window {w}: must be odd and >= 1 (a window centred on each point), "
                    "or -1 (global)"
                )
        return v

    @model_validator(mode="after")
    def _window_per_level(self) -> LocalizerConfig:
        w = self.attention_window
        if isinstance(w, list) and len(w) != self.num_levels:
            raise ValueError(
                f"attention_window has {len(w)} values but num_levels is {self.num_levels} "
                "(give one window, or one per level)"
            )
        return self

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

    @property
    def backbone_arch(self) -> tuple[int, int, int]:
        """ActionFormer's ``backbone_arch``: (embedding convs, stem blocks, branch blocks)."""
        return (self.embed_convs, self.stem_blocks, self.num_levels - 1)

    def pyramid(self) -> PyramidSettings:
        """The network's settings (a window of -1 becomes ``None``: global attention)."""
        w = self.attention_window
        windows = tuple(None if x == -1 else x for x in w) if isinstance(w, list) else w
        return PyramidSettings(
            self.embed_dim,
            self.num_heads,
            self.num_levels,
            self.dropout,
            None if windows == -1 else windows,
            embed_convs=self.embed_convs,
            stem_blocks=self.stem_blocks,
            downsample=self.downsample,
            drop_path=self.drop_path,
            neck_norm=self.neck_norm,
            abs_pe=self.abs_pe,
            max_len=self.max_seq_len,
        )


class ActionFormerConfig(LocalizerConfig):
    name: Literal["actionformer"] = "actionformer"


L = TypeVar("L", bound=LocalizerConfig)


class OneStageMethod(Method[L]):
    """The one-stage localizer's training and decoding, shared by the methods built on it."""

    fuses_external_scores = True

    @property
    def divisible_by(self) -> int:
        return 2 ** (self.config.num_levels - 1)

    def build_network(self, in_dim: int, num_classes: int) -> nn.Module:
        return Localizer(self.config.pyramid(), in_dim, num_classes)

    def build_loss(self, num_classes: int, training: TrainingConfig) -> nn.Module:
        return LocalizationLoss(
            num_classes,
            center_radius=training.center_radius,
            reg_weight=training.reg_weight,
            normalizer_init=training.loss_norm_init,
            normalizer_momentum=training.loss_norm_momentum,
            label_smoothing=training.label_smoothing,
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
        """ActionFormer's test-time path: per-level top-k candidates above the score
        threshold, longer than ``duration_threshold`` steps (``decode_video``), NMS per class
        or over all classes with optional voting (``batched_nms``), then, with
        ``inference.external_scores``, relabelling by the video-level classifier's top
        classes (``fuse_external_scores``)."""
        out = self.forward_video(network, video_id, feats, device, assets)
        segs, scores, labels = decode_video(
            [x[0] for x in out.cls_logits],
            [x[0] for x in out.offsets],
            [x[0] for x in out.masks],
            out.strides,
            score_threshold=post.score_threshold,
            pre_nms_topk=post.pre_nms_topk,
            topk_per=post.topk_per,
            duration_threshold=post.duration_threshold,
        )
        segs, scores, labels = batched_nms(
            segs,
            scores,
            labels,
            method=post.nms_method,
            iou_threshold=post.iou_threshold,
            sigma=post.nms_sigma,
            min_score=post.min_score,
            max_detections=post.max_detections,
            multiclass=post.multiclass_nms,
            voting_threshold=post.voting_threshold,
        )
        if post.external is not None:
            # the label map's classes (a class-agnostic network outputs one)
            num_classes = post.num_labels or int(out.cls_logits[0].shape[-1])
            segs, scores, labels = fuse_external_scores(
                segs,
                scores,
                post.external.video(video_id, num_classes),
                topk=post.external_topk,
                max_segments=post.max_detections,
            )
        return StepDetections(segs, scores, labels)


@register_method
class ActionFormer(OneStageMethod[ActionFormerConfig]):
    """ActionFormer-style baseline: the one-stage localizer alone."""

    name = "actionformer"
    config_class = ActionFormerConfig

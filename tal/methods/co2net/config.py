"""CO2-Net's ``model:`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tal.config import FeaturesConfig, ModelConfig


class CO2NetConfig(ModelConfig):
    """Widths default to the paper's for 1024-d RGB + 1024-d flow inputs (the first half of
    the features is RGB, the second flow); the loss weights and inference settings are those
    of the authors' released THUMOS14 code. ``max_seq_len``: longer training videos are
    resampled to this many points (not cropped)."""

    name: Literal["co2net"] = "co2net"
    attention_dim: int = Field(512, ge=1, description="hidden width of the attention branch")
    fusion_dim: int | None = Field(None, ge=1, description="default: the input width")
    dropout: float = Field(0.7, ge=0, lt=1, description="fusion and classifier dropout")
    consensus_dropout: float = Field(0.5, ge=0, lt=1, description="dropout inside the CCMs")
    topk_ratio: int = Field(7, ge=1, description="MIL pooling over the top T // r points")
    coactivity_weight: float = Field(1.0, ge=0)
    coactivity_margin: float = Field(0.5, ge=0)
    mutual_weight: float = Field(1.0, ge=0)
    sparsity_weight: float = Field(0.8, ge=0)
    guide_weight: float = Field(0.8, ge=0)
    class_threshold: float = Field(0.2, ge=0, le=1, description="video score to localize a class")
    score_topk_ratio: int = Field(10, ge=1, description="video scores from the top T // r points")
    thresholds: list[float] = Field(
        default_factory=lambda: [round(0.1 + i * 0.8 / 9, 6) for i in range(10)],
        description="attention thresholds whose runs of points become proposals",
    )
    oic_outer: float = Field(0.25, ge=0, description="outer region, x proposal length")
    oic_gamma: float = Field(0.2, ge=0, description="weight of the video score in a proposal's")
    nms_sigma: float = Field(0.3, gt=0, description="Gaussian Soft-NMS sigma")

    def check_features(self, features: FeaturesConfig) -> None:
        if features.modalities != ["rgb", "flow"]:
            raise ValueError(
                "model co2net needs features.modalities [rgb, flow] (its two cross-modal "
                f"branches), got {features.modalities}"
            )

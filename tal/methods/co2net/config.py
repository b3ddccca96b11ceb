"""CO2-Net's ``model:`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tal.config import FeaturesConfig, ModelConfig


class CO2NetConfig(ModelConfig):
    """Widths default to the paper's for 1024-d RGB + 1024-d flow inputs (the first half of
    the features is RGB, the second flow); the loss weights and inference settings are those
    of the authors' released THUMOS14 code. ``max_seq_len``: the length every training video
    is resampled to (the official ``--max-seqlen``, ``t_max``; see ``train_sampling``).

    Where the official code and our former reading differ, the official behaviour is the
    default and the former one a named value: ``train_sampling: pad``,
    ``coactivity_pairs: null``, ``proposal_bounds: first_last_plus_one``,
    ``oic_rounding: floor``, ``nms_overlap: exact``."""

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
    train_sampling: Literal["perturb", "pad"] = Field(
        "perturb",
        description="perturb: every training video resampled to exactly max_seq_len points "
        "(the official random perturbed uniform sampling; shorter videos repeat points); "
        "pad: only longer videos resampled, shorter ones padded (our former recipe)",
    )
    coactivity_pairs: int | None = Field(
        3,
        ge=1,
        description="co-activity over the first n pairs of each step's batch on each worker "
        "(the official 3 similar pairs per batch); null: every pair (our former recipe)",
    )
    proposal_bounds: Literal["edges", "first_last_plus_one"] = Field(
        "edges",
        description="edges: a run of points first..last spans their feature cells, steps "
        "[first - 0.5, last + 0.5] (the official seconds); first_last_plus_one: "
        "[first, last + 1] (our former decoding, half a step late)",
    )
    oic_rounding: Literal["ceil_floor", "floor"] = Field(
        "ceil_floor",
        description="outer points of the contrast: ceil(oic_outer x length) before and "
        "floor after (the official int() truncation), or floor on both sides (former)",
    )
    nms_overlap: Literal["plus_one", "exact"] = Field(
        "plus_one",
        description="Soft-NMS overlap: plus_one, the official IoU with inclusive ends (+1 "
        "step on every length and intersection); exact: the IoU of the segments (former)",
    )

    def check_features(self, features: FeaturesConfig) -> None:
        if features.modalities != ["rgb", "flow"]:
            raise ValueError(
                "model co2net needs features.modalities [rgb, flow] (its two cross-modal "
                f"branches), got {features.modalities}"
            )

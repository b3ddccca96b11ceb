"""What a method is: the interface the trainer, inference, packaging and tracking call.

A method (``tal.methods.actionformer``, ``i2net``, ``asl``, ``co2net``, or a plug-in) is a
``Method`` subclass registered by name (``tal.methods.registry.register_method``). It owns
its config class (the ``model:`` section), its network, its loss, its training step on a
batch of pairs, its decoding of one video into detections, its kind of supervision and
whether it takes a partner video. Shared code never asks which method it runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeVar

import torch
from torch import Tensor, nn

from tal.config import InferenceConfig, ModelConfig, TrainingConfig
from tal.data.dataset import Batch, pad_features, padded_length
from tal.postprocess import ExternalScores

if TYPE_CHECKING:
    from tal.data.dataset import FeatureDataset

Supervision = Literal["segments", "video_labels"]
# a method's loss terms by name; "loss" is the one that is minimised
LossTerms = dict[str, Tensor]
C = TypeVar("C", bound=ModelConfig)


@dataclass(frozen=True)
class PostprocessSettings:
    """The ``inference`` section as decoding reads it (each method uses what applies).

    The defaults are ActionFormer's THUMOS14 test settings (see ``InferenceConfig``);
    ``external`` holds the loaded ``inference.external_scores`` (None when unset).
    """

    score_threshold: float = 0.001
    pre_nms_topk: int = 2000
    topk_per: Literal["level", "video"] = "level"
    duration_threshold: float = 0.05
    nms_method: Literal["soft", "hard", "linear", "none"] = "soft"
    iou_threshold: float = 0.1
    nms_sigma: float = 0.5
    min_score: float = 0.001
    max_detections: int = 200
    multiclass_nms: bool = True
    voting_threshold: float = 0.7
    external: ExternalScores | None = field(default=None, compare=False)
    external_topk: int = 2
    num_labels: int | None = None  # the label map's size, when known (external scores' width)

    @classmethod
    def from_config(
        cls, inference: InferenceConfig, label_names: Sequence[str] | None = None
    ) -> PostprocessSettings:
        """From the ``inference`` section of an experiment config; reads
        ``external_scores`` now, so a bad file stops before any video (columns named in the
        file are put in ``label_names`` order when those are given)."""
        external = None
        if inference.external_scores is not None:
            external = ExternalScores.load(inference.external_scores).for_labels(label_names)
        return cls(
            score_threshold=inference.score_threshold,
            pre_nms_topk=inference.pre_nms_topk,
            topk_per=inference.topk_per,
            duration_threshold=inference.duration_threshold,
            nms_method=inference.nms_method,
            iou_threshold=inference.iou_threshold,
            nms_sigma=inference.nms_sigma,
            min_score=inference.min_score,
            max_detections=inference.max_detections,
            multiclass_nms=inference.multiclass_nms,
            voting_threshold=inference.voting_threshold,
            external=external,
            external_topk=inference.external_topk,
            num_labels=len(label_names) if label_names is not None else None,
        )


@dataclass
class StepDetections:
    """One video's detections in feature steps: ``segments`` ``[N, 2]``, ``scores`` ``[N]``,
    ``labels`` ``[N]`` (label-map indices)."""

    segments: Tensor
    scores: Tensor
    labels: Tensor


class InferenceAssets(ABC):
    """Data a method keeps with a trained model for inference (I2Net's partner bank); saved
    in checkpoints and packaged models as tensors and plain data only."""

    @abstractmethod
    def to_state(self) -> Mapping[str, object]:
        """Tensors and plain data (safe for ``torch.load(weights_only=True)``)."""


def single_video(feats: Tensor, divisible_by: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """One ``[C, T]`` sequence as a padded batch of one: ``([1, C, T'], [1, T'])``."""
    batch, masks = pad_features([feats.float()], padded_length(feats.shape[1], divisible_by))
    return batch.to(device), masks.to(device)


def to_device(tensors: list[Tensor], device: torch.device) -> list[Tensor]:
    """Per-video tensors of a batch (segments, labels) on ``device``."""
    return [t.to(device) for t in tensors]


class Method(ABC, Generic[C]):
    """One registered method; ``method = Method(config.model)``. See the module docstring.

    Class attributes: ``name`` (the ``model.name`` that selects it), ``config_class`` (its
    ``model:`` section), ``supervision`` (``segments``: trained on annotated segments;
    ``video_labels``: weakly, from each video's classes only, never reading a segment) and
    ``global_normaliser`` (whether its loss divides by counts over the whole global batch, so
    that under data parallelism each rank's loss is its share of one sum; otherwise each
    rank's loss is a mean that DDP's gradient averaging combines), ``fuses_external_scores``
    (whether its decoding relabels detections with ``inference.external_scores``, which a
    ``training.class_agnostic`` network needs).
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    supervision: ClassVar[Supervision] = "segments"
    global_normaliser: ClassVar[bool] = True
    fuses_external_scores: ClassVar[bool] = False

    def __init__(self, config: C) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"method {self.name} takes a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config: C = config

    @property
    def takes_partner(self) -> bool:
        """Whether the network takes a partner video beside each video."""
        return False

    @property
    def divisible_by(self) -> int:
        """What a batch's padded length must be a multiple of."""
        return 1

    def describe(self) -> str:
        """One line on the variant trained (for logs)."""
        return self.name

    @abstractmethod
    def build_network(self, in_dim: int, num_classes: int) -> nn.Module:
        """A fresh network for ``in_dim``-wide features and ``num_classes`` classes."""

    @abstractmethod
    def build_loss(self, num_classes: int, training: TrainingConfig) -> nn.Module:
        """The training loss module (its state travels in checkpoints)."""

    @abstractmethod
    def loss_terms(
        self,
        network: nn.Module,
        loss: nn.Module,
        first: Batch,
        second: Batch,
        num_classes: int,
        device: torch.device,
    ) -> LossTerms:
        """Forward and loss on one batch of pairs: ``first[i]`` and ``second[i]`` share an
        action class (or are the same video). ``network`` may be a DDP wrapper."""

    @abstractmethod
    def decode(
        self,
        network: nn.Module,
        video_id: str,
        feats: Tensor,
        device: torch.device,
        post: PostprocessSettings,
        assets: InferenceAssets | None,
    ) -> StepDetections:
        """Detections of one video from its ``[C, T]`` features (``network`` in eval mode)."""

    def inference_assets(self, train_videos: FeatureDataset) -> InferenceAssets | None:
        """What to keep with the model for inference, from the (uncropped) training videos."""
        return None

    def assets_from_state(self, state: Mapping[str, object] | None) -> InferenceAssets | None:
        """``InferenceAssets`` back from ``to_state()`` (None when there are none)."""
        return None

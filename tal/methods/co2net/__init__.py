"""CO2-Net (Hong et al., ACM MM 2021): weakly supervised localization from video-level labels,
with two cross-modal consensus modules over RGB and flow features.

The parts: ``config`` (the ``model:`` section), ``network`` (``CO2Net``), ``loss`` (MIL,
suppressed MIL, co-activity, mutual learning, sparsity, guide), ``sampling`` (the official
fixed-length training sampling) and ``decode`` (the authors' multi-threshold proposals with
outer-inner contrast and Soft-NMS). Training never reads a segment: the dataset gives each
video's classes only (``supervision = "video_labels"``).

A training step (``loss_terms``) sees a batch of ``B`` pairs of videos that share a class.
With ``train_sampling: perturb`` (the official recipe) every video of it is first resampled
to exactly ``max_seq_len`` points (``sampling``): the dataset has already resampled videos
longer than that to ``max_seq_len`` (one random point per equal bin, which the method then
keeps as it is), and the method stretches the shorter ones by the official random perturbed
sampling instead of padding them. With ``pad`` (our former recipe) the batch is used as the
dataset padded it.

Batch composition. The official batch is 10 videos: 3 classes drawn at random, two videos of
each (the co-activity pairs), and 4 videos drawn at random. Ours is ``training.batch_size``
pairs from the pairs table (``tal pairs``: each training video with ``pairs.per_video``
partners sharing a class, shuffled each epoch), i.e. ``2 B`` videos. The co-activity loss
takes the first ``coactivity_pairs`` pairs of two distinct videos on each worker (3, as the
official code; a video without a partner is paired with itself and skipped); every other
video enters the other losses only, like the official random four. With ``batch_size: 5``
on one worker that is the official 3 pairs + 4 videos, with two differences: our pairs are
drawn per video (every video equally often), the official ones per class (every class
equally often), and our 4 other videos come as two class-sharing pairs rather than
independently.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tal.config import TrainingConfig
from tal.data.dataset import Batch
from tal.methods.base import (
    InferenceAssets,
    LossTerms,
    Method,
    PostprocessSettings,
    StepDetections,
    single_video,
)
from tal.methods.co2net.config import CO2NetConfig
from tal.methods.co2net.decode import localize_weak
from tal.methods.co2net.loss import CO2NetLoss
from tal.methods.co2net.network import CO2Net, CO2NetOutput
from tal.methods.co2net.sampling import resample_batch
from tal.methods.registry import register_method

__all__ = ["CO2NetConfig", "CO2NetMethod"]


@register_method
class CO2NetMethod(Method[CO2NetConfig]):
    """CO2-Net; its loss terms are per-rank means (DDP's gradient average combines them)."""

    name = "co2net"
    config_class = CO2NetConfig
    supervision = "video_labels"
    global_normaliser = False

    @property
    def divisible_by(self) -> int:
        """Batches are padded to a multiple of 32 steps. The network masks its padding, but
        its dropout masks are drawn over the padded length, so this length is part of what a
        seed reproduces; 32 is what every CO2-Net run of this project has used. Resampled
        training batches (``train_sampling: perturb``) are padded to it as well: 500 points
        run as 512 with 12 masked."""
        return 32

    def build_network(self, in_dim: int, num_classes: int) -> nn.Module:
        return CO2Net(self.config, in_dim=in_dim, num_classes=num_classes)

    def build_loss(self, num_classes: int, training: TrainingConfig) -> nn.Module:
        return CO2NetLoss(self.config)

    def loss_terms(
        self,
        network: nn.Module,
        loss: nn.Module,
        first: Batch,
        second: Batch,
        num_classes: int,
        device: torch.device,
    ) -> LossTerms:
        """Both sides of the pairs as one batch, from video-level labels; row i and row
        B + i share a class (the co-activity pairs, the first ``coactivity_pairs`` of them).
        With ``train_sampling: perturb`` every video is resampled to ``max_seq_len`` points
        first (module docstring)."""
        batch = first.join(second)
        if self.config.train_sampling == "perturb":
            batch = resample_batch(batch, self.config.max_seq_len, self.divisible_by)
        out = network(batch.feats.to(device), batch.masks.to(device))
        multi_hot = torch.zeros(len(batch), num_classes, device=device)
        for row, video_labels in enumerate(batch.labels):
            multi_hot[row, video_labels.to(device)] = 1.0
        half = len(first)
        distinct = [(i, half + i) for i in range(half) if first.video_ids[i] != second.video_ids[i]]
        pairs = distinct[: self.config.coactivity_pairs]  # None: every pair
        return loss(out, multi_hot, pairs)

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
        out: CO2NetOutput = network(*single_video(feats, self.divisible_by, device))
        real = out.masks[0]
        segs, scores, labels = localize_weak(
            out.cas[0][real], out.attention[0][real], self.config, post.max_detections
        )
        return StepDetections(segs, scores, labels)

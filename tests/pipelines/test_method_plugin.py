"""A fifth method is one module: a toy method registered from this test file trains, is
tracked, registered and packaged, and predicts through `tal train`'s code path, with no
change to shared code."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from pipelines.cli import exit_status as cli
from pipelines.registry import CHAMPION, list_versions, load_packaged
from pipelines.train import run_training
from tal.config import ModelConfig, TrainingConfig, load_config
from tal.data.annotations import LabelMap, load_annotations
from tal.data.dataset import Batch, FeatureDataset
from tal.engine.checkpoint import load_checkpoint
from tal.engine.inference import infer_from_checkpoint
from tal.engine.package import PackagedLocalizer
from tal.methods import method_names
from tal.methods.base import (
    InferenceAssets,
    LossTerms,
    Method,
    PostprocessSettings,
    StepDetections,
    single_video,
)
from tal.methods.registry import register_method


class FramewiseConfig(ModelConfig):
    name: Literal["framewise"] = "framewise"
    max_seq_len: int = 64
    hidden: int = Field(16, ge=1)
    threshold: float = Field(0.5, gt=0, lt=1)


class FramewiseNet(nn.Module):
    """Per-point class logits ``[B, T, K]`` from a two-layer 1x1 convolution."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(in_dim, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, num_classes, 1)
        )

    def forward(self, feats: Tensor, masks: Tensor) -> Tensor:
        return self.net(feats).transpose(1, 2) * masks[:, :, None]


class FramewiseLoss(nn.Module):
    """Mean binary cross-entropy of every real point against 'inside an action of class k'."""

    def forward(self, logits: Tensor, batch: Batch) -> LossTerms:
        targets = torch.zeros_like(logits)
        steps = torch.arange(logits.shape[1], device=logits.device)
        for row, (segments, labels) in enumerate(zip(batch.segments, batch.labels, strict=True)):
            for (start, end), label in zip(segments.tolist(), labels.tolist(), strict=True):
                targets[row, (steps >= start) & (steps < end), label] = 1.0
        real = batch.masks.to(logits.device)
        loss = F.binary_cross_entropy_with_logits(logits[real], targets[real])
        return {"loss": loss, "bce": loss.detach()}


@register_method
class Framewise(Method[FramewiseConfig]):
    """Toy method: classify every point, detections are runs above a threshold."""

    name = "framewise"
    config_class = FramewiseConfig

    def build_network(self, in_dim: int, num_classes: int) -> nn.Module:
        return FramewiseNet(in_dim, num_classes, self.config.hidden)

    def build_loss(self, num_classes: int, training: TrainingConfig) -> nn.Module:
        return FramewiseLoss()

    def loss_terms(
        self,
        network: nn.Module,
        loss: nn.Module,
        first: Batch,
        second: Batch,
        num_classes: int,
        device: torch.device,
    ) -> LossTerms:
        batch = first.join(second)
        return loss(network(batch.feats.to(device), batch.masks.to(device)), batch)

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
        probs = torch.sigmoid(network(*single_video(feats, 1, device))[0]).cpu()
        rows = []
        for k in range(probs.shape[1]):
            above = torch.cat([torch.tensor([False]), probs[:, k] > self.config.threshold])
            edges = torch.nonzero(torch.diff(torch.cat([above, torch.tensor([False])]).int()))[:, 0]
            for start, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
                rows.append((start - 0.5, end - 0.5, float(probs[start:end, k].mean()), k))
        if not rows:
            return StepDetections(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0).long())
        table = torch.tensor(rows, dtype=torch.float64)
        return StepDetections(table[:, :2], table[:, 2], table[:, 3].long())


def test_a_method_registered_in_a_test_file_trains_registers_and_predicts(toy_store, tmp_path):
    _, ann, store = toy_store
    assert "framewise" in method_names()
    sets = {
        "seed": 0,
        "dataset": "toy",
        "run_dir": str(tmp_path / "run"),
        "model.name": "framewise",
        "model.hidden": 16,
        "training.epochs": 8,
        "training.batch_size": 4,
        "training.lr": 0.01,
        "training.warmup_epochs": 1,
        "training.eval_every": 4,
        "features.modalities": "[rgb, flow]",
    }
    config = load_config(None, [f"{k}={v}" for k, v in sets.items()])
    torch.set_num_threads(2)
    outcome = run_training(config, ann, store, None, num_workers=0, log=lambda _m: None)
    # the in-process loop uses training.cpus_per_worker threads (1), not torch's default
    assert torch.get_num_threads() == config.training.cpus_per_worker == 1

    # trained and evaluated through the shared loop, tracked and registered under its name
    assert outcome.metrics["val_average_mAP"] > 0.3, outcome.metrics
    assert outcome.metrics["bce"] < 0.3
    rows = list_versions(outcome.tracking_uri, "toy-framewise")
    assert [r.aliases for r in rows] == [[CHAMPION]]

    # the checkpoint rebuilds the method's network and predicts as training evaluated, with
    # training.cpus_per_worker threads too (tal infer)
    torch.set_num_threads(2)
    detections, facts = infer_from_checkpoint(
        tmp_path / "run" / "model" / "checkpoint.pt", ann, store, "validation"
    )
    assert torch.get_num_threads() == 1
    assert facts.result is not None and len(detections) > 0
    assert facts.result.average_mAP == outcome.metrics["val_average_mAP"]

    # the packaged model (what the registry holds) predicts the same detections
    state = load_checkpoint(tmp_path / "run" / "model" / "checkpoint.pt")
    packaged = PackagedLocalizer.from_checkpoint_state(state)
    annotations = load_annotations(ann)
    dataset = FeatureDataset(store, annotations, ["validation"], LabelMap(packaged.label_names))
    again = packaged.predict_dataset(dataset)
    assert again.video_ids.tolist() == detections.video_ids.tolist()
    assert again.score.tolist() == detections.score.tolist()

    # so does the registered model, rebuilt from its tensor-only files by the method's name,
    # and a model directory packaged from the checkpoint with `tal package`
    registered = load_packaged("models:/toy-framewise@champion", outcome.tracking_uri)
    assert registered.predict_dataset(dataset).score.tolist() == detections.score.tolist()
    folder = tmp_path / "packaged"
    checkpoint = tmp_path / "run" / "model" / "checkpoint.pt"
    assert cli(["package", "--checkpoint", str(checkpoint), "--output", str(folder)]) == 0
    from_dir = load_packaged(str(folder)).predict_dataset(dataset)
    assert from_dir.score.tolist() == detections.score.tolist()

"""The training loop of the localizer: plain PyTorch, one process or data parallel.

Every epoch walks the cross-video pairs: with inter-video attention on, the two videos of a
pair go through the model together and both get losses; with it off (the ActionFormer-style
baseline, intra-only) the same videos go through one by one, so that every variant sees the
same data. AdamW with linear warm-up and cosine decay per step, gradient clipping, an EMA of
the weights (evaluated and saved), sigmoid focal + DIoU losses with centre sampling, mixed
precision on GPU, a checkpoint after every epoch (resumable), evaluation with the project's
evaluator every ``training.eval_every`` epochs and after the last.

Under a process group (Ray Train or torchrun set it up; this module never imports them) the
model is wrapped in DDP, each rank takes its share of every global batch
(``ShardedBatchSampler``), the loss normaliser counts the positives of all ranks, and rank 0
evaluates, saves and writes: a run on N workers takes the same steps as on one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from features.extractor import pick_device
from features.store import FeatureStore
from tal.config import ExperimentConfig, config_from_dict, dump_config
from tal.data.annotations import AnnotationSet, load_annotations
from tal.data.dataset import FeatureDataset, PairDataset, collate_pairs, open_store
from tal.data.predictions import Detections, write_predictions
from tal.data.sampler import ShardedBatchSampler
from tal.engine.asl_loss import ActionSensitiveLoss
from tal.engine.checkpoint import load_checkpoint, save_checkpoint
from tal.engine.co2net_loss import CO2NetLoss
from tal.engine.distributed import DistContext
from tal.engine.ema import ModelEMA
from tal.engine.inference import PartnerBank, PostprocessSettings, predict
from tal.engine.losses import LocalizationLoss
from tal.engine.schedule import warmup_cosine
from tal.evaluation.detection import DetectionResult, evaluate_detection
from tal.models import Localizer, build_model
from tal.pairs import build_pairs, read_pairs

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Python, numpy and torch generators; deterministic kernels where torch has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def uses_partner(config: ExperimentConfig) -> bool:
    return config.model.takes_partner


@dataclass
class TrainData:
    """Everything the loop reads: datasets, pairs, label names, input width."""

    annotations: AnnotationSet
    store: FeatureStore
    train: FeatureDataset
    train_full: FeatureDataset  # uncropped, for the partner bank
    val: FeatureDataset
    pairs: PairDataset
    label_names: list[str]
    in_dim: int
    notes: list[str] = field(default_factory=list)


def load_data(
    config: ExperimentConfig,
    annotations_path: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    pairs_path: str | os.PathLike[str] | None,
) -> TrainData:
    """Datasets over the store; pairs from ``pairs_path`` or built in memory if absent."""
    annotations = load_annotations(annotations_path)
    label_map = annotations.label_map()
    store = open_store(store_path)
    modalities = list(config.features.modalities)
    common = {
        "label_map": label_map, "modalities": modalities, "seed": config.seed,
        "weak": is_weak(config),
    }  # fmt: skip
    train = FeatureDataset(
        store,
        annotations,
        list(config.data.train_subsets),
        max_seq_len=config.model.max_seq_len,
        training=True,
        **common,
    )
    train_full = FeatureDataset(store, annotations, list(config.data.train_subsets), **common)
    val = FeatureDataset(store, annotations, [config.evaluation.subset], **common)
    notes = []
    if pairs_path is not None and Path(pairs_path).is_file():
        table = read_pairs(pairs_path)
        notes.append(f"pairs: {table.num_rows} from {pairs_path}")
    else:
        result = build_pairs(
            annotations,
            subsets=tuple(config.data.train_subsets),
            per_video=config.pairs.per_video,
            seed=config.pairs.seed,
            available=store.completed(),
        )
        table = result.table
        notes.append(f"pairs built in memory: {result.summary()}")
    pairs = PairDataset(train, table)
    in_dim = int(train[0].feats.shape[0])
    return TrainData(
        annotations, store, train, train_full, val, pairs, list(label_map.names), in_dim, notes
    )


def is_weak(config: ExperimentConfig) -> bool:
    """Trained from video-level labels only (CO2-Net): no segment is read for training."""
    return config.model.name == "co2net"


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and kernels only (not biases, norms, scales)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class Trainer:
    """Model, optimiser, schedule, EMA and loss state of one run; ``fit`` runs the epochs."""

    def __init__(
        self,
        config: ExperimentConfig,
        data: TrainData,
        output_dir: str | os.PathLike[str],
        log: Callable[[str], None] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.config, self.data = config, data
        self.output_dir = Path(output_dir)
        self.say = log or logger.info
        self.dist = DistContext.current()
        seed_everything(config.seed)
        if device is None:
            try:
                device = pick_device("cuda" if config.training.use_gpu else "cpu")
            except RuntimeError as exc:
                raise RuntimeError(f"training.use_gpu is true: {exc}") from None
        self.device = device
        self.divisible_by = Localizer.divisible_by(config.model)  # CO2-Net: any multiple
        num_classes = len(data.label_names)
        self.model = build_model(config.model, data.in_dim, num_classes).to(self.device)
        self.ema = ModelEMA(self.model, config.training.ema_decay)
        t = config.training
        loss_args = {"center_radius": t.center_radius, "reg_weight": t.reg_weight}
        self.weak = is_weak(config)
        if self.weak:
            self.criterion: torch.nn.Module = CO2NetLoss(config.model.co2net)
        elif config.model.name == "asl":
            self.criterion = ActionSensitiveLoss(num_classes, config.model.asl, **loss_args)
        else:
            self.criterion = LocalizationLoss(num_classes, **loss_args)
        # what runs forward and backward: the model itself, or its DDP wrapper, which
        # averages gradients over the ranks during backward
        self.network: torch.nn.Module = self.model
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=ids)
            if not self.weak:  # CO2-Net's terms are per-rank means: DDP's average is right
                self.criterion.reduce_count = lambda n: self.dist.sum([n], self.device)[0]
        self.sampler = ShardedBatchSampler(
            len(data.pairs), t.batch_size, self.dist.rank, self.dist.world_size, config.seed
        )
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, t.weight_decay), lr=t.lr)
        self.steps_per_epoch = len(self.sampler)
        self.scheduler = warmup_cosine(
            self.optimizer, t.warmup_epochs * self.steps_per_epoch, t.epochs * self.steps_per_epoch
        )
        self.amp = self.device.type == "cuda" and t.amp
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []
        self.bank: PartnerBank | None = None

    # ------------------------------------------------------------------ one epoch

    def loader(self, epoch: int) -> DataLoader:
        """This rank's share of each global batch of pairs in ``epoch``."""
        self.data.train.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        return DataLoader(
            self.data.pairs,
            batch_sampler=self.sampler,
            collate_fn=partial(collate_pairs, divisible_by=self.divisible_by),
        )

    def step(self, batch_a: dict, batch_b: dict) -> dict[str, float]:
        """Forward, loss, backward and update on one batch of pairs."""
        dev = self.device
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.amp):
            if self.weak:
                losses = self._weak_losses(batch_a, batch_b)
            elif uses_partner(self.config):
                out = self.network(
                    batch_a["feats"].to(dev),
                    batch_a["masks"].to(dev),
                    batch_b["feats"].to(dev),
                    batch_b["masks"].to(dev),
                )
                segs = batch_a["segments"] + batch_b["segments"]
                labels = batch_a["labels"] + batch_b["labels"]
                losses = self.criterion(_join_streams(out), _to(segs, dev), _to(labels, dev))
            else:
                feats, masks, segs, labels = _stack_pair(batch_a, batch_b)
                out = self.network(feats.to(dev), masks.to(dev))
                losses = self.criterion(out, _to(segs, dev), _to(labels, dev))
        self.optimizer.zero_grad(set_to_none=True)
        # each rank's loss is its share of the global batch's sum over the global normaliser;
        # DDP averages gradients, so scale by the world size to get the gradient of the total
        scale = 1 if self.weak else self.dist.world_size
        (losses["loss"] * scale).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.config.training.grad_clip
        )
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        return {k: float(v.detach()) for k, v in losses.items() if k != "num_pos"} | {
            "grad_norm": float(grad_norm)
        }

    def _weak_losses(self, batch_a: dict, batch_b: dict) -> dict:
        """CO2-Net on both sides of the pairs as one batch, from video-level labels; row i
        and row B + i share a class (the co-activity pairs)."""
        feats, masks, _, labels = _stack_pair(batch_a, batch_b)
        out = self.network(feats.to(self.device), masks.to(self.device))
        multi_hot = torch.zeros(len(labels), len(self.data.label_names), device=self.device)
        for row, video_labels in enumerate(labels):
            multi_hot[row, video_labels.to(self.device)] = 1.0
        half = len(batch_a["video_ids"])
        pairs = [
            (i, half + i) for i in range(half) if batch_a["video_ids"][i] != batch_b["video_ids"][i]
        ]
        return self.criterion(out, multi_hot, pairs)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the pairs; mean losses, learning rate and samples (videos) per
        second, over all ranks."""
        self.network.train()
        sums: dict[str, float] = {}
        batches, samples = 0, 0
        start = time.perf_counter()
        for batch_a, batch_b in self.loader(epoch):
            for k, v in self.step(batch_a, batch_b).items():
                sums[k] = sums.get(k, 0.0) + v
            batches += 1
            samples += 2 * len(batch_a["video_ids"])
        seconds = time.perf_counter() - start
        # the losses of one step add up over the ranks; the gradient norm is the same on all
        keys = [k for k in sums if k != "grad_norm"]
        totals = self.dist.sum([sums[k] for k in keys] + [float(samples)], self.device)
        sums.update(zip(keys, totals[:-1], strict=True))
        samples = int(totals[-1])
        row = {k: v / max(batches, 1) for k, v in sums.items()}
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["samples_per_second"] = samples / seconds if seconds > 0 else 0.0
        row["seconds"] = seconds
        return row

    # ------------------------------------------------------------------ evaluation

    def partner_bank(self) -> PartnerBank:
        if self.bank is None:
            self.bank = PartnerBank.build(
                self.data.train_full, self.config.inference.bank_per_class,
                self.config.model.max_seq_len,
            )  # fmt: skip
        return self.bank

    def predict(self, dataset: FeatureDataset, partner: str | None = None) -> Detections:
        partner = partner or self.config.model.inference_partner
        bank = self.partner_bank() if partner == "bank" else None
        return predict(
            self.ema.module,
            dataset,
            self.data.label_names,
            self.divisible_by,
            self.device,
            partner=partner,
            bank=bank,
            post=PostprocessSettings.from_config(self.config.inference),
            uses_partner=uses_partner(self.config),
        )

    def evaluate(self, partner: str | None = None) -> tuple[DetectionResult, Detections]:
        detections = self.predict(self.data.val, partner)
        result = evaluate_detection(
            self.data.annotations,
            detections,
            self.config.evaluation.subset,
            self.config.evaluation.tiou_thresholds,
        )
        return result, detections

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        # kept whenever the model takes a partner, so that either policy can run from it
        needs_bank = uses_partner(self.config)
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "ema_updates": self.ema.updates,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "criterion": self.criterion.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "config": json.loads(json.dumps(self.config.model_dump(mode="json"))),
            "label_names": list(self.data.label_names),
            "in_dim": self.data.in_dim,
            "modalities": list(self.config.features.modalities),
            "feature_attrs": _plain(self.data.store.attrs),
            "history": self.history,
            "bank": self.partner_bank().to_state() if needs_bank else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"], int(state["ema_updates"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.criterion.load_state_dict(state["criterion"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    # ------------------------------------------------------------------ the run

    def fit(self, on_epoch: EpochCallback | None = None) -> dict[str, Any]:
        """Train from ``self.epoch`` to ``training.epochs``; returns the final metrics.

        Rank 0 evaluates, saves the checkpoint after every epoch and writes the outputs; every
        rank then calls ``on_epoch(row, checkpoint)`` (the path on rank 0, else None), which
        is where a launcher reports progress. Other ranks return ``{"history": ...}``.
        """
        t = self.config.training
        main = self.dist.is_main
        ckpt = self.output_dir / "checkpoint.pt"
        result: DetectionResult | None = None
        detections: Detections | None = None
        start = time.perf_counter()
        for epoch in range(self.epoch + 1, t.epochs + 1):
            row: dict[str, Any] = {"epoch": epoch, **self.train_epoch(epoch)}
            if main and (epoch % t.eval_every == 0 or epoch == t.epochs):
                result, detections = self.evaluate()
                row["val_average_mAP"] = result.average_mAP
                for tiou, value in zip(result.tiou, result.mAP, strict=True):
                    row[f"val_mAP_{tiou:.2f}"] = value
            self.epoch = epoch
            self.history.append(row)
            if main:
                save_checkpoint(self.state(), ckpt)
                self.say(_epoch_line(row, t.epochs))
            if on_epoch is not None:
                on_epoch(row, ckpt if main else None)
        if not main:
            return {"history": self.history}
        if result is None or detections is None:  # resumed after the last epoch
            result, detections = self.evaluate()
        write_predictions(detections, self.output_dir / "predictions.json")
        metrics = {
            "tiou": result.tiou,
            "mAP": result.mAP,
            "average_mAP": result.average_mAP,
            "per_class_ap": result.per_class_ap,
            "subset": self.config.evaluation.subset,
            "inference_partner": self.config.model.inference_partner,
            "epochs": self.epoch,
            "seconds": time.perf_counter() - start,
            "history": self.history,
        }
        (self.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        return metrics


EpochCallback = Callable[[dict[str, Any], Path | None], None]


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    terms = ", ".join(
        f"{name} {row[key]:.3f}"
        for name, key in (("cls", "cls_loss"), ("reg", "reg_loss"),
                          ("sensitivity", "sensitivity_loss"), ("contrastive", "contrastive_loss"),
                          ("mil", "mil"), ("suppressed", "mil_suppressed"),
                          ("co-activity", "coactivity"), ("mutual", "mutual"))
        if key in row
    )  # fmt: skip
    line = (
        f"epoch {row['epoch']}/{epochs}: loss {row['loss']:.3f} ({terms}), lr {row['lr']:.2e}, "
        f"{row['samples_per_second']:.1f} videos/s"
    )
    if "val_average_mAP" in row:
        line += f", val average mAP {row['val_average_mAP']:.4f}"
    return line


def _to(tensors: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [t.to(device) for t in tensors]


def _stack_pair(a: dict, b: dict):
    """One batch of both sides of the pairs, for single-video models (``collate_pairs`` pads
    both sides to the same length)."""
    feats = torch.cat([a["feats"], b["feats"]])
    masks = torch.cat([a["masks"], b["masks"]])
    return feats, masks, a["segments"] + b["segments"], a["labels"] + b["labels"]


def _join_streams(out: dict) -> dict:
    """A paired model's outputs for both videos as one batch, so that the loss (and its
    normaliser) sees each step once, as for single-video models."""
    partner = out["partner"]
    joined = {
        key: [torch.cat([x, y]) for x, y in zip(out[key], partner[key], strict=True)]
        for key in ("cls_logits", "offsets", "masks", "sensitivity")
        if key in out
    }
    if "features" in out:
        joined["features"] = torch.cat([out["features"], partner["features"]])
        joined["class_sensitivity"] = out["class_sensitivity"]
    return joined | {"strides": out["strides"]}


def _plain(value: Any) -> Any:
    """Store attributes as plain JSON data (safe for ``weights_only`` loading)."""
    return json.loads(json.dumps(value, default=str))


def prepare_trainer(
    config: ExperimentConfig,
    annotations: str | os.PathLike[str],
    store: str | os.PathLike[str],
    pairs: str | os.PathLike[str] | None,
    output_dir: str | os.PathLike[str],
    log: Callable[[str], None] | None = None,
    device: torch.device | None = None,
) -> Trainer:
    """Data and a fresh Trainer for ``config``; reports what was left out."""
    say = log or logger.info
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(config))
    data = load_data(config, annotations, store, pairs)
    for note in data.notes:
        say(note)
    if data.train.missing or data.val.missing:
        say(
            f"not in the feature store (left out): {len(data.train.missing)} training, "
            f"{len(data.val.missing)} {config.evaluation.subset} videos"
        )
    trainer = Trainer(config, data, out, log=say, device=device)
    say(
        f"training {config.model.name} (intra {config.model.intra_attention}, inter "
        f"{config.model.inter_attention}) on {len(data.train)} videos / {len(data.pairs)} pairs, "
        f"{data.in_dim}-d features, {len(data.label_names)} classes, device {trainer.device}"
        + (
            f", rank {trainer.dist.rank} of {trainer.dist.world_size}"
            if trainer.dist.active
            else ""
        )
    )
    return trainer


def train_localizer(
    config: ExperimentConfig,
    annotations: str | os.PathLike[str],
    store: str | os.PathLike[str],
    pairs: str | os.PathLike[str] | None,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train as ``config`` says; leaves OUTPUT_DIR/checkpoint.pt, metrics.json, predictions."""
    say = log or logger.info
    trainer = prepare_trainer(config, annotations, store, pairs, output_dir, log=say)
    ckpt = Path(output_dir) / "checkpoint.pt"
    if resume and ckpt.is_file():
        trainer.load_state(load_checkpoint(ckpt))
        say(f"resumed from {ckpt} after epoch {trainer.epoch}")
    return trainer.fit()


def config_from_checkpoint(state: dict[str, Any]) -> ExperimentConfig:
    """The config a checkpoint was trained with."""
    return config_from_dict(state["config"], "checkpoint config")

"""Train the extractor's network for clip recognition: actions plus background, validated on
held-out clips. I3D is fine-tuned (from Kinetics or a checkpoint); ATA (``features.ata``) is
trained from scratch or a checkpoint.

The loop is plain PyTorch (a DataLoader over in-memory clips, AdamW, cross-entropy). Under a
process group (Ray Train, torchrun) the model is wrapped in DDP and each rank takes its share
of every global batch; rank 0 validates and saves. ``on_epoch`` receives each epoch's row and
(on rank 0) a resumable state, which a launcher reports as a checkpoint; ``resume_state``
continues from one. On CPU a run is deterministic for a seed: window sampling, the new
classification layer, shuffling, flips and dropout all draw from seeded generators. The result
is saved in the project's weights format (``features.weights.save_weights``; ATA's meta records
its architecture), which ``tal extract --weights`` loads.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from features.ata import ATAViT
from features.extractor import pick_device, to_network_input
from features.i3d import InceptionI3d
from features.video import VIDEO_EXTENSIONS
from features.weights import load_ata, resolve_i3d, save_weights
from tal.backbone.clips import BackboneError, ClipSet, build_clip_set
from tal.config import ExperimentConfig
from tal.data.annotations import load_annotations
from tal.data.sampler import ShardedBatchSampler
from tal.engine.distributed import DistContext

logger = logging.getLogger(__name__)

# channels-last 3-D tensors: measured here, a training step at 112 px on 2 threads ran 8.3
# clips/s against 6.1 in the default layout
CL = torch.channels_last_3d


@dataclass(frozen=True)
class BackboneTrainConfig:
    """Every setting of one backbone training run, resolved (no config defaults left)."""

    extractor: str = "i3d"
    modality: str = "rgb"
    init: str = "kinetics-rgb"
    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-4
    clips_per_instance: int = 1
    background_ratio: float = 0.5
    seed: int = 0
    bn_momentum: float = 0.1
    device: str = "auto"
    input_size: int = 224
    fps: float | None = None
    clip_length: int = 16
    flow_method: str = "tvl1"
    train_subsets: tuple[str, ...] = ("training",)
    val_subset: str = "validation"
    video_extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    ata: dict[str, Any] = field(default_factory=dict)  # features.ata, for extractor ata

    @classmethod
    def from_experiment(cls, config: ExperimentConfig) -> BackboneTrainConfig:
        """``backbone`` settings, with size, fps, clip length and flow method from ``features``."""
        b, f, d = config.backbone, config.features, config.data
        return cls(
            extractor=f.extractor,
            modality=b.modality,
            init=str(b.init),  # ExperimentConfig fills it from the extractor when unset
            epochs=b.epochs,
            batch_size=b.batch_size,
            lr=b.lr,
            weight_decay=b.weight_decay,
            clips_per_instance=b.clips_per_instance,
            background_ratio=b.background_ratio,
            seed=b.seed,
            bn_momentum=b.bn_momentum,
            device=b.device,
            input_size=b.input_size or f.input_size,
            fps=b.fps if b.fps is not None else f.fps,
            clip_length=f.clip_length,
            flow_method=f.flow_method,
            train_subsets=tuple(d.train_subsets),
            val_subset=d.val_subset,
            video_extensions=tuple(d.video_extensions),
            ata=f.ata.model_dump(),
        )


class ClipDataset(Dataset):
    """In-memory clips as network inputs ``[C, T, S, S]`` in [-1, 1] and their labels."""

    def __init__(self, clips: ClipSet) -> None:
        self.clips, self.labels = clips.clips, clips.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        clip = self.clips[i : i + 1]
        if clip.dtype == np.float16:  # flow is kept as float16 to halve memory
            clip = clip.astype(np.float32)
        return to_network_input(clip)[0], int(self.labels[i])


def random_flip(x: torch.Tensor, modality: str, generator: torch.Generator) -> torch.Tensor:
    """Mirror about half the clips of ``x`` [B, C, T, H, W]; mirrored flow has its x negated."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    if not flip.any():
        return x
    x = x.clone()
    mirrored = x[flip].flip(-1)
    if modality == "flow":
        mirrored[:, 0] = -mirrored[:, 0]
    x[flip] = mirrored
    return x


def train_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    modality: str,
    generator: torch.Generator,
) -> dict[str, float]:
    """One pass over ``loader`` with flips; loss sum, correct and seen clips of this rank."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x = random_flip(x, modality, generator).to(device, non_blocking=True, memory_format=CL)
        y = y.to(device, non_blocking=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return {"loss_sum": total_loss, "correct": float(correct), "seen": float(seen)}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> dict[str, Any]:
    """Clip accuracy and mean loss, and the predicted class of every clip."""
    model.eval()
    total_loss, preds, labels = 0.0, [], []
    for x, y in loader:
        logits = model(x.to(device, memory_format=CL))
        total_loss += float(F.cross_entropy(logits, y.to(device), reduction="sum"))
        preds.append(logits.argmax(1).cpu())
        labels.append(y)
    pred, true = torch.cat(preds), torch.cat(labels)
    return {
        "loss": total_loss / max(len(true), 1),
        "accuracy": float((pred == true).float().mean()) if len(true) else 0.0,
        "predictions": pred.tolist(),
    }


@dataclass
class BackboneReport:
    """What a backbone training run did; ``to_dict`` is what the CLI and trackers log."""

    output: str
    digest: str
    modality: str
    init_origin: str
    train_clips: int
    val_clips: int
    class_names: list[str]
    train_class_counts: list[int]
    epochs: list[dict[str, float]]
    val_accuracy: float
    seconds: float
    decode_seconds: float
    skipped: list[str] = field(default_factory=list)
    extractor: str = "i3d"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BackboneState(TypedDict):
    """What a backbone run saves after each epoch to resume from (plain data and tensors:
    safe for ``torch.load(weights_only=True)``)."""

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    flips: torch.Tensor
    history: list[dict[str, float]]


EpochCallback = Callable[[dict[str, float], BackboneState | None], None]


def train_backbone(
    video_dir: str | os.PathLike[str],
    annotations_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: BackboneTrainConfig,
    log: Callable[[str], None] | None = None,
    on_epoch: EpochCallback | None = None,
    resume_state: BackboneState | None = None,
    device: torch.device | None = None,
) -> BackboneReport | None:
    """Cut clips, fine-tune I3D on the training subsets, validate, save; returns the report
    (on rank 0; other ranks return None).

    Raises AnnotationError for an unusable annotation file, BackboneError when a subset gives
    no clips or the device is not available, WeightsError for weights that cannot be loaded.
    """
    say = log or logger.info
    t0 = time.perf_counter()
    dist = DistContext.current()
    if device is None:
        try:
            device = pick_device(settings.device)
        except RuntimeError as exc:
            raise BackboneError(f"backbone.device: {exc}") from None
    annotations = load_annotations(annotations_path)

    def clip_set(subsets: list[str]) -> ClipSet:
        return build_clip_set(
            annotations,
            video_dir,
            subsets,
            clip_length=settings.clip_length,
            input_size=settings.input_size,
            fps=settings.fps,
            modality=settings.modality,
            flow_method=settings.flow_method,
            clips_per_instance=settings.clips_per_instance,
            background_ratio=settings.background_ratio,
            seed=settings.seed,
            extensions=settings.video_extensions,
        )

    train_set = clip_set(list(settings.train_subsets))
    val_set = clip_set([settings.val_subset])
    decode_seconds = time.perf_counter() - t0
    skipped = train_set.skipped + val_set.skipped
    say(
        f"clips: {len(train_set)} training, {len(val_set)} validation "
        f"({len(train_set.label_names) - 1} classes + background, {settings.modality}, "
        f"{settings.input_size} px, {settings.clip_length} frames) in {decode_seconds:.1f} s"
        + (f"; skipped {len(skipped)} videos" if skipped else "")
    )

    model, init_meta = build_network(settings, len(train_set.label_names))
    if isinstance(model, InceptionI3d):
        model.to(device, memory_format=CL)  # type: ignore[call-overload]
    else:
        model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    network: torch.nn.Module = model
    if dist.active:  # BatchNorm statistics follow rank 0 (DDP broadcasts buffers)
        from torch.nn.parallel import DistributedDataParallel

        ids = [device] if device.type == "cuda" else None
        network = DistributedDataParallel(model, device_ids=ids)
    sampler = ShardedBatchSampler(  # no short last batch: BatchNorm needs several clips
        len(train_set),
        settings.batch_size,
        dist.rank,
        dist.world_size,
        settings.seed,
        drop_last=True,
    )
    flips = torch.Generator().manual_seed(settings.seed + 1)
    pin = device.type == "cuda"
    train_loader = DataLoader(ClipDataset(train_set), batch_sampler=sampler, pin_memory=pin)
    val_loader = DataLoader(ClipDataset(val_set), settings.batch_size, pin_memory=pin)

    history: list[dict[str, float]] = []
    first = 1
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        flips.set_state(resume_state["flips"])
        history = list(resume_state["history"])
        first = int(resume_state["epoch"]) + 1
        say(f"resumed after epoch {first - 1}")
    for epoch in range(first, settings.epochs + 1):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        part = train_epoch(network, train_loader, optimizer, device, settings.modality, flips)
        loss_sum, correct, seen = dist.sum(
            [part["loss_sum"], part["correct"], part["seen"]], device
        )
        row: dict[str, float] = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
        }
        state: BackboneState | None = None
        if dist.is_main:
            val = evaluate(model, val_loader, device)
            row |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if dist.is_main:
            say(
                f"epoch {epoch}/{settings.epochs}: train loss {row['train_loss']:.3f} "
                f"acc {row['train_accuracy']:.3f}, val loss {row['val_loss']:.3f} "
                f"acc {row['val_accuracy']:.3f} ({row['seconds']:.1f} s)"
            )
            if on_epoch is not None:
                state = BackboneState(
                    epoch=epoch,
                    model=model.state_dict(),
                    optimizer=optimizer.state_dict(),
                    flips=flips.get_state(),
                    history=history,
                )
        if on_epoch is not None:
            on_epoch(row, state)
    if not dist.is_main:
        return None

    val_accuracy = history[-1]["val_accuracy"]
    meta = {
        "origin": (
            f"{'trained' if settings.extractor == 'ata' else 'fine-tuned'} from "
            f"{init_meta.get('origin', settings.init)} on {annotations_path} "
            f"{'+'.join(settings.train_subsets)} subset"
        ),
        "modality": settings.modality,
        "num_classes": len(train_set.label_names),
        "labels": list(train_set.label_names),
        "val_accuracy": val_accuracy,
        "val_subset": settings.val_subset,
        "epochs": settings.epochs,
        "input_size": settings.input_size,
        "fps": settings.fps,
        "clip_length": settings.clip_length,
        "flow_method": settings.flow_method if settings.modality == "flow" else None,
        "init": settings.init,
        "init_digest": init_meta.get("digest"),
        "train_clips": len(train_set),
        "val_clips": len(val_set),
        "seed": settings.seed,
    }
    model.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    if isinstance(model, ATAViT):
        meta |= {"arch": "ata", "ata": dict(model.arch)}
    digest = save_weights(model.state_dict(), output, meta)
    report = BackboneReport(
        output=str(Path(output)),
        digest=digest,
        modality=settings.modality,
        init_origin=str(init_meta.get("origin", settings.init)),
        train_clips=len(train_set),
        val_clips=len(val_set),
        class_names=list(train_set.label_names),
        train_class_counts=class_counts(list(train_set.labels), len(train_set.label_names)),
        epochs=history,
        val_accuracy=val_accuracy,
        seconds=time.perf_counter() - t0,
        decode_seconds=decode_seconds,
        skipped=skipped,
        extractor=settings.extractor,
    )
    return report


def build_network(
    settings: BackboneTrainConfig, num_classes: int
) -> tuple[InceptionI3d | ATAViT, dict[str, Any]]:
    """The network to train, with a fresh ``num_classes`` layer, and its start's meta."""
    model: InceptionI3d | ATAViT
    if settings.extractor == "ata":
        arch = {**settings.ata, "frames": settings.clip_length, "image_size": settings.input_size}
        if settings.init == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(settings.seed)
                model = ATAViT(num_classes, **arch)
            return model, {"origin": f"random initialisation (torch seed {settings.seed})"}
        model, meta = load_ata(settings.init)
        if meta.get("image_pretrained"):  # the image path from the file, the rest fresh
            image = model
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(settings.seed)
                model = ATAViT(num_classes, **arch)
            try:
                model.load_image_state(image.state_dict())
            except ValueError as exc:
                raise BackboneError(f"backbone.init {settings.init}: {exc}") from None
            meta = {
                **meta,
                "origin": f"{meta.get('origin', settings.init)}, + temporal ({arch['temporal']})",
            }
        elif any(model.arch[k] != v for k, v in arch.items()):
            raise BackboneError(
                f"backbone.init {settings.init}: an ATA network {model.arch}, but the config "
                f"asks for {arch}"
            )
    else:
        model, meta = resolve_i3d(settings.init, settings.modality, seed=settings.seed)
        # the running statistics must follow the new data (flow, another domain) within the
        # few hundred steps of a fine-tuning run, or evaluation-mode outputs lag behind
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = settings.bn_momentum
    torch.manual_seed(settings.seed)  # the new layer, dropout
    model.replace_logits(num_classes)
    return model, meta


def class_counts(labels: Sequence[int], num_classes: int) -> list[int]:
    """Clips per class (background last): a quick check of the training set's balance."""
    return np.bincount(np.asarray(labels, np.int64), minlength=num_classes).tolist()

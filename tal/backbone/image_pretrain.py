"""Image pretraining of the ATA network on single frames: which shapes are on screen.

ATA is a plug-in that turns an image-pretrained transformer into a video backbone (the paper
fine-tunes ImageNet ViTs). No image-pretrained ViT can be fetched here, so the same small ViT
(``features.ata.ATAViT``) learns its image path on single frames of a synthetic dataset: each
frame is labelled, from the generator's own plans, with the set of shapes visible in it
(actors, distractors, cues; multi-label, so the network must see every object, not only the
largest). The result is an ATA weights file of a one-frame network marked ``image_pretrained``;
``backbone.init`` accepts it for any number of frames and either temporal attention
(``ATAViT.load_image_state``): the patch embedding, space embedding, spatial attention and
MLPs come from the file, the time embedding and temporal attention start fresh (its output
projection at zero, so each block starts as the image model).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from features.ata import ATAViT
from features.video import center_crop, read_frames, resize_for_crop
from features.weights import save_weights
from tal.backbone.clips import BackboneError
from tal.synth.generate import iter_plans
from tal.synth.plan import VideoPlan

VISIBLE_ALPHA = 0.5
"""A sprite counts as visible from this opacity up (fades in and out)."""


@dataclass
class FrameSet:
    """Single frames ``[N, S, S, 3]`` uint8 and their multi-hot shape labels ``[N, K]``."""

    frames: np.ndarray
    labels: np.ndarray
    shape_names: list[str]
    video_ids: list[str] = field(default_factory=list)


@dataclass
class ImagePretrainReport:
    output: str
    digest: str
    shape_names: list[str]
    train_frames: int
    val_frames: int
    epochs: list[dict[str, float]]
    seconds: float

    @property
    def val_accuracy(self) -> float:
        """Per-label accuracy on validation frames after the last epoch."""
        return self.epochs[-1]["val_label_accuracy"]


def visible_shapes(plan: VideoPlan, frame: int) -> set[str]:
    """Shapes of the sprites of ``plan`` shown in ``frame`` (opaque enough, centre on screen)."""
    shown = set()
    for sprite in plan.sprites:
        if not sprite.f0 <= frame < sprite.f1:
            continue
        k = frame - sprite.f0
        x, y = float(sprite.x[k]), float(sprite.y[k])
        if sprite.alpha[k] >= VISIBLE_ALPHA and 0 <= x < plan.size and 0 <= y < plan.size:
            shown.add(sprite.shape)
    return shown


def build_frame_set(
    synth_root: str | os.PathLike[str],
    subsets: Sequence[str],
    frames_per_video: int,
    input_size: int,
    seed: int = 0,
    shape_names: Sequence[str] | None = None,
) -> FrameSet:
    """``frames_per_video`` frames drawn at random (seeded) from each video of ``subsets`` of
    the synthetic dataset in ``synth_root``, labelled from the generator's plans, which the
    dataset's recorded parameters rebuild. ``shape_names`` fixes the label order (training's)."""
    root = Path(synth_root)
    meta_path = root / "synth.json"
    if not meta_path.is_file():
        raise BackboneError(
            f"{meta_path}: not found; image pretraining labels frames from a `tal synth` "
            "dataset's plans"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    videos: dict[str, Any] = meta["videos"]
    rng = np.random.default_rng([seed, 0x1A6E])
    plans = [plan for _, plan in iter_plans(**meta["params"])]
    if len(plans) != len(videos):
        raise BackboneError(
            f"{meta_path}: {len(videos)} videos recorded, but its parameters plan {len(plans)}"
        )
    picked: list[tuple[str, np.ndarray, list[set[str]]]] = []
    for (video_id, info), plan in zip(videos.items(), plans, strict=True):
        if info["subset"] not in subsets:
            continue
        if plan.frames != info["frames"]:
            raise BackboneError(
                f"{meta_path}: {video_id} has {info['frames']} frames, plan {plan.frames}"
            )
        count = min(frames_per_video, plan.frames)
        frames = np.sort(rng.choice(plan.frames, size=count, replace=False))
        picked.append((video_id, frames, [visible_shapes(plan, int(f)) for f in frames]))
    if not picked:
        raise BackboneError(f"{meta_path}: no videos in subsets {list(subsets)}")
    names = sorted(set().union(*(s for _, _, sets in picked for s in sets)))
    names = list(shape_names) if shape_names is not None else names
    index = {n: i for i, n in enumerate(names)}
    images, labels, ids = [], [], []
    for video_id, frames, sets in picked:
        path = root / videos[video_id]["file"]
        info = videos[video_id]
        dims = resize_for_crop(int(info["width"]), int(info["height"]), input_size)
        images.append(center_crop(read_frames(path, frames, dims), input_size))
        for shown in sets:
            row = np.zeros(len(names), np.float32)
            for shape in shown:
                if shape in index:
                    row[index[shape]] = 1.0
            labels.append(row)
            ids.append(video_id)
    return FrameSet(np.concatenate(images), np.stack(labels), names, ids)


def _batches(frames: FrameSet, batch: int, order: np.ndarray):
    for start in range(0, len(order), batch):
        take = order[start : start + batch]
        x = torch.from_numpy(frames.frames[take]).float().div_(127.5).sub_(1.0)
        yield x.permute(0, 3, 1, 2).unsqueeze(2), torch.from_numpy(frames.labels[take])


@torch.no_grad()
def label_accuracy(model: ATAViT, frames: FrameSet, batch: int = 64) -> float:
    """Fraction of (frame, shape) labels predicted right (logit > 0 means shown)."""
    model.eval()
    right = total = 0
    for x, y in _batches(frames, batch, np.arange(len(frames.labels))):
        right += int(((model(x) > 0).float() == y).sum())
        total += y.numel()
    return right / max(total, 1)


def pretrain_image(
    synth_root: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    arch: dict[str, Any],
    frames_per_video: int = 16,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    train_subsets: Sequence[str] = ("training",),
    val_subset: str = "validation",
    log: Callable[[str], None] | None = None,
) -> ImagePretrainReport:
    """Train a one-frame ATA network (``arch``: ``features.ata`` settings and ``image_size``)
    to name the shapes on screen, and save it as image-pretrained ATA weights."""
    t0 = time.perf_counter()
    size = int(arch["image_size"])
    train = build_frame_set(synth_root, train_subsets, frames_per_video, size, seed)
    val = build_frame_set(
        synth_root, [val_subset], frames_per_video, size, seed + 1, train.shape_names
    )
    settings = {k: v for k, v in arch.items() if k not in ("frames", "temporal")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ATAViT(len(train.shape_names), frames=1, temporal="plain", **settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(train.labels) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=max(steps, 1))
    rng = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum = 0.0
        for x, y in _batches(train, batch_size, rng.permutation(len(train.labels))):
            flip = torch.from_numpy(rng.random(len(y)) < 0.5)
            x[flip] = x[flip].flip(-1)
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(y)
        row = {
            "epoch": float(epoch),
            "loss": loss_sum / len(train.labels),
            "val_label_accuracy": label_accuracy(model, val),
        }
        history.append(row)
        if log is not None:
            log(
                f"image epoch {epoch}/{epochs}: loss {row['loss']:.4f}, validation label "
                f"accuracy {row['val_label_accuracy']:.3f}"
            )
    meta = {
        "origin": f"image-pretrained on single frames of {synth_root} (shapes on screen)",
        "arch": "ata",
        "ata": dict(model.arch),
        "image_pretrained": True,
        "num_classes": len(train.shape_names),
        "labels": list(train.shape_names),
        "val_label_accuracy": history[-1]["val_label_accuracy"],
        "train_frames": len(train.labels),
        "epochs": epochs,
        "seed": seed,
    }
    digest = save_weights(model.state_dict(), output, meta)
    return ImagePretrainReport(
        output=str(output),
        digest=digest,
        shape_names=list(train.shape_names),
        train_frames=len(train.labels),
        val_frames=len(val.labels),
        epochs=history,
        seconds=time.perf_counter() - t0,
    )

"""ATA against the same image backbone with plain temporal attention: action recognition on
trimmed clips cut from the synthetic benchmark's annotations, several seeds.

    python bench/ata_recognition.py [--config configs/demo.yaml] [--seeds 0 1 2]
                                    [--epochs 60] [--frames 8] [--size 32] [--patch 8]

Clips come from the config's training and validation videos (``tal.backbone.clips``, RGB,
``--frames`` frames at the features' fps, ``--size`` pixels, plus background clips). Both
variants are the same small ViT (``tal.backbone.ata.ATAViT``), same seed, same data order;
only the temporal attention differs (along aligned patch trajectories, or at fixed
positions). Prints validation accuracy per seed, mean and spread, and time per variant.
"""

from __future__ import annotations

import argparse
import time

import torch
from seed_table import print_seed_table
from torch.utils.data import DataLoader

from tal.backbone.ata import ATAViT, align_patches
from tal.backbone.clips import build_clip_set
from tal.backbone.train import ClipDataset
from tal.config import load_config
from tal.data.annotations import load_annotations


def run(train, val, classes, args, seed: int, temporal: str) -> float:
    torch.manual_seed(seed)
    model = ATAViT(classes, args.frames, image_size=args.size, patch_size=args.patch,
                   dim=args.dim, depth=args.depth, heads=4, temporal=temporal)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    order = torch.Generator().manual_seed(seed)
    for _ in range(args.epochs):
        model.train()
        for clips, labels in DataLoader(train, batch_size=16, shuffle=True, generator=order):
            loss = torch.nn.functional.cross_entropy(model(clips), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for clips, labels in DataLoader(val, batch_size=32):
            correct += int((model(clips).argmax(1) == labels).sum())
    return correct / len(val)


def moved_fraction(data: ClipDataset, args) -> float:
    """Fraction of patches the first block's alignment moves off their own position, on the
    clips as an untrained aligned model sees them (0: alignment is the identity here)."""
    torch.manual_seed(0)
    model = ATAViT(2, args.frames, image_size=args.size, patch_size=args.patch, dim=args.dim,
                   depth=1, heads=4)  # fmt: skip
    clips = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        b, _, t, h, w = clips.shape
        tokens = model.patch(clips.transpose(1, 2).reshape(b * t, 3, h, w))
        tokens = tokens.flatten(2).transpose(1, 2).reshape(b, t, -1, args.dim)
        perm = align_patches(model.blocks[0].temporal.norm(tokens + model.space + model.time))
    return float((perm != torch.arange(perm.shape[-1])).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    args = parser.parse_args()
    cfg = load_config(args.config)
    annotations = load_annotations(cfg.data.annotations)
    common = {"clip_length": args.frames, "input_size": args.size, "fps": cfg.features.fps}
    train_set = build_clip_set(annotations, cfg.data.videos, list(cfg.data.train_subsets), **common)
    val_set = build_clip_set(annotations, cfg.data.videos, [cfg.data.val_subset], **common)
    classes = len(train_set.label_names)
    print(f"{len(train_set)} training and {len(val_set)} validation clips, {classes} classes "
          f"(background included), {args.frames} frames of {args.size} px", flush=True)  # fmt: skip
    train, val = ClipDataset(train_set), ClipDataset(val_set)
    print(f"the alignment moves {moved_fraction(train, args):.4f} of the training clips' "
          f"patches ({args.patch}-px patches)", flush=True)  # fmt: skip
    scores: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for seed in args.seeds:
        for temporal, label in (("plain", "plain temporal attention"), ("aligned", "ATA")):
            t0 = time.perf_counter()
            accuracy = run(train, val, classes, args, seed, temporal)
            took = time.perf_counter() - t0
            scores.setdefault(label, []).append(accuracy)
            seconds.setdefault(label, []).append(took)
            print(f"seed {seed}: {label}: validation accuracy {accuracy:.3f} ({took:.0f} s)",
                  flush=True)  # fmt: skip
    print(f"\nclip accuracy on {cfg.data.val_subset}, seeds {args.seeds}, {args.epochs} epochs:\n")
    print_seed_table("temporal attention", scores, seconds)


if __name__ == "__main__":
    main()

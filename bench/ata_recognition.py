"""ATA against the same image backbone with plain temporal attention: action recognition on
trimmed clips cut from the synthetic benchmark's annotations, several seeds, with and without
camera motion.

    python bench/ata_recognition.py [--config configs/demo.yaml] [--videos 96] [--seeds 0 1 2]
                                    [--epochs 40] [--frames 8] [--size 32] [--patch 8]
                                    [--pan 0 4] [--clips-per-instance 2] [--no-page]

Clips come from the training and validation videos of a synthetic dataset made with the
config's ``data.synth`` settings but ``--videos`` videos, in ``runs/bench/ata_clips`` (made
once; ``--videos 0``: the config's own dataset): ``tal.backbone.clips`` cuts them in time
(RGB, ``--frames`` frames at the features' fps, plus background clips), and each is cropped
around its actor, from the box the generator recorded (``synth.json``), so that the actor
fills the clip as in a recognition dataset (background clips: a random square of similar
size). ``--whole-frame`` keeps the whole frame instead. ``--pan P`` adds camera
motion: each clip is cut ``size + P * (frames - 1)`` pixels wide and a ``size`` window moves
across it by ``P`` pixels per frame, horizontally and vertically, in a random direction per
clip (seeded), so everything in the frame shifts as it does under a panning camera. Both
variants are the same small ViT (``features.ata.ATAViT``), trained by the backbone training
loop's own epoch and evaluation functions, with the same seed and data order; only the
temporal attention differs (along aligned patch trajectories, or at fixed positions). Prints,
per pan, how many patches the alignment moves, validation accuracy per seed, mean and spread,
and time per variant, and writes the tables to ``docs/results/ata_recognition.md``
(``--no-page``: print only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from results_page import add_page_flag, write_results_page
from seed_table import print_seed_table
from torch.utils.data import DataLoader

from features.ata import ATAViT, align_patches
from pipelines.synth import ensure_synth_dataset
from tal.backbone.clips import ClipSet, build_clip_set
from tal.backbone.train import ClipDataset, evaluate, train_epoch
from tal.config import load_config
from tal.data.annotations import load_annotations


def panned(clips: ClipSet, size: int, pan: int, seed: int) -> ClipSet:
    """``clips`` seen through a ``size`` window that moves ``pan`` px per frame along a random
    diagonal per clip (no motion when ``pan`` is 0)."""
    n, t, side = clips.clips.shape[:3]
    if side != size + pan * (t - 1):
        raise ValueError(f"clips of {side} px cannot pan {pan} px x {t - 1} frames in {size} px")
    rng = np.random.default_rng(seed)
    out = np.empty((n, t, size, size, clips.clips.shape[-1]), clips.clips.dtype)
    travel = pan * (t - 1)
    for i in range(n):
        sx, sy = rng.choice([-1, 1], size=2)
        for f in range(t):
            x = f * pan if sx > 0 else travel - f * pan
            y = f * pan if sy > 0 else travel - f * pan
            out[i, f] = clips.clips[i, f, y : y + size, x : x + size]
    return ClipSet(out, clips.labels, clips.windows, clips.label_names, clips.skipped)


def actor_crops(clips: ClipSet, synth: dict, side: int, seed: int) -> ClipSet:
    """Each clip cropped to a square around its actor's recorded box (1.25 x its longer
    side; background clips: a random square of 24-48 px at 128 px) and resized to ``side``."""
    rng = np.random.default_rng(seed)
    n, t, full = clips.clips.shape[:3]
    out = np.empty((n, t, side, side, clips.clips.shape[-1]), clips.clips.dtype)
    background = len(clips.label_names) - 1
    for i, w in enumerate(clips.windows):
        video = synth["videos"][w.video_id]
        scale, rate = full / video["width"], video["fps"] / w.fps
        box = None
        if w.label != background:  # the instance of this label the window overlaps most
            lo, hi = w.start * rate, (w.start + w.length) * rate
            overlap = [
                (min(hi, b) - max(lo, a), inst["box"])
                for inst in video["instances"]
                if inst["label"] == clips.label_names[w.label]
                for a, b in [inst["action_frames"]]
            ]
            box = max(overlap)[1]
        if box is not None:
            x0, y0, x1, y1 = (v * scale for v in box)
            length = 1.25 * max(x1 - x0, y1 - y0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        else:
            length = rng.uniform(24, 48) * full / 128
            cx, cy = rng.uniform(length / 2, full - length / 2, size=2)
        length = int(min(max(length, 8), full))
        x = int(np.clip(round(cx - length / 2), 0, full - length))
        y = int(np.clip(round(cy - length / 2), 0, full - length))
        crop = torch.from_numpy(clips.clips[i, :, y : y + length, x : x + length]).float()
        crop = torch.nn.functional.interpolate(
            crop.permute(0, 3, 1, 2), size=(side, side), mode="bilinear", antialias=True
        )
        out[i] = crop.permute(0, 2, 3, 1).round().clamp(0, 255).numpy().astype(out.dtype)
    return ClipSet(out, clips.labels, clips.windows, clips.label_names, clips.skipped)


def run(train, val, classes, args, seed: int, temporal: str) -> float:
    torch.manual_seed(seed)
    model = ATAViT(
        classes,
        args.frames,
        image_size=args.size,
        patch_size=args.patch,
        dim=args.dim,
        depth=args.depth,
        heads=4,
        temporal=temporal,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    order, flips = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    loader = DataLoader(train, batch_size=16, shuffle=True, generator=order)
    cpu = torch.device("cpu")
    for _ in range(args.epochs):
        train_epoch(model, loader, optimizer, cpu, "rgb", flips)
    return evaluate(model, DataLoader(val, batch_size=32), cpu)["accuracy"]


def moved_fraction(data: ClipDataset, args) -> float:
    """Fraction of patches the first block's alignment moves off their own position, on the
    clips as an untrained aligned model sees them (0: alignment is the identity here)."""
    torch.manual_seed(0)
    model = ATAViT(
        2, args.frames, image_size=args.size, patch_size=args.patch, dim=args.dim, depth=1, heads=4
    )
    clips = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        perm = align_patches(model.blocks[0].temporal.norm(model.tokens(clips)))
    return float((perm != torch.arange(perm.shape[-1])).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument(
        "--pan",
        type=int,
        nargs="+",
        default=[0, 4],
        help="camera pan in px per frame; one table per value",
    )
    parser.add_argument("--videos", type=int, default=96)
    parser.add_argument("--clips-per-instance", type=int, default=2)
    parser.add_argument("--whole-frame", action="store_true", help="no crop around the actor")
    add_page_flag(parser, "ata_recognition")
    args = parser.parse_args()
    sets = []
    if args.videos:
        sets = [f"data.synth.videos={args.videos}", "data.root=runs/bench/ata_clips"]
    cfg = load_config(args.config, sets)
    if args.videos:
        ensure_synth_dataset(cfg)
    annotations = load_annotations(cfg.data.annotations)
    synth = json.loads((Path(cfg.data.root) / "synth.json").read_text())
    cut = {
        "clip_length": args.frames,
        "fps": cfg.features.fps,
        "clips_per_instance": args.clips_per_instance,
    }
    whole = {}  # full-frame clips, cut once
    if not args.whole_frame:
        for name, subsets in (
            ("train", list(cfg.data.train_subsets)),
            ("val", [cfg.data.val_subset]),
        ):
            whole[name] = build_clip_set(
                annotations, cfg.data.videos, subsets, input_size=synth["params"]["size"], **cut
            )
    sections: list[str] = []  # per pan: what the page shows
    for pan in args.pan:
        side = args.size + pan * (args.frames - 1)
        datasets = {}
        for name, subsets, seed in (
            ("train", list(cfg.data.train_subsets), 0),
            ("val", [cfg.data.val_subset], 1),
        ):
            if args.whole_frame:
                clips = build_clip_set(
                    annotations, cfg.data.videos, subsets, input_size=side, **cut
                )
            else:
                clips = actor_crops(whole[name], synth, side, seed)
            datasets[name] = ClipDataset(panned(clips, args.size, pan, seed))
            classes = len(clips.label_names)
        train, val = datasets["train"], datasets["val"]
        about = (
            f"pan {pan} px/frame: {len(train)} training and {len(val)} validation clips, "
            f"{classes} classes (background included), {args.frames} frames of {args.size} px; "
            f"the alignment moves {moved_fraction(train, args):.3f} of the training clips' "
            f"patches ({args.patch}-px patches)"
        )
        print(f"\n{about}", flush=True)
        scores: dict[str, list[float]] = {}
        seconds: dict[str, list[float]] = {}
        for seed in args.seeds:
            for temporal, label in (("plain", "plain temporal attention"), ("aligned", "ATA")):
                t0 = time.perf_counter()
                accuracy = run(train, val, classes, args, seed, temporal)
                took = time.perf_counter() - t0
                scores.setdefault(label, []).append(accuracy)
                seconds.setdefault(label, []).append(took)
                print(
                    f"seed {seed}: {label}: validation accuracy {accuracy:.3f} ({took:.0f} s)",
                    flush=True,
                )
        heading = (
            f"clip accuracy on {cfg.data.val_subset}, pan {pan} px/frame, seeds "
            f"{args.seeds}, {args.epochs} epochs:"
        )
        print(f"\n{heading}\n")
        table = print_seed_table("temporal attention", scores, seconds)
        sections.append(
            "\n\n".join(
                [f"## Pan {pan} px/frame", about[0].upper() + about[1:] + ".", heading, table]
            )
        )
    if not args.no_page:
        crop = "the whole frame" if args.whole_frame else "cropped around the actor"
        write_results_page(
            "ata_recognition",
            "ATA against plain temporal attention: clip recognition",
            "\n\n".join(
                [
                    "The same small ViT (`features.ata.ATAViT`), trained from scratch with the "
                    "same seed and data order for clip recognition on trimmed clips of the "
                    f"synthetic benchmark ({crop}); only the temporal attention differs: "
                    "along aligned patch trajectories (ATA) or at fixed positions (plain).",
                    *sections,
                ]
            ),
        )


if __name__ == "__main__":
    main()

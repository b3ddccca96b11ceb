"""Linear probe of I3D weights on held-out trimmed clips of the synthetic benchmark.

    python bench/linear_probe.py [--config configs/demo.yaml] [--videos 48]
                                 [--set key=value ...] [--out runs/bench/probe] [--no-page]

On a synthetic dataset made with the config's ``data.synth`` settings but ``--videos`` videos
(generated once under ``--out``) and the config's ``features`` and ``backbone`` settings
(two windows per action instance), fine-tunes the RGB stream from the
Kinetics weights and trains the flow stream from its cross-modality start with
``tal.backbone.train_backbone`` (validated on the validation subset), then fits a logistic
regression on the pooled features of the training subset's trimmed clips (actions plus
background) and scores it on the test subset's clips, which neither the backbones nor the
probes have seen. Prints one row per weights: random, Kinetics RGB, fine-tuned RGB, and for
flow random, cross-modality start and trained, plus both trained streams concatenated, and
writes the table to ``docs/results/linear_probe.md`` (``--no-page``: print only).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from results_page import Transcript, add_page_flag, write_results_page

from features.weights import resolve_i3d
from pipelines.synth import ensure_synth_dataset
from tal.backbone.clips import build_clip_set
from tal.backbone.probe import clip_features, linear_probe
from tal.backbone.train import BackboneTrainConfig, train_backbone
from tal.config import load_config
from tal.data.annotations import load_annotations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/bench/probe", help="dataset and trained weights")
    parser.add_argument("--videos", type=int, default=48, help="synthetic videos")
    parser.add_argument(
        "--reuse", action="store_true", help="keep trained weights already in --out"
    )
    add_page_flag(parser, "linear_probe")
    args = parser.parse_args()
    say = Transcript()  # the lines that go on the page (per-epoch training logs do not)

    out = Path(args.out)
    overrides = [
        f"data.root={out / 'data'}",
        f"data.synth.videos={args.videos}",
        "backbone.clips_per_instance=2",
        *args.set,
    ]
    config = load_config(args.config, overrides)
    annotations_path = ensure_synth_dataset(config)
    videos = Path(config.data.videos)
    base = BackboneTrainConfig.from_experiment(config)
    out.mkdir(parents=True, exist_ok=True)
    say(
        f"settings: {base.input_size} px, {base.clip_length} frames at {base.fps} fps, flow "
        f"{base.flow_method}, {base.epochs} epochs, batch {base.batch_size}, lr {base.lr}, "
        f"torch threads {torch.get_num_threads()}"
    )

    trained: dict[str, Path] = {}
    for modality in ("rgb", "flow"):
        settings = dataclasses.replace(base, modality=modality, init="kinetics-rgb")
        path = out / f"i3d_{modality}_trained.pt"
        trained[modality] = path
        if args.reuse and path.is_file():
            say(f"reusing {path}")
            continue
        report = train_backbone(videos, annotations_path, path, settings, log=print)
        say(
            f"trained {modality}: {report.train_clips} clips, validation clip accuracy "
            f"{report.val_accuracy:.3f}, {report.seconds:.0f} s -> {path}"
        )

    annotations = load_annotations(annotations_path)
    clips = {}
    for modality in ("rgb", "flow"):
        clip_args = {
            "clip_length": base.clip_length,
            "input_size": base.input_size,
            "fps": base.fps,
            "modality": modality,
            "flow_method": base.flow_method,
            "clips_per_instance": base.clips_per_instance,
            "background_ratio": base.background_ratio,
            "seed": base.seed,
            "extensions": base.video_extensions,
        }
        train = build_clip_set(annotations, videos, base.train_subsets, **clip_args)
        test = build_clip_set(annotations, videos, [config.data.test_subset], **clip_args)
        clips[modality] = (train, test)
    train_rgb, test_rgb = clips["rgb"]
    num_classes = len(train_rgb.label_names)
    say(
        f"probe clips: {len(train_rgb)} training ({'+'.join(base.train_subsets)}), "
        f"{len(test_rgb)} held-out ({config.data.test_subset}), {num_classes} classes "
        f"(background included; majority class {np.bincount(test_rgb.labels).max() / len(test_rgb):.3f})"
    )

    rows = [
        ("random", "rgb", "random"),
        ("Kinetics-400", "rgb", "kinetics-rgb"),
        ("fine-tuned from Kinetics", "rgb", str(trained["rgb"])),
        ("random", "flow", "random"),
        ("cross-modality start", "flow", "kinetics-rgb"),
        ("trained from cross-modality", "flow", str(trained["flow"])),
    ]
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    groups = np.array([w.video_id for w in train_rgb.windows])
    say("\n| weights | stream | held-out accuracy | train accuracy | L2 (CV) | digest |")
    say("|---|---|---|---|---|---|")
    for name, modality, spec in rows:
        t0 = time.perf_counter()
        model, meta = resolve_i3d(spec, modality, seed=base.seed)
        train, test = clips[modality]
        xtr = clip_features(model, train.clips, base.batch_size)
        xte = clip_features(model, test.clips, base.batch_size)
        res = linear_probe(xtr, train.labels, xte, test.labels, num_classes, groups=groups)
        feats[f"{modality}:{spec}"] = (xtr, xte)
        say(
            f"| {name} | {modality} | {res.accuracy:.3f} | {res.train_accuracy:.3f} | "
            f"{res.l2:g} | {meta['digest'][:12]} |  ({time.perf_counter() - t0:.0f} s)"
        )
    assert np.array_equal(clips["rgb"][0].labels, clips["flow"][0].labels)
    rgb_tr, rgb_te = feats[f"rgb:{trained['rgb']}"]
    flow_tr, flow_te = feats[f"flow:{trained['flow']}"]
    both = linear_probe(
        np.concatenate([rgb_tr, flow_tr], 1),
        train_rgb.labels,
        np.concatenate([rgb_te, flow_te], 1),
        test_rgb.labels,
        num_classes,
        groups=groups,
    )
    say(
        f"| fine-tuned RGB + trained flow (2048) | both | {both.accuracy:.3f} | "
        f"{both.train_accuracy:.3f} | {both.l2:g} | - |"
    )
    if not args.no_page:
        table_start = next(i for i, line in enumerate(say.lines) if line.startswith("| weights"))
        notes = [line for line in say.lines[:table_start] if line]
        write_results_page(
            "linear_probe",
            "Linear probe of I3D weights on held-out trimmed clips",
            "\n\n".join(
                [
                    "Logistic regression (L2 chosen by cross-validation over training videos) on "
                    "pooled clip features of the synthetic benchmark's training subset, scored on "
                    "clips of its test subset, which neither the backbones nor the probes saw.",
                    "\n".join(f"- {line}" for line in notes),
                    # the table as printed, without the probe's time after each row
                    "\n".join(line.rsplit("|", 1)[0] + "|" for line in say.lines[table_start:]),
                ]
            ),
        )


if __name__ == "__main__":
    main()

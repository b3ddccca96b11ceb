"""ATA in the paper's setting: an image-pretrained ViT fine-tuned with ATA or with plain
temporal attention from the same image weights, then I2Net on its features; on the `camera`
and `standard` presets, 3 seeds, test average mAP with bootstrap intervals.

    python bench/ata_pretraining.py [--presets camera standard] [--seeds 0 1 2]
                                    [--variants ...] [--scale 0.3]
                                    [--image-epochs 12] [--frames-per-video 24]
                                    [--suite-out runs/bench/suite]
                                    [--out runs/bench/ata_pretraining] [--fresh] [--no-page]

Per preset (its dataset is the methods suite's, ``SUITE_OUT/PRESET/data``, generated if
missing) and seed: ``tal.backbone.image_pretrain`` trains the one-frame ViT to name the
shapes on screen in single training frames (labels from the generator's plans), once; every
variant then starts from that file (``backbone.init``), so the variants differ only in their
temporal attention:

- ``ata``: aligned temporal attention, patches matched on content (our default);
- ``ata-position``: aligned, matched with the learned position embedding added (the former
  match, which tends to keep patches in place);
- ``plain``: temporal attention at fixed patch positions (divided space-time attention);
- ``ata-scratch``: ATA as ``ata`` but from random weights, no image pretraining (what
  ``configs/demo_ata.yaml`` does).

Each variant fine-tunes the backbone for clip recognition (``tal train-backbone``'s loop,
I2Net on ATA's recipe ``configs/demo_ata.yaml``, the suite's training length rule with
``--scale``), extracts its features and trains I2Net on them; test is scored from the last
epoch, nothing selected. Runs are recorded (``suite.json``) and reused when their settings are
unchanged, and go to the MLflow experiment ``suite`` of the suite's store. The page
``docs/results/ata_pretraining.md`` gives each variant's backbone clip accuracy on validation,
its test average mAP with a 95% bootstrap interval over test videos and seeds, and the paired
differences ATA - plain, ATA - ATA matched with positions and ATA - ATA from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from methods_suite import (
    Finished,
    Plan,
    checked_match,
    preset_config,
    reading,
    recorded_run,
    run_settings,
    signed,
    training_videos,
)
from results_page import add_page_flag, write_results_page
from seed_table import mean_std

from features.weights import read_weights
from pipelines.synth import ensure_synth_dataset
from tal.backbone.image_pretrain import pretrain_image
from tal.config import ExperimentConfig, load_config
from tal.data.annotations import load_annotations
from tal.evaluation.bootstrap import MethodIntervals, bootstrap_intervals


@dataclass(frozen=True)
class Variant:
    label: str
    overrides: tuple[str, ...]
    image: bool = True
    """Fine-tuned from the seed's image weights (else from random weights)."""


VARIANTS = {
    "ata-scratch": Variant(
        "ATA from random weights (no image pretraining)",
        ("features.ata.temporal=aligned", "features.ata.match=content"),
        image=False,
    ),
    "ata": Variant(
        "ATA (aligned, matched on content)",
        ("features.ata.temporal=aligned", "features.ata.match=content"),
    ),
    "ata-position": Variant(
        "ATA matched with position embeddings",
        ("features.ata.temporal=aligned", "features.ata.match=with_position"),
    ),
    "plain": Variant("plain temporal attention", ("features.ata.temporal=plain",)),
}
COMPARISONS = (("ata", "plain"), ("ata", "ata-position"), ("ata", "ata-scratch"))
IMAGE_RECORD = "image.json"


@dataclass
class ImageRecord:
    path: str
    settings: list[str]
    val_label_accuracy: float
    train_frames: int
    seconds: float


def image_weights(
    data_root: Path, out: Path, seed: int, arch: dict, args: argparse.Namespace
) -> ImageRecord:
    """The seed's image-pretrained weights (made once, recorded)."""
    folder = out / f"image_seed{seed}"
    settings = [
        str(data_root),
        json.dumps(arch, sort_keys=True),
        f"epochs={args.image_epochs}",
        f"frames_per_video={args.frames_per_video}",
        f"seed={seed}",
    ]
    record = folder / IMAGE_RECORD
    if not args.fresh and record.is_file():
        earlier = ImageRecord(**json.loads(record.read_text(encoding="utf-8")))
        if earlier.settings == settings and Path(earlier.path).is_file():
            return earlier
    folder.mkdir(parents=True, exist_ok=True)
    report = pretrain_image(
        data_root,
        folder / "image_rgb.pt",
        arch=arch,
        frames_per_video=args.frames_per_video,
        epochs=args.image_epochs,
        seed=seed,
    )
    done = ImageRecord(
        report.output, settings, report.val_accuracy, report.train_frames, round(report.seconds, 1)
    )
    record.write_text(json.dumps(asdict(done), indent=1) + "\n", encoding="utf-8")
    print(
        f"image pretraining seed {seed}: {report.train_frames} frames, validation label "
        f"accuracy {report.val_accuracy:.3f} ({report.seconds:.0f} s)",
        flush=True,
    )
    return done


def variant_settings(
    key: str,
    seed: int,
    cfg: ExperimentConfig,
    n_train: int,
    image_path: str,
    args: argparse.Namespace,
    tracking: str,
    run_dir: Path,
) -> list[str]:
    """An ``i2net-ata`` run of the suite's rules with the variant's temporal attention, from
    the seed's image weights (or random ones)."""
    variant = VARIANTS[key]
    init = image_path if variant.image else "random"
    preset = cfg.data.synth.preset if cfg.data.synth is not None else None
    sets = [f"name=ata-{preset}-{key}", *variant.overrides, f"backbone.init={init}", *args.set]
    plan = Plan([], {}, args.seeds, args.scale, sets)  # run_settings reads scale and sets
    return run_settings("i2net-ata", seed, cfg, n_train, plan, args.workers, tracking, run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["camera", "standard"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--scale", type=float, default=0.3)
    parser.add_argument("--image-epochs", type=int, default=12)
    parser.add_argument("--frames-per-video", type=int, default=24)
    parser.add_argument("--workers", type=int, default=0, help="Ray Train workers (0: in process)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--suite-out", default="runs/bench/suite")
    parser.add_argument("--out", default="runs/bench/ata_pretraining")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add_page_flag(parser, "ata_pretraining")
    args = parser.parse_args()
    started = time.perf_counter()
    suite_out, out = Path(args.suite_out).resolve(), Path(args.out).resolve()
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{suite_out / 'mlflow.db'}"
    recipe = load_config("configs/demo_ata.yaml")
    arch = {**recipe.features.ata.model_dump(), "image_size": recipe.features.input_size}
    arch.pop("temporal", None)
    sections, cost = [], 0.0
    for preset in args.presets:
        cfg = preset_config("configs/suite.yaml", preset, suite_out, [])
        ensure_synth_dataset(cfg, log=lambda _m: None)
        ann = load_annotations(cfg.data.annotations)
        n_train = training_videos(ann, cfg)
        runs: dict[str, list[Finished]] = {}
        matched: dict[str, list] = {}
        accuracy: dict[str, list[float]] = {}
        images = []
        for seed in args.seeds:
            image = image_weights(Path(cfg.data.root), out / preset, seed, arch, args)
            images.append(image)
            cost += image.seconds
            for key in args.variants:
                run_dir = out / preset / f"{key}_seed{seed}"
                settings = variant_settings(
                    key, seed, cfg, n_train, image.path, args, tracking, run_dir
                )
                name = f"{preset}: {key} seed {seed}"
                done = recorded_run(settings, run_dir, True, args.workers, args.fresh, name)
                cost += done.seconds
                runs.setdefault(key, []).append(done)
                matched.setdefault(key, []).append(checked_match(ann, run_dir, done))
                _, meta = read_weights(run_dir / "backbone_rgb.pt")
                accuracy.setdefault(key, []).append(float(meta["val_accuracy"]))
        intervals = {iv.name: iv for iv in bootstrap_intervals(matched, resamples=args.resamples)}
        table = [
            "| variant | backbone clip accuracy, validation | test average mAP [95% CI] | "
            "I2Net validation mAP | test per seed | s per run (mean) |",
            "|---|---|---|---|---|---|",
        ]
        for key in args.variants:
            finished = runs[key]
            table.append(
                f"| {VARIANTS[key].label} | {mean_std(accuracy[key])} | "
                f"{intervals[key].average_mAP} | {mean_std([d.validation for d in finished])} | "
                f"{', '.join(f'{d.test:.3f}' for d in finished)} | "
                f"{sum(d.seconds for d in finished) / len(finished):.0f} |"
            )
        diffs = ["| comparison | paired difference [95% CI] | reading |", "|---|---|---|"]
        for a, b in COMPARISONS:
            if a in matched and b in matched:
                pair = {b: matched[b], a: matched[a]}
                iv: MethodIntervals = next(
                    x
                    for x in bootstrap_intervals(pair, baseline=b, resamples=args.resamples)
                    if x.name == a
                )
                assert iv.difference is not None
                diffs.append(
                    f"| {VARIANTS[a].label} - {VARIANTS[b].label} | {signed(iv.difference)} | "
                    f"{reading(iv.difference)} |"
                )
        image_line = (
            f"Image pretraining per seed: validation label accuracy "
            f"{mean_std([i.val_label_accuracy for i in images])} on "
            f"{images[0].train_frames} training frames, {args.image_epochs} epochs."
        )
        text = "\n\n".join([f"### `{preset}`", image_line, "\n".join(table), "\n".join(diffs)])
        print("\n" + text + "\n", flush=True)
        sections.append(text)
    wall = time.perf_counter() - started
    print(f"this invocation {wall:.0f} s; recorded cost {cost:.0f} s", flush=True)
    if args.no_page:
        return
    body = "\n\n".join(
        [
            "The ATA ViT of `configs/demo_ata.yaml` (64 px, 8-frame clips, patch 8, width "
            f"128, depth 2) image-pretrained per seed on single frames ({args.frames_per_video} "
            "per training video, labelled with the shapes on screen), then fine-tuned from "
            "those weights with each temporal attention, features extracted, I2Net trained "
            f"({args.scale} x the recipe's training videos seen, seeds {args.seeds}). Test "
            "average mAP over tIoU 0.3-0.7, mean over seeds; 95% bootstrap intervals over test "
            "videos and seeds; differences paired.",
            *sections,
            f"Time: this invocation {wall:,.0f} s; recorded cost {cost:,.0f} s.",
        ]
    )
    write_results_page("ata_pretraining", "ATA from image-pretrained weights", body)


if __name__ == "__main__":
    main()

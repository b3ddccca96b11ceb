"""The methods suite: every applicable method on every `tal synth` preset, 3 seeds, scored on
test with bootstrap intervals and paired differences to the baseline.

    python bench/methods.py --suite [--presets ...] [--seeds 0 1 2] [--scale 0.3]
                                    [--workers 0] [--resamples 1000] [--out runs/bench/suite]
                                    [--fresh] [--quick] [--no-page] [--set key=value ...]

For each preset (``configs/suite.yaml`` with ``data.synth.preset`` and ``run_dir`` set) the
dataset is generated and its I3D RGB + flow features extracted once, into
``OUT/PRESET/features.zarr``; an extraction stopped part way resumes where it stopped, and
every method and seed of the preset reads the same store. Each method then trains with its
own config (``configs/demo*.yaml``) on that store, through ``pipelines.train.run_training``
with MLflow tracking (experiment ``suite``): a fixed recipe, the last epoch kept, nothing
selected on test. Validation is scored at the end of training (logged, reported, never used to
pick); the checkpoint is then run on the test subset, its predictions are saved next to it and
logged to the same MLflow run with ``test_average_mAP``.

Training length: the demo configs' epochs are set for the demo's 14 training videos; here
each method keeps its number of training videos seen, times ``--scale``:
``epochs = ceil(scale x config epochs x 14 / training videos)`` (warm-up likewise, at least
1), so a preset with more videos gets fewer epochs of the same recipe. The default 0.3 is
what the 2.5-hour budget buys on 2 CPU cores: at 0.5 a `standard` seed of the baseline,
I2Net and ASL took 245 s (6 s an epoch for the baseline, twice that for I2Net) and the
projected suite 2.9 hours, about half of it extraction. A method with its own
features (I2Net on ATA) trains its backbone per seed by the same rule
(``backbone.epochs``), then extracts with the suite's number of actors.

Reported per preset, on test: each method's average mAP (mean over seeds) with a 95%
bootstrap interval over test videos and seeds (``tal.evaluation.bootstrap``), its paired
difference to the baseline with its interval, and the validation mean; then, for each
mechanism, its paired difference in the preset made for it. The page goes to
``docs/results/methods.md`` with a bar chart (``methods.png``); ``--quick`` runs a CI-sized
version (two small presets, two methods, two seeds, short training) and writes its page into
``OUT`` instead. Each finished run is recorded in its folder (``suite.json``); running the
same command again reuses every recorded run whose settings are unchanged (``--fresh``:
retrain all), so a suite stopped part way continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from results_page import RESULTS as RESULTS_DIR
from results_page import write_readme_section, write_results_page
from seed_table import mean_std

from pipelines.extract import extract_from_config
from pipelines.train import run_training
from pipelines.train_backbone import run_backbone_training
from tal.config import ExperimentConfig, load_config
from tal.data.annotations import AnnotationSet, load_annotations
from tal.data.dataset import open_store
from tal.data.predictions import load_predictions, write_predictions
from tal.engine.inference import infer_from_checkpoint
from tal.evaluation.bootstrap import Interval, MethodIntervals, bootstrap_intervals
from tal.evaluation.detection import MatchedDetections, evaluate_detection, match_detections
from tal.synth.presets import PRESET_NAMES, get_preset

RECIPE_VIDEOS = 14
"""Training videos the demo configs' epochs were set for (the demo's 24 videos, 60%)."""
RECORD = "suite.json"
EXTRACTION_RECORD = "extraction.json"
TIOU = "[0.3, 0.4, 0.5, 0.6, 0.7]"
"""One set of thresholds for every method of a preset (CO2-Net's own convention adds 0.1-0.2)."""


@dataclass(frozen=True)
class Method:
    label: str
    config: str
    overrides: tuple[str, ...] = ()
    own_features: bool = False
    """Trains its backbone and extracts its own features per seed (ATA)."""


METHODS: dict[str, Method] = {
    "baseline": Method("ActionFormer-style baseline", "configs/demo_actionformer.yaml"),
    "i2net": Method("I2Net (intra + inter)", "configs/demo.yaml"),
    "i2net-intra": Method(
        "I2Net, intra-video attention only", "configs/demo.yaml", ("model.inter_attention=false",)
    ),
    "i2net-inter": Method(
        "I2Net, inter-video attention only", "configs/demo.yaml", ("model.intra_attention=false",)
    ),
    "asl": Method("ASL", "configs/demo_asl.yaml"),
    "co2net": Method("CO2-Net (video-level labels only)", "configs/demo_co2net.yaml"),
    "i2net-ata": Method("I2Net on ATA features", "configs/demo_ata.yaml", own_features=True),
}
BASELINE = "baseline"

PRESET_METHODS: dict[str, tuple[str, ...]] = {
    "standard": ("baseline", "i2net", "asl"),
    "context": ("baseline", "i2net", "i2net-intra", "asl"),
    "variation": ("baseline", "i2net", "i2net-inter", "asl"),
    "keyframes": ("baseline", "i2net", "asl"),
    "weak": ("baseline", "i2net", "asl", "co2net"),
    "camera": ("baseline", "i2net", "asl"),
}
"""The methods run on each preset: the fully supervised ones everywhere; the I2Net ablation of
the mechanism a preset is made for; CO2-Net, which learns from video-level labels, on its own
preset (on ``standard``, where every video holds most classes, a first run scored 0.012 for
175 s of training a seed, which the time budget does not buy). ATA is a backbone: its comparison on ``camera`` and ``standard`` (from scratch,
from image weights, against plain temporal attention) is ``bench/ata_pretraining.py``, which
trains ``i2net-ata`` runs with this module's rules."""


@dataclass(frozen=True)
class Mechanism:
    preset: str
    method: str
    reference: str
    what: str


MECHANISMS = (
    Mechanism("context", "i2net-intra", "baseline", "I2Net's intra-video attention"),
    Mechanism("variation", "i2net-inter", "baseline", "I2Net's inter-video attention"),
    Mechanism("keyframes", "asl", "baseline", "ASL's action sensitivity"),
    Mechanism(
        "weak",
        "co2net",
        "baseline",
        "CO2-Net from video-level labels, against the fully supervised baseline",
    ),
)


@dataclass
class Finished:
    """One trained run, as recorded in its folder."""

    validation: float
    test: float
    seconds: float
    """Wall time: training, and for own-feature methods backbone training and extraction."""
    run_id: str
    settings: list[str]
    predictions: str
    """Test predictions (ActivityNet JSON), relative to the run folder."""


@dataclass
class Extraction:
    """A preset's dataset and features."""

    videos: int
    instances: dict[str, int]
    seconds_of_video: float
    features: int
    extract_seconds: float
    """Sum of the per-video extraction times in the store's manifest."""
    wall_seconds: float | None = None
    """Wall time of synthesis + extraction when this suite did it all in one go."""


@dataclass
class Plan:
    presets: list[str]
    methods: dict[str, tuple[str, ...]]
    seeds: list[int]
    scale: float
    sets: list[str] = field(default_factory=list)
    """Overrides for every config (``--quick`` adds its small sizes)."""


def epochs_for(config_epochs: int, training_videos: int, scale: float) -> int:
    """The config's epochs for ``RECIPE_VIDEOS`` videos, rescaled to keep videos seen x scale."""
    return max(1, math.ceil(scale * config_epochs * RECIPE_VIDEOS / max(training_videos, 1)))


def preset_config(base: str, preset: str, out: Path, sets: list[str]) -> ExperimentConfig:
    return load_config(base, [f"data.synth.preset={preset}", f"run_dir={out / preset}", *sets])


def ensure_features(config: ExperimentConfig, log: Callable[[str], None]) -> Extraction:
    """Generate and extract the preset once (resuming a stopped extraction); its record."""
    run_dir = Path(config.run_dir)
    record = run_dir / EXTRACTION_RECORD
    t0 = time.perf_counter()
    summary = extract_from_config(config, log=log)
    wall = time.perf_counter() - t0
    if summary.failed:
        raise RuntimeError(f"{config.features.store}: {summary.failed} videos failed to extract")
    earlier = (
        Extraction(**json.loads(record.read_text(encoding="utf-8"))) if record.is_file() else None
    )
    rows = open_store(config.features.store).manifest().to_pylist()
    ann = load_annotations(config.data.annotations)
    instances = {s: 0 for s in ("training", "validation", "test")}
    for video in ann.videos.values():
        instances[video.subset] = instances.get(video.subset, 0) + len(video.instances)
    fresh = summary.skipped == 0 and summary.done == summary.total
    extraction = Extraction(
        videos=len(rows),
        instances=instances,
        seconds_of_video=round(sum(v.duration or 0.0 for v in ann.videos.values()), 1),
        features=sum(int(r["num_features"] or 0) for r in rows),
        extract_seconds=round(sum(float(r["seconds"] or 0.0) for r in rows), 1),
        wall_seconds=round(wall, 1) if fresh else (earlier.wall_seconds if earlier else None),
    )
    record.write_text(json.dumps(asdict(extraction), indent=1) + "\n", encoding="utf-8")
    return extraction


def training_videos(ann: AnnotationSet, config: ExperimentConfig) -> int:
    subsets = set(config.data.train_subsets)
    return sum(1 for v in ann.videos.values() if v.subset in subsets)


def run_settings(
    key: str,
    seed: int,
    preset_cfg: ExperimentConfig,
    n_train: int,
    plan: Plan,
    workers: int,
    tracking: str,
    run_dir: Path,
) -> list[str]:
    """The config file and overrides of one run (also what makes a record reusable)."""
    method = METHODS[key]
    recipe = load_config(method.config, list(method.overrides))
    epochs = epochs_for(recipe.training.epochs, n_train, plan.scale)
    warmup = min(epochs - 1, epochs_for(recipe.training.warmup_epochs, n_train, plan.scale))
    store = [f"features.store={preset_cfg.features.store}"]
    if method.own_features:  # its backbone, trained for the same videos seen, one actor
        store = [
            f"features.weights={run_dir / 'backbone_rgb.pt'}",
            f"backbone.seed={seed}",
            f"backbone.epochs={epochs_for(recipe.backbone.epochs, n_train, plan.scale)}",
            f"backbone.num_workers={workers}",
            f"features.num_actors={preset_cfg.features.num_actors}",
        ]
    preset = preset_cfg.data.synth.preset if preset_cfg.data.synth is not None else None
    return [
        method.config,
        f"name=suite-{preset}-{key}",  # the MLflow run's name: suite-PRESET-METHOD-train-...
        f"data.root={preset_cfg.data.root}",
        "data.synth=null",  # the preset's dataset is there; a method run never generates one
        "evaluation.subset=validation",
        f"evaluation.tiou_thresholds={TIOU}",
        *store,
        *method.overrides,
        *plan.sets,
        f"training.epochs={epochs}",
        f"training.warmup_epochs={max(warmup, 0)}",
        f"training.eval_every={epochs}",
        f"training.num_workers={workers}",
        f"training.cpus_per_worker={max(1, (os.cpu_count() or 2) // max(workers, 1))}",
        f"seed={seed}",
        f"run_dir={run_dir}",
        "tracking.experiment=suite",
        f"tracking.tracking_uri={tracking}",
    ]


def train_one(
    settings: list[str], own_features: bool, workers: int, log: Callable[[str], None]
) -> Finished:
    config = load_config(settings[0], settings[1:])
    run_dir = Path(config.run_dir)
    t0 = time.perf_counter()
    if own_features:
        run_backbone_training(
            config, run_dir / "backbone_rgb.pt", num_workers=workers, register=False, log=log
        )
        extract_from_config(config, overwrite=True, log=log)
    outcome = run_training(config, num_workers=workers, register=False, log=log)
    checkpoint = outcome.output / "checkpoint.pt"
    detections, facts = infer_from_checkpoint(checkpoint, None, None, "test")
    seconds = time.perf_counter() - t0
    assert facts.result is not None, "the test subset has ground truth"
    predictions = write_predictions(detections, run_dir / "test_predictions.json")
    _log_test(outcome.tracking_uri, outcome.run_id, facts.result.average_mAP, predictions)
    return Finished(
        validation=outcome.metrics["val_average_mAP"],
        test=facts.result.average_mAP,
        seconds=round(seconds, 1),
        run_id=outcome.run_id,
        settings=settings,
        predictions=predictions.name,
    )


def _log_test(tracking_uri: str, run_id: str, value: float, predictions: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    client.log_metric(run_id, "test_average_mAP", value)
    client.log_artifact(run_id, str(predictions), "test")


def run_cell(
    key: str,
    seed: int,
    preset: str,
    preset_cfg: ExperimentConfig,
    n_train: int,
    plan: Plan,
    args: argparse.Namespace,
    tracking: str,
) -> Finished:
    run_dir = (Path(args.out) / preset / f"{key}_seed{seed}").resolve()
    settings = run_settings(key, seed, preset_cfg, n_train, plan, args.workers, tracking, run_dir)
    name = f"{preset}: {key} seed {seed}"
    return recorded_run(
        settings, run_dir, METHODS[key].own_features, args.workers, args.fresh, name
    )


def recorded_run(
    settings: list[str], run_dir: Path, own_features: bool, workers: int, fresh: bool, name: str
) -> Finished:
    """The run recorded in ``run_dir`` when its settings are these (unless ``fresh``), else
    train it and record it."""
    record = run_dir / RECORD
    if not fresh and record.is_file():
        earlier = Finished(**json.loads(record.read_text(encoding="utf-8")))
        if earlier.settings == settings and (run_dir / earlier.predictions).is_file():
            print(f"{name}: reused {record}", flush=True)
            return earlier
    done = train_one(settings, own_features, workers, lambda _m: None)
    record.write_text(json.dumps(asdict(done), indent=1) + "\n", encoding="utf-8")
    print(
        f"{name}: test {done.test:.4f}, validation {done.validation:.4f} "
        f"({done.seconds:.0f} s, MLflow run {done.run_id})",
        flush=True,
    )
    return done


def checked_match(ann: AnnotationSet, run_dir: Path, done: Finished) -> MatchedDetections:
    """The run's saved test predictions, matched for the bootstrap, once they are shown to
    give the recorded test score (a stale folder is caught here)."""
    tious = json.loads(TIOU)
    predictions = load_predictions(run_dir / done.predictions)
    result = evaluate_detection(ann, predictions, "test", tious)
    if abs(result.average_mAP - done.test) > 1e-9:
        raise RuntimeError(
            f"{run_dir}: predictions score {result.average_mAP}, recorded {done.test}"
        )
    return match_detections(ann, predictions, "test", tious)


def reading(difference: Interval | None) -> str:
    """Gain, loss or no difference shown, from where a difference's interval lies."""
    if difference is None:
        return ""
    if difference.low > 0:
        return "gain"
    if difference.high < 0:
        return "loss"
    return "no difference shown"


def signed(iv: Interval) -> str:
    """A difference and its interval with signs: ``+0.012 [-0.010, +0.035]``."""
    return f"{iv.estimate:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]"


def preset_table(
    keys: tuple[str, ...], intervals: dict[str, MethodIntervals], runs: dict[str, list[Finished]]
) -> list[str]:
    lines = [
        "| method | test average mAP [95% CI] | difference to the baseline [95% CI] | "
        "reading | validation (mean ± std) | test per seed | s per run (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in keys:
        iv, done = intervals[key], runs[key]
        diff = "-" if iv.difference is None else signed(iv.difference)
        seconds = sum(d.seconds for d in done) / len(done)
        lines.append(
            f"| {METHODS[key].label} | {iv.average_mAP} | {diff} | {reading(iv.difference)} | "
            f"{mean_std([d.validation for d in done])} | "
            f"{', '.join(f'{d.test:.3f}' for d in done)} | {seconds:.0f} |"
        )
    return lines


def bar_chart(
    path: Path, presets: list[str], results: dict[str, dict[str, MethodIntervals]]
) -> Path:
    """Grouped bars: each preset's methods, test average mAP with the 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in METHODS if any(k in results[p] for p in presets)]
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(presets) + 2), 4.0))
    for i, key in enumerate(keys):
        xs, ys, lo, hi = [], [], [], []
        for j, p in enumerate(presets):
            if key in results[p]:
                iv = results[p][key].average_mAP
                xs.append(j - 0.4 + (i + 0.5) * width)
                ys.append(iv.estimate)
                lo.append(iv.estimate - iv.low)
                hi.append(iv.high - iv.estimate)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=METHODS[key].label)
    ax.set_xticks(range(len(presets)), presets)
    ax.set_ylabel("test average mAP (tIoU 0.3-0.7)")
    ax.set_ylim(0, 1)
    ax.set_title("test average mAP, mean of seeds, 95% bootstrap interval", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


QUICK_SETS = ["data.synth.videos=10", "data.synth.size=64"]
QUICK_PRESETS = ["standard", "weak"]
QUICK_METHODS = ("baseline", "i2net")


def build_plan(args: argparse.Namespace) -> Plan:
    presets = list(args.presets or (QUICK_PRESETS if args.quick else PRESET_NAMES))
    methods = {}
    for p in presets:
        keys = PRESET_METHODS[p]
        if args.methods:
            keys = tuple(k for k in keys if k in args.methods)
        if args.quick:
            keys = tuple(k for k in keys if k in QUICK_METHODS)
        if BASELINE not in keys:
            keys = (BASELINE, *keys)
        methods[p] = keys
    seeds = args.seeds if args.seeds is not None else ([0, 1] if args.quick else [0, 1, 2])
    scale = args.scale if args.scale is not None else (0.05 if args.quick else 0.3)
    return Plan(presets, methods, seeds, scale, [*(QUICK_SETS if args.quick else []), *args.set])


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--suite")
    group.add_argument("--presets", nargs="+", choices=PRESET_NAMES, default=None)
    group.add_argument(
        "--scale",
        type=float,
        default=None,
        help="training videos seen, as a fraction of the demo recipes' (default 0.3)",
    )
    group.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (1000)")
    group.add_argument("--fresh", action="store_true", help="retrain runs already recorded")
    group.add_argument("--quick", action="store_true", help="CI-sized: page written into --out")


def run_suite(args: argparse.Namespace) -> None:
    """``bench/methods.py --suite``: see the module docstring."""
    started = time.perf_counter()
    plan = build_plan(args)
    out = Path(args.out if args.out != "runs/bench/methods" else "runs/bench/suite").resolve()
    args.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    base = "configs/suite.yaml" if args.config == "configs/demo.yaml" else args.config
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out / 'mlflow.db'}"
    resamples = args.resamples or (100 if args.quick else 1000)
    print(
        f"suite: presets {', '.join(plan.presets)}; seeds {plan.seeds}; scale {plan.scale}; "
        f"{args.workers} Ray Train workers (0: in process); MLflow {tracking}",
        flush=True,
    )

    extractions: dict[str, Extraction] = {}
    results: dict[str, dict[str, MethodIntervals]] = {}
    runs_of: dict[str, dict[str, list[Finished]]] = {}
    mechanism_rows: list[str] = []
    sections: list[str] = []
    for preset in plan.presets:
        cfg = preset_config(base, preset, out, plan.sets)
        extraction = ensure_features(cfg, log=lambda _m: None)
        extractions[preset] = extraction
        print(
            f"{preset}: {extraction.videos} videos, {extraction.seconds_of_video:.0f} s, "
            f"{extraction.features} features; extraction {extraction.extract_seconds:.0f} s",
            flush=True,
        )
        ann = load_annotations(cfg.data.annotations)
        n_train = training_videos(ann, cfg)
        runs: dict[str, list[Finished]] = {}
        matched: dict[str, list[MatchedDetections]] = {}
        for key in plan.methods[preset]:
            for seed in plan.seeds:
                done = run_cell(key, seed, preset, cfg, n_train, plan, args, tracking)
                run_dir = out / preset / f"{key}_seed{seed}"
                runs.setdefault(key, []).append(done)
                matched.setdefault(key, []).append(checked_match(ann, run_dir, done))
        intervals = {
            iv.name: iv
            for iv in bootstrap_intervals(matched, baseline=BASELINE, resamples=resamples)
        }
        results[preset], runs_of[preset] = intervals, runs
        table = preset_table(plan.methods[preset], intervals, runs)
        print(f"\n{preset} (test):\n" + "\n".join(table) + "\n", flush=True)
        sections.append(f"### `{preset}`\n\n{get_preset(preset).summary}.\n\n" + "\n".join(table))
        for m in MECHANISMS:
            if m.preset == preset and m.method in matched and m.reference in matched:
                mechanism_rows.append(mechanism_row(m, matched, resamples))

    wall = time.perf_counter() - started
    cost = sum(e.extract_seconds for e in extractions.values()) + sum(
        d.seconds for r in runs_of.values() for done in r.values() for d in done
    )
    print(
        f"suite: this invocation {wall:.0f} s; recorded cost (extraction + every run) "
        f"{cost:.0f} s = {cost / 3600:.2f} h",
        flush=True,
    )
    if args.no_page:
        return
    results_dir = out if args.quick else None
    chart = bar_chart((results_dir or RESULTS_DIR) / "methods.png", plan.presets, results)
    body = page_body(
        plan, extractions, results, sections, mechanism_rows, chart.name, wall, cost, args
    )
    write_results_page("methods", "The methods compared: the suite", body, results_dir=results_dir)
    if args.quick:
        return
    if plan.presets != list(PRESET_NAMES) or plan.seeds != [0, 1, 2]:
        print("README not updated: its headline comes from every preset with seeds 0 1 2")
        return
    write_readme_section("methods", readme_body(plan, results, mechanism_rows))


def mechanism_row(m: Mechanism, matched: dict[str, list[MatchedDetections]], resamples: int) -> str:
    """The mechanism's paired difference (its method against its reference) as a table row."""
    pair = {m.reference: matched[m.reference], m.method: matched[m.method]}
    diff = next(
        iv.difference
        for iv in bootstrap_intervals(pair, baseline=m.reference, resamples=resamples)
        if iv.name == m.method
    )
    assert diff is not None
    return (
        f"| {m.what} | `{m.preset}` | {METHODS[m.method].label} vs "
        f"{METHODS[m.reference].label} | {signed(diff)} | {reading(diff)} |"
    )


def overview_table(presets: list[str], results: dict[str, dict[str, MethodIntervals]]) -> str:
    """Methods by presets: each cell the test mean with its 95% interval (the README's table)."""
    keys = [k for k in METHODS if any(k in results[p] for p in presets)]
    lines = [
        "| method | " + " | ".join(f"`{p}`" for p in presets) + " |",
        "|---|" + "---|" * len(presets),
    ]
    for key in keys:
        cells = []
        for p in presets:
            iv = results[p][key].average_mAP if key in results[p] else None
            cells.append("-" if iv is None else f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]")
        lines.append(f"| {METHODS[key].label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mechanism_table(rows: list[str]) -> str:
    head = [
        "| mechanism | preset | comparison | paired difference [95% CI] | reading |",
        "|---|---|---|---|---|",
    ]
    return "\n".join([*head, *rows])


def readme_body(
    plan: Plan, results: dict[str, dict[str, MethodIntervals]], mechanism_rows: list[str]
) -> str:
    """The README's headline: the overview table and each mechanism in its preset."""
    return "\n\n".join(
        [
            f"Test average mAP [95% CI], seeds {' '.join(map(str, plan.seeds))}, "
            f"{plan.scale} x the recipes' training videos seen:",
            overview_table(plan.presets, results),
            "Each mechanism in the preset made for it (paired difference on test):",
            mechanism_table(mechanism_rows),
        ]
    )


def page_body(
    plan: Plan,
    extractions: dict[str, Extraction],
    results: dict[str, dict[str, MethodIntervals]],
    sections: list[str],
    mechanism_rows: list[str],
    chart: str,
    wall: float,
    cost: float,
    args: argparse.Namespace,
) -> str:
    presets = [
        "| preset | videos | seconds of video | instances training / validation / test | "
        "features | extraction s (sum of videos) | methods |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in plan.presets:
        e = extractions[p]
        n = e.instances
        presets.append(
            f"| `{p}` | {e.videos} | {e.seconds_of_video:,.0f} | {n.get('training', 0)} / "
            f"{n.get('validation', 0)} / {n.get('test', 0)} | {e.features:,} | "
            f"{e.extract_seconds:,.0f} | {', '.join(plan.methods[p])} |"
        )
    configs = "\n".join(
        f"- {m.label}: `{m.config}`" + (f" with `{' '.join(m.overrides)}`" if m.overrides else "")
        for k, m in METHODS.items()
        if any(k in plan.methods[p] for p in plan.presets)
    )
    return "\n\n".join(
        [
            "Every method on each `tal synth` preset's I3D RGB + flow features (extracted once "
            f"per preset, `configs/suite.yaml`), seeds {plan.seeds}, trained with its own "
            f"config at {plan.scale} x the demo recipes' training videos seen, last epoch "
            "kept, nothing selected on test. Scores: average mAP over tIoU 0.3-0.7 on the "
            "test subset, mean over seeds; the interval is a 95% bootstrap over test videos "
            "and seeds, and the difference to the baseline is paired (the same videos and "
            "seed positions drawn for both). A reading of 'no difference shown' means the "
            "interval contains 0. Runs are in the MLflow experiment `suite` "
            f"(`{Path(args.out).name}/mlflow.db` unless `MLFLOW_TRACKING_URI` is set).",
            "## Test average mAP [95% CI]\n\n" + overview_table(plan.presets, results),
            "## Presets\n\n" + "\n".join(presets),
            "Methods (with the overrides the suite adds: data, store, epochs, seed):\n\n" + configs,
            "## Each mechanism in the preset made for it\n\n" + mechanism_table(mechanism_rows),
            "## Per preset\n\n" + "\n\n".join(sections),
            f"![test average mAP with 95% intervals]({chart})",
            f"Time: this invocation {wall:,.0f} s; the suite's recorded cost (extraction of "
            f"every preset + every run, as recorded when each was done) {cost:,.0f} s "
            f"({cost / 3600:.2f} h) on this machine.",
        ]
    )

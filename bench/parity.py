"""Our methods beside their official implementations, on the same features, splits and seeds:
mAP per tIoU and average (mean ± std over seeds), wall time and training samples/s.

    python bench/parity.py --actionformer PATH [--co2net PATH] [--asl PATH]
                           [--config configs/bench72.yaml] [--seeds 0 1 2] [--threads N]
                           [--width 512] [--epochs 30] [--co2net-epochs 250]
                           [--co2net-seconds cells|evaluator] [--python PYTHON]
                           [--workers 0] [--set key=value ...] [--subset test] [--reuse]
                           [--sides official ours] [--out runs/bench/parity]
                           [--no-page]

PATH is a checkout of the official repository that you provide (it is never copied here and
never edited): ``happyharrycn/actionformer_release``, ``harlanhong/MM2021-CO2-Net``,
``JonnyS1226/ego4d_asl``. For each method given, the features of ``--config``'s store and its
annotations are exported to that code's layout (``bench/parity_io.py``), its training and
inference run through ``bench/parity_shims.py`` (CPU patches at run time), its detections are
converted to our predictions JSON, and our method is trained through
``pipelines.train.run_training`` on the same store, subsets and seed with the same
hyper-parameters (``--set`` overrides of ``configs/demo_actionformer.yaml`` or
``configs/demo_co2net.yaml``, listed in ``actionformer_settings``/``co2net_settings``).
Both are scored by the evaluator of ``tal eval`` on ``evaluation.subset`` at
``evaluation.tiou_thresholds``. The table goes to ``docs/results/parity.md``.

ActionFormer's NMS is a compiled extension; without it the shims run our Python stand-in
(same results, slower: it counts in the official wall time). To run the compiled one, build
it outside both repositories (``cp -r CHECKOUT/libs/utils/{setup.py,csrc} /tmp/nms && cd
/tmp/nms && python setup.py build_ext --inplace``) and put that folder on ``PYTHONPATH``.

Recipes. ActionFormer: its THUMOS14 I3D recipe (``configs/thumos_i3d.yaml``) with the width
(``--width``; 512 there) and the epochs (``--epochs``, 30 after 5 warm-up epochs) adjustable
for a CPU, and the crop scaled to the data: ``max_seq_len`` must be divisible by every
level's stride times its attention window rounded down to even (``s * (w // 2) * 2``), which
with 6 levels (arch ``(2, 2, 5)``) and window 19 is 32 * 18 = 576, the smallest legal crop;
THUMOS uses 4 x 576 = 2304 because its videos are thousands of features long. At inference
the point generator buffers ``max_seq_len * max_buffer_len_factor`` points, so the longest
video (padded to a multiple of 576) must fit in 6 x 576; ``actionformer_crop`` checks it and
takes the next multiple when not. CO2-Net: its THUMOS14 command (``README.md``: ``--lr
0.00005 --k 7 --max-seqlen 500 --max-iter 5000 --weight_decay 0.001``, batch 10 with 3 pairs
of similar videos) with the iterations given as epochs (``--co2net-epochs``; THUMOS14's
5000 x 10 / 200 training videos = 250) and ``max_seqlen`` the longest training video here.
Our trainer's epoch goes over the pairs file, for every method (a partner or not), and its
``batch_size`` counts pairs: with ``pairs.per_video=1`` an epoch sees each training video
about twice, so our epochs are half the official passes over the videos (rounded up) and our
batch is half the official number of videos (``passes``). CO2-Net's similar pairs are drawn
afresh at every step; ours list every same-class video as a partner and draw one per video
each epoch (``training.partner_draw: each_epoch``). CO2-Net's proposals count feature
steps; ``--co2net-seconds`` says how they become seconds (``bench/parity_io.py``).
ASL: the authors' release is built for Ego4D: a fork of ActionFormer whose modeling package
imports ``transformers`` (a modified XLNet backbone built on its internals, a BERT label
branch) at import time, and whose train.py evaluates every epoch after the first third and
keeps the best one on the evaluated subset. Its ``thumos`` loader reads the ActionFormer
layout (seconds to steps by the same formula), so ``--asl`` exports that layout for it and
stops there; running it needs a ``--python`` environment with a ``transformers`` release its
``modeling_xlnet_x.py`` imports from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from parity_io import (
    CO2NET_SECONDS,
    ExportedVideos,
    actionformer_to_detections,
    co2net_to_detections,
    export_actionformer,
    export_co2net,
)
from results_page import add_page_flag, write_results_page

from features.store import FeatureStore
from tal.config import ExperimentConfig, load_config
from tal.data.annotations import load_annotations
from tal.data.predictions import Detections, load_predictions, write_predictions
from tal.evaluation.detection import DetectionResult, evaluate_detection

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass(frozen=True)
class Setting:
    """One hyper-parameter of a parity recipe: the official key and value, and our config key
    (``--set`` path) and value; ``ours=None`` where our config has no such key (our code then
    does what ``note`` says)."""

    official: str
    value: Any
    ours: str | None
    our_value: Any = None
    note: str = ""

    @property
    def ours_value(self) -> Any:
        return self.value if self.our_value is None else self.our_value


@dataclass(frozen=True)
class ActionFormerRecipe:
    """The THUMOS14 I3D recipe's knobs that ``bench/parity.py`` scales to the data."""

    width: int = 512
    epochs: int = 30
    warmup_epochs: int = 5
    levels: int = 6
    window: int = 19
    max_seq_len: int = 576


def smallest_crop(levels: int, window: int, scale: int = 2) -> int:
    """The smallest ``max_seq_len`` ActionFormer accepts: divisible by ``s * (w // 2) * 2`` on
    every level (stride ``s = scale**l``), so the least common multiple of those."""
    out = 1
    for level in range(levels):
        stride = scale**level
        step = stride * (window // 2) * 2 if window > 1 else stride
        out = math.lcm(out, step)
    return out


def actionformer_crop(longest: int, levels: int, window: int, buffer_factor: float = 6.0) -> int:
    """The smallest legal crop whose inference buffer (``crop * buffer_factor`` points) holds
    the longest video once padded to a multiple of the crop's divisor."""
    unit = smallest_crop(levels, window)
    crop = unit
    while math.ceil(longest / unit) * unit > crop * buffer_factor:
        crop += unit
    return crop


def passes(video_passes: int) -> int:
    """Our epochs for ``video_passes`` passes over the training videos: our trainer's epoch
    goes over the pairs file, and with ``pairs.per_video=1`` that is one pair per training
    video, two videos each, so about two passes (rounded up)."""
    return max(1, math.ceil(video_passes / 2))


def actionformer_settings(r: ActionFormerRecipe) -> list[Setting]:
    """Official key -> our key, for ActionFormer (THUMOS14 I3D recipe). Update the ``ours``
    column here when our config grows a key."""
    total = r.epochs + r.warmup_epochs
    return [
        Setting("model.backbone_arch[0]", 2, "model.embed_convs"),
        Setting("model.backbone_arch[1]", 2, "model.stem_blocks"),
        Setting("model.backbone_arch[2]", r.levels - 1, "model.num_levels", r.levels,
                "levels = arch[2] + 1"),
        Setting("(strided conv-attention blocks)", "-", "model.downsample", "in_block"),
        Setting("model.n_mha_win_size", r.window, "model.attention_window"),
        Setting("model.embd_dim", r.width, "model.embed_dim"),
        Setting("model.fpn_dim", r.width, None, note="ours: the embedding width"),
        Setting("model.head_dim", r.width, None, note="ours: the embedding width"),
        Setting("model.n_head", 4, "model.num_heads"),
        Setting("model.fpn_type", "identity", None, note="ours: no FPN convs"),
        Setting("model.fpn_with_ln", True, "model.neck_norm"),
        Setting("model.use_abs_pe", False, "model.abs_pe"),
        Setting("model.max_buffer_len_factor", 6.0, None, note="ours: no point buffer"),
        Setting("dataset.max_seq_len", r.max_seq_len, "model.max_seq_len"),
        Setting("dataset.trunc_thresh", 0.5, "training.trunc_thresh"),
        Setting("dataset.crop_ratio", [0.9, 1.0], "training.crop_ratio"),
        Setting("(truncate_feats max_num_trials)", 200, "training.crop_tries"),
        Setting("(truncate_feats window)", "-", "training.crop_bounds", "actionformer"),
        Setting("train_cfg.dropout", 0.0, "model.dropout"),
        Setting("train_cfg.droppath", 0.1, "model.drop_path"),
        Setting("train_cfg.init_loss_norm", 100, "training.loss_norm_init"),
        Setting("(loss_normalizer_momentum)", 0.9, "training.loss_norm_momentum"),
        Setting("train_cfg.clip_grad_l2norm", 1.0, "training.grad_clip"),
        Setting("train_cfg.cls_prior_prob", 0.01, None),
        Setting("train_cfg.center_sample", "radius", None),
        Setting("train_cfg.center_sample_radius", 1.5, "training.center_radius"),
        Setting("train_cfg.loss_weight", 1.0, "training.reg_weight"),
        Setting("opt.type", "AdamW", "training.optimizer", "adamw"),
        Setting("(make_optimizer decay groups)", "-", "training.weight_decay_on", "modules"),
        Setting("opt.schedule_type", "cosine", "training.schedule"),
        Setting("(LinearWarmupCosineAnnealingLR)", "-", "training.warmup_shape", "actionformer"),
        Setting("opt.learning_rate", 1e-4, "training.lr"),
        Setting("opt.weight_decay", 0.05, "training.weight_decay"),
        Setting("opt.epochs", r.epochs, "training.epochs", passes(total),
                f"theirs: {total} passes over the videos with the warm-up; ours: epochs over "
                "pairs, each about 2 passes"),
        Setting("opt.warmup_epochs", r.warmup_epochs, "training.warmup_epochs",
                passes(r.warmup_epochs)),
        Setting("(ModelEma decay)", 0.999, "training.ema_decay"),
        Setting("(ModelEma warm-up)", False, "training.ema_warmup", True,
                "ours: the EMA's decay warms up; false: as ModelEma, where after n steps the "
                "initial weights keep 0.999**n of the average (46% after 770)"),
        Setting("loader.batch_size", 2, "training.batch_size", 1,
                "ours: pairs, 2 videos each"),
        Setting("(one video per sample)", "-", "pairs.per_video", 1,
                "ours: one pair per training video in an epoch"),
        Setting("test_cfg.pre_nms_thresh", 0.001, "inference.score_threshold"),
        Setting("test_cfg.pre_nms_topk", 2000, "inference.pre_nms_topk"),
        Setting("(pre_nms_topk per level)", "-", "inference.topk_per", "level"),
        Setting("test_cfg.duration_thresh", 0.05, "inference.duration_threshold"),
        Setting("test_cfg.nms_method", "soft", "inference.nms_method"),
        Setting("test_cfg.iou_threshold", 0.1, "inference.iou_threshold"),
        Setting("test_cfg.nms_sigma", 0.5, "inference.nms_sigma"),
        Setting("test_cfg.min_score", 0.001, "inference.min_score"),
        Setting("test_cfg.max_seg_num", 200, "inference.max_detections"),
        Setting("test_cfg.multiclass_nms", True, "inference.multiclass_nms"),
        Setting("test_cfg.voting_thresh", 0.7, "inference.voting_threshold"),
    ]  # fmt: skip


@dataclass(frozen=True)
class CO2NetRecipe:
    """The THUMOS14 command's knobs that ``bench/parity.py`` scales to the data."""

    epochs: int = 250
    max_seqlen: int = 500
    batch_size: int = 10


def co2net_settings(r: CO2NetRecipe, train_videos: int) -> list[Setting]:
    """Official option -> our key, for CO2-Net (its THUMOS14 command)."""
    iterations = max(1, round(r.epochs * train_videos / r.batch_size))
    return [
        Setting("--use-model", "CO2", None),
        Setting("--AWM", "BWA_fusion_dropout_feat_v2", None),
        Setting("--max-iter", iterations, "training.epochs", passes(r.epochs),
                f"theirs: iterations of a batch, {r.epochs} passes over the videos; ours: "
                "epochs over pairs, each about 2 passes"),
        Setting("--batch-size", r.batch_size, "training.batch_size", r.batch_size // 2,
                "ours: pairs, 2 videos each"),
        Setting("--num-similar", 3, "model.coactivity_pairs", 3),
        Setting("(similar pairs: 2 videos of a random class)", "-", "pairs.per_video",
                train_videos - 1, "ours: every video sharing a class listed as a partner"),
        Setting("(drawn anew every step)", "-", "training.partner_draw", "each_epoch",
                "ours: each video once an epoch, its partner drawn anew each epoch"),
        Setting("--max-seqlen", r.max_seqlen, "model.max_seq_len"),
        Setting("(SampleDataset random_perturb)", "-", "model.train_sampling", "perturb"),
        Setting("--lr", 5e-5, "training.lr"),
        Setting("(torch.optim.Adam)", "-", "training.optimizer", "adam"),
        Setting("--weight_decay", 0.001, "training.weight_decay"),
        Setting("(Adam: decay on every parameter)", "-", "training.weight_decay_on", "all"),
        Setting("(constant rate)", "-", "training.schedule", "constant"),
        Setting("(no warm-up)", 0, "training.warmup_epochs"),
        Setting("(no EMA)", "-", "training.ema_decay", 0.0, "ours: EMA of decay 0 = the model"),
        Setting("(no gradient clipping)", "-", "training.grad_clip", 1e9),
        Setting("--k", 7, "model.topk_ratio"),
        Setting("--dropout_ratio", 0.7, "model.dropout"),
        Setting("(BWA dropout)", 0.5, "model.consensus_dropout"),
        Setting("(attention width)", 512, "model.attention_dim"),
        Setting("(fusion width)", "input width", "model.fusion_dim", "null"),
        Setting("--alpha1", 0.8, "model.sparsity_weight"),
        Setting("--alpha2", 0.8, "model.guide_weight"),
        Setting("--alpha3", 1.0, "model.coactivity_weight"),
        Setting("--alpha4", 1.0, "model.mutual_weight"),
        Setting("--proposal_method", "multiple_threshold_hamnet", None),
        Setting("(get_cls_score rat)", 10, "model.score_topk_ratio"),
        Setting("(class score threshold)", 0.2, "model.class_threshold"),
        Setting("--gamma-oic", 0.2, "model.oic_gamma"),
        Setting("(OIC lambda)", 0.25, "model.oic_outer"),
        Setting("(soft_nms sigma)", 0.3, "model.nms_sigma"),
        Setting("--seed", "seed", "seed"),
    ]  # fmt: skip


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def our_overrides(settings: Sequence[Setting]) -> list[str]:
    """The ``--set KEY=VALUE`` overrides of our side (values as YAML)."""
    out = []
    for s in settings:
        if s.ours is None or s.ours == "seed":
            continue
        value = s.ours_value
        out.append(f"{s.ours}={value if isinstance(value, str) else json.dumps(value)}")
    return out


def actionformer_yaml(
    settings: Sequence[Setting],
    export: ExportedVideos,
    json_file: Path,
    feat_folder: Path,
    train_subsets: Sequence[str],
    test_subset: str,
    seed: int,
    output_folder: Path,
) -> dict[str, Any]:
    """ActionFormer's config: its ``thumos`` dataset on the exported files, the settings,
    CPU, one loader worker (its loader needs at least one: persistent workers)."""
    config: dict[str, Any] = {
        "dataset_name": "thumos",
        "devices": ["cpu"],
        "init_rand_seed": seed,
        "train_split": list(train_subsets),
        "val_split": [test_subset],
        "dataset": {
            "json_file": str(json_file),
            "feat_folder": str(feat_folder),
            "file_prefix": None,
            "file_ext": ".npy",
            "num_classes": len(export.label_names),
            "input_dim": export.input_dim,
            "feat_stride": export.timing.stride,
            "num_frames": export.timing.clip_length,
            "default_fps": None,
        },
        "loader": {"num_workers": 1},
        "output_folder": str(output_folder),
    }
    arch: dict[int, int] = {}
    for s in settings:
        if s.official.startswith("("):  # a behaviour, not a key of theirs
            continue
        if s.official.startswith("model.backbone_arch["):
            arch[int(s.official[len("model.backbone_arch[") : -1])] = s.value
            continue
        _set_dotted(config, s.official, s.value)
    if arch:
        config["model"]["backbone_arch"] = [arch[i] for i in sorted(arch)]
    return config


# ---------------------------------------------------------------------- runs


@dataclass
class Score:
    """One run: its mAP per threshold, wall seconds (training + inference) and samples/s."""

    result: DetectionResult
    seconds: float
    samples_per_second: float


@dataclass
class Row:
    label: str
    runs: list[Score] = field(default_factory=list)


def score(config: ExperimentConfig, predictions: Path) -> DetectionResult:
    """What ``tal eval`` prints, for ``predictions`` on ``evaluation.subset``."""
    ground_truth = load_annotations(config.data.annotations, segments="keep")
    return evaluate_detection(
        ground_truth,
        load_predictions(predictions),
        config.evaluation.subset,
        config.evaluation.tiou_thresholds,
    )


PYTHON = [sys.executable]  # the interpreter of the official runs (``--python``)


def run_shim(args: list[str], cwd: Path, threads: int, log: Path) -> float:
    """``bench/parity_shims.py ARGS`` in ``cwd`` with ``--python``, output to ``log``; wall
    seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cwd.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("a", encoding="utf-8") as out:
        proc = subprocess.run(
            [*PYTHON, str(HERE / "parity_shims.py"), *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-15:]
        raise SystemExit(f"official run failed ({log}):\n" + "\n".join(tail))
    return time.perf_counter() - t0


def run_ours(
    config: ExperimentConfig, workers: int, train_videos: int, resume: bool = False
) -> tuple[Path, float, float]:
    """Train and evaluate our method; predictions path, wall seconds, samples/s. With
    ``resume``, an unfinished run in ``config.run_dir`` continues from its last checkpoint
    (training resumes exactly) and the seconds include its earlier epochs' seconds."""
    from pipelines.train import run_training
    from tal.engine.checkpoint import load_checkpoint

    checkpoint = Path(config.run_dir) / "model" / "checkpoint.pt"
    earlier = 0.0
    if resume and checkpoint.is_file():
        earlier = sum(float(r.get("seconds", 0.0)) for r in load_checkpoint(checkpoint).history)
    t0 = time.perf_counter()
    outcome = run_training(
        config, num_workers=workers, register=False, resume=resume, log=lambda _m: None
    )
    seconds = earlier + time.perf_counter() - t0
    history = json.loads((outcome.output / "metrics.json").read_text()).get("history", [])
    train_s = sum(float(r.get("seconds", 0.0)) for r in history)
    samples = sum(
        float(r.get("samples_per_second", 0.0)) * float(r.get("seconds", 0.0)) for r in history
    )
    rate = samples / train_s if train_s > 0 else train_videos * config.training.epochs / seconds
    return outcome.output / "predictions.json", seconds, rate


SIDES = ("official", "ours")
# ActionFormer's official EMA on our side: our default warms the EMA's decay up
# (``training.ema_warmup``), ModelEma does not; this row runs ours with the official EMA, so the
# table has both the like-for-like comparison and what the warm-up adds
OFFICIAL_EMA = "ours-official-ema"
SIDE_OUTPUTS = {
    "official": (
        "official",
        "official_config.yaml",
        "official.log",
        "official_proposals.pkl",
        "official_model.pt",
        "official_predictions.json",
    ),
    "ours": ("ours",),
    OFFICIAL_EMA: (OFFICIAL_EMA,),
}


def side_group(side: str) -> str:
    """The ``--sides`` choice that runs ``side``: every row of ours goes with ``ours``."""
    return "ours" if side.startswith("ours") else side


def fresh_side(run: Path, side: str) -> Path:
    """``run`` without one side's outputs of an earlier run of this bench (ours would resume
    from its checkpoint, theirs evaluate a stale one) nor its record; the other side's stay."""
    for name in SIDE_OUTPUTS[side]:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    record = _read_record(run)
    if side in record:
        del record[side]
        _write_record(run, record)
    run.mkdir(parents=True, exist_ok=True)
    return run


def _write(detections: Detections, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_predictions(detections, path)


SEED_RECORD = "parity_seed.json"


def _read_record(run: Path) -> dict[str, Any]:
    path = run / SEED_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _write_record(run: Path, record: dict[str, Any]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / SEED_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def settings_digest(value: object) -> str:
    """A short digest of what one side runs with (our config's values that differ from the
    defaults, ``our_settings``; the official options): a recorded or unfinished side is
    reused only under the same settings."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def our_settings(config: ExperimentConfig) -> dict[str, Any]:
    """Our side's settings as digested: the config's values that differ from the defaults, so
    that a key added later with a default that keeps the former behaviour does not turn
    recorded runs into strangers."""
    return config.model_dump(exclude_defaults=True)


def finished_side(run: Path, base: ExperimentConfig, side: str, settings: str) -> Score | None:
    """One side (``official`` or ``ours``) of a seed this bench finished earlier in ``run``
    (``--reuse``) with the same ``settings`` (``settings_digest``): scored again from its
    recorded predictions, with its recorded times; None when that side did not finish or
    ran with other settings. Each side is recorded when it finishes, so a seed whose official
    run took a session is not run again in the next. A record older than the digests (no
    ``settings``) is taken as it is, and says so."""
    entry = _read_record(run).get(side)
    if entry is None:
        return None
    if "settings" not in entry:
        print(f"{run.name}: {side}: recorded without its settings digest; taken as it is")
    elif entry["settings"] != settings:
        print(f"{run.name}: {side}: recorded with other settings; run again", flush=True)
        return None
    return Score(
        score(base, Path(entry["predictions"])),
        float(entry["seconds"]),
        float(entry["samples_per_second"]),
    )


def record_side(run: Path, side: str, predictions: Path, result: Score, settings: str) -> None:
    """Mark one side of the seed in ``run`` finished: its predictions file, times and
    settings digest."""
    record = _read_record(run)
    record[side] = {
        "predictions": str(predictions.resolve()),
        "seconds": result.seconds,
        "samples_per_second": result.samples_per_second,
        "settings": settings,
    }
    _write_record(run, record)


def reused(
    run: Path,
    base: ExperimentConfig,
    side: str,
    row: Row,
    args: argparse.Namespace,
    settings: str,
) -> bool:
    """With ``--reuse``, add the recorded ``side`` of the seed in ``run`` to ``row`` when it
    ran with ``settings``; False when it has to run. Before it runs its earlier outputs are
    cleared, except that with ``--reuse`` an unfinished run of ours started with the same
    settings stays, to be resumed (``run_ours``); the official code cannot resume."""
    if args.reuse:
        done = finished_side(run, base, side, settings)
        if done is not None:
            row.runs.append(done)
            print(f"{run.name}: {row.label}: reused the finished run", flush=True)
            return True
        started = _read_record(run).get("started", {}).get(side)
        if (
            side_group(side) == "ours"
            and started == settings
            and (run / side / "latest_train.json").is_file()
        ):
            print(f"{run.name}: {row.label}: resuming the unfinished run", flush=True)
            return False
    fresh_side(run, side)
    record = _read_record(run)
    record.setdefault("started", {})[side] = settings
    _write_record(run, record)
    return False


def to_run(
    run: Path,
    base: ExperimentConfig,
    side: str,
    row: Row,
    args: argparse.Namespace,
    settings: str,
) -> bool:
    """Whether ``side`` of the seed in ``run`` runs now: a side left out of ``--sides``
    never does (with ``--reuse`` its finished run still joins ``row``); the others as
    ``reused`` says."""
    if side_group(side) in args.sides:
        return not reused(run, base, side, row, args, settings)
    done = finished_side(run, base, side, settings) if args.reuse else None
    if done is not None:
        row.runs.append(done)
    print(f"{run.name}: {row.label}: not in --sides, {'reused' if done else 'left out'}")
    return False


def say_seed(seed: int, rows: Sequence[Row], before: Sequence[int]) -> None:
    """Each row's average mAP of this seed: its run added since it held ``before`` runs, or
    ``-`` when its side was left out."""
    parts = []
    for row, count in zip(rows, before, strict=True):
        last = row.runs[-1] if len(row.runs) > count else None
        parts.append(f"{row.label} {last.result.average_mAP:.4f}" if last else f"{row.label} -")
    print(f"seed {seed}: " + ", ".join(parts), flush=True)


def parity_actionformer(
    checkout: Path, base: ExperimentConfig, args: argparse.Namespace, out: Path
) -> tuple[list[Row], list[Setting], list[str]]:
    store = FeatureStore.open(base.features.store)
    annotations = load_annotations(base.data.annotations, segments="keep")
    subset = base.evaluation.subset
    export = export_actionformer(
        store, annotations, out / "export", [*base.data.train_subsets, subset]
    )
    lengths = {vid: store.meta(vid)["num_features"] for vid in export.subsets}
    crop = actionformer_crop(max(lengths.values()), 6, 19)
    recipe = ActionFormerRecipe(width=args.width, epochs=args.epochs, max_seq_len=crop)
    settings = actionformer_settings(recipe)
    train_videos = len([v for v, s in export.subsets.items() if s in base.data.train_subsets])
    official, ours = Row("ActionFormer, official code"), Row("ActionFormer, ours")
    official_ema = Row("ActionFormer, ours with the official EMA (`training.ema_warmup=false`)")
    for seed in args.seeds:
        run = (out / f"seed{seed}").resolve()
        before = (len(official.runs), len(ours.runs), len(official_ema.runs))
        cfg = actionformer_yaml(
            settings,
            export,
            export.json_file.resolve(),
            export.feat_folder.resolve(),
            base.data.train_subsets,
            subset,
            seed,
            run / "official",
        )
        config = our_config("configs/demo_actionformer.yaml", base, settings, args, seed, run)
        config_ema = our_config(
            "configs/demo_actionformer.yaml",
            base,
            settings,
            args,
            seed,
            run,
            side=OFFICIAL_EMA,
            variant=["training.ema_warmup=false"],
        )
        theirs_digest, ours_digest = settings_digest(cfg), settings_digest(our_settings(config))
        ema_digest = settings_digest(our_settings(config_ema))
        if to_run(run, base, "official", official, args, theirs_digest):
            cfg_path = run / "official_config.yaml"
            cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            log = run / "official.log"
            train_s = run_shim(
                ["actionformer-train", str(checkout), str(cfg_path), "parity"],
                run,
                args.threads,
                log,
            )
            ckpt_dir = run / "official" / "official_config_parity"
            eval_s = run_shim(
                ["actionformer-eval", str(checkout), str(cfg_path), str(ckpt_dir)],
                run,
                args.threads,
                log,
            )
            results = pickle.loads((ckpt_dir / "eval_results.pkl").read_bytes())
            pred = _write(
                actionformer_to_detections(results, export.label_names),
                run / "official_predictions.json",
            )
            steps = (train_videos // 2) * 2 * (recipe.epochs + recipe.warmup_epochs)
            official.runs.append(Score(score(base, pred), train_s + eval_s, steps / train_s))
            record_side(run, "official", pred, official.runs[-1], theirs_digest)
        if to_run(run, base, "ours", ours, args, ours_digest):
            our_pred, seconds, rate = run_ours(config, args.workers, train_videos, args.reuse)
            ours.runs.append(Score(score(base, our_pred), seconds, rate))
            record_side(run, "ours", our_pred, ours.runs[-1], ours_digest)
        if to_run(run, base, OFFICIAL_EMA, official_ema, args, ema_digest):
            our_pred, seconds, rate = run_ours(config_ema, args.workers, train_videos, args.reuse)
            official_ema.runs.append(Score(score(base, our_pred), seconds, rate))
            record_side(run, OFFICIAL_EMA, our_pred, official_ema.runs[-1], ema_digest)
        say_seed(seed, (official, ours, official_ema), before)
    notes = [f"ActionFormer crop (max_seq_len) {crop}: the smallest legal one for 6 levels and "
             f"window 19, longest video here {max(lengths.values())} features."]  # fmt: skip
    notes.append(
        "ActionFormer, ours runs with our EMA warm-up (`training.ema_warmup: true`, our default); "
        "the official `ModelEma` applies its decay 0.999 from the first step, which the row with "
        "the official EMA copies (the recipe configs `configs/thumos14_actionformer.yaml` and "
        "`configs/anet13_actionformer.yaml` set it too)."
    )
    return [official, ours, official_ema], settings, notes


def our_config(
    method_config: str,
    base: ExperimentConfig,
    settings: Sequence[Setting],
    args: argparse.Namespace,
    seed: int,
    run: Path,
    side: str = "ours",
    variant: Sequence[str] = (),
) -> ExperimentConfig:
    """Our method's config on the base config's data, store and evaluation, with the
    recipe's overrides, then the user's ``--set``, then the row's ``variant`` overrides; it
    runs in ``run / side``."""
    tious = json.dumps(list(base.evaluation.tiou_thresholds))
    subsets = json.dumps(list(base.data.train_subsets))
    overrides = [
        f"data.root={base.data.root}",
        f"data.annotations={base.data.annotations}",
        f"data.train_subsets={subsets}",
        f"evaluation.subset={base.evaluation.subset}",
        f"evaluation.tiou_thresholds={tious}",
        f"features.store={base.features.store}",
        *our_overrides(settings),
        f"training.cpus_per_worker={args.threads}",
        f"seed={seed}",
        f"run_dir={run / side}",
        "tracking.experiment=parity",
        f"tracking.tracking_uri=sqlite:///{(Path(args.out) / 'mlflow.db').resolve()}",
        *args.set,
        *variant,
    ]
    config = load_config(method_config, overrides)
    # evaluate once, at the end, as the official runs do
    return load_config(method_config, [*overrides, f"training.eval_every={config.training.epochs}"])


def parity_co2net(
    checkout: Path, base: ExperimentConfig, args: argparse.Namespace, out: Path
) -> tuple[list[Row], list[Setting], list[str]]:
    store = FeatureStore.open(base.features.store)
    annotations = load_annotations(base.data.annotations, segments="keep")
    subset = base.evaluation.subset
    export = export_co2net(store, annotations, out / "export", base.data.train_subsets, subset)
    train_ids = export.videos("validation")
    longest = max(store.meta(v)["num_features"] for v in train_ids)
    recipe = CO2NetRecipe(epochs=args.co2net_epochs, max_seqlen=longest)
    settings = co2net_settings(recipe, len(train_ids))
    official, ours = Row("CO2-Net, official code"), Row("CO2-Net, ours")
    for seed in args.seeds:
        run = (out / f"seed{seed}").resolve()
        before = (len(official.runs), len(ours.runs))
        options = [
            f"--path-dataset={export.path_dataset.resolve()}",
            f"--dataset-name={export.dataset_name}",
            f"--num-class={len(export.label_names)}",
            f"--feature-size={export.input_dim}",
            "--dataset=SampleDataset",
            f"--interval={10**9}",
        ]
        for s in settings:
            if s.official.startswith("--"):
                options.append(f"{s.official}={seed if s.official == '--seed' else s.value}")
        config = our_config("configs/demo_co2net.yaml", base, settings, args, seed, run)
        theirs_digest, ours_digest = settings_digest(options), settings_digest(our_settings(config))
        if to_run(run, base, "official", official, args, theirs_digest):
            pkl = run / "official_proposals.pkl"
            seconds = run_shim(
                ["co2net", str(checkout), str(pkl), "--", *options],
                run,
                args.threads,
                run / "official.log",
            )
            saved = pickle.loads(pkl.read_bytes())
            pred = _write(
                co2net_to_detections(
                    saved["proposals"], export.label_names, export.timing, args.co2net_seconds
                ),
                run / "official_predictions.json",
            )
            iterations = next(s.value for s in settings if s.official == "--max-iter")
            rate = iterations * recipe.batch_size / saved["train_seconds"]
            official.runs.append(Score(score(base, pred), seconds, rate))
            record_side(run, "official", pred, official.runs[-1], theirs_digest)
        if to_run(run, base, "ours", ours, args, ours_digest):
            our_pred, seconds, rate = run_ours(config, args.workers, len(train_ids), args.reuse)
            ours.runs.append(Score(score(base, our_pred), seconds, rate))
            record_side(run, "ours", our_pred, ours.runs[-1], ours_digest)
        say_seed(seed, (official, ours), before)
    notes = [
        f"CO2-Net max_seqlen {longest} (the longest training video), {len(train_ids)} training "
        "videos; the official run is tested once after its last iteration (its main.py keeps the "
        "checkpoint with the best test mAP); its steps became seconds by the "
        f"`{args.co2net_seconds}` reading.",
    ]
    return [official, ours], settings, notes


def asl_export(
    checkout: Path, base: ExperimentConfig, out: Path
) -> tuple[list[Row], list[Setting], list[str]]:
    """ASL's release reads the ActionFormer layout through its ``thumos`` loader; export it."""
    store = FeatureStore.open(base.features.store)
    annotations = load_annotations(base.data.annotations, segments="keep")
    subsets = [*base.data.train_subsets, base.evaluation.subset]
    export = export_actionformer(store, annotations, out / "export", subsets)
    note = (
        f"ASL ({checkout.name}): exported to {export.json_file} and {export.feat_folder} for "
        "its `thumos` loader (the ActionFormer layout); not run: its modeling package imports "
        "`transformers` (a modified XLNet backbone, a BERT label branch), and its train.py "
        "keeps the epoch with the best mAP on the evaluated subset."
    )
    return [], [], [note]


# ---------------------------------------------------------------------- the table


def _mean_std(values: Sequence[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def table(rows: Sequence[Row], tious: Sequence[float]) -> str:
    """Markdown: one row per implementation, mAP (%) mean ± std over seeds per tIoU and the
    average, mean wall seconds and training samples/s."""
    head = " | ".join(f"mAP@{t:g}" for t in tious)
    lines = [
        f"| implementation | {head} | average mAP | wall s | train samples/s |",
        "|---|" + "---|" * (len(tious) + 3),
    ]
    for row in rows:
        if not row.runs:
            continue
        per_t = [_mean_std([run.result.mAP[i] for run in row.runs]) for i in range(len(tious))]
        avg = _mean_std([run.result.average_mAP for run in row.runs])
        wall = statistics.mean(run.seconds for run in row.runs)
        rate = statistics.mean(run.samples_per_second for run in row.runs)
        lines.append(f"| {row.label} | {' | '.join(per_t)} | {avg} | {wall:.0f} | {rate:.1f} |")
    return "\n".join(lines)


def settings_table(name: str, settings: Sequence[Setting]) -> str:
    lines = [f"| {name}: official | value | ours | value | note |", "|---|---|---|---|---|"]
    for s in settings:
        ours = f"`{s.ours}`" if s.ours else "(no key)"
        our_value = "" if s.ours is None else f"`{s.ours_value}`"
        lines.append(f"| `{s.official}` | `{s.value}` | {ours} | {our_value} | {s.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actionformer", type=Path, help="checkout of actionformer_release")
    parser.add_argument("--co2net", type=Path, help="checkout of MM2021-CO2-Net")
    parser.add_argument("--asl", type=Path, help="checkout of ego4d_asl (export only)")
    parser.add_argument("--config", default="configs/bench72.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--workers", type=int, default=0, help="our Ray Train workers (0: in process, as theirs)"
    )
    parser.add_argument("--width", type=int, default=512, help="ActionFormer width (THUMOS: 512)")
    parser.add_argument("--epochs", type=int, default=30, help="ActionFormer epochs after warm-up")
    parser.add_argument("--co2net-epochs", type=int, default=250, help="CO2-Net epochs")
    parser.add_argument(
        "--co2net-seconds",
        choices=CO2NET_SECONDS,
        default="cells",
        help="CO2-Net steps to seconds (bench/parity_io.py): cells (default) or "
        "evaluator (t * stride / fps, its THUMOS14 arithmetic taken literally)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="our side only, after the recipe's overrides",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter for the official code, e.g. a venv made with "
        "`python -m venv --system-site-packages /tmp/parity-venv` plus its extra packages "
        "(default: this one; absent h5py/tensorboard are stubbed)",
    )
    parser.add_argument(
        "--subset",
        default="test",
        help="subset both sides are scored on (evaluation.subset; default test: the recipes "
        "are fixed and the last epoch is scored, nothing is selected on it)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep each side of a seed that an earlier run in --out finished (official and ours "
        "are recorded separately), run the rest",
    )
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=SIDES,
        default=list(SIDES),
        help="the sides that run (default both): to split a long comparison over several "
        "sittings, e.g. --sides ours --reuse --no-page; a side left out is taken from --reuse "
        "where finished",
    )
    parser.add_argument("--out", default="runs/bench/parity")
    add_page_flag(parser, "parity")
    args = parser.parse_args()
    if set(args.sides) != set(SIDES) and not args.no_page:
        parser.error(
            "--sides with one side writes no page (its table would lack the other): add --no-page"
        )
    if not (args.actionformer or args.co2net or args.asl):
        parser.error("give at least one official checkout: --actionformer, --co2net or --asl")
    for path in (args.actionformer, args.co2net, args.asl):
        if path is not None and not path.is_dir():
            parser.error(f"{path}: not a directory (an official checkout)")
    PYTHON[:] = [args.python]
    base = load_config(args.config, [f"evaluation.subset={args.subset}"])
    out = Path(args.out)
    rows: list[Row] = []
    sections: list[str] = []
    notes: list[str] = []
    runs = [
        ("ActionFormer", args.actionformer, parity_actionformer),
        ("CO2-Net", args.co2net, parity_co2net),
    ]
    for name, checkout, run in runs:
        if checkout is None:
            continue
        method_rows, settings, method_notes = run(
            checkout.resolve(), base, args, out / name.lower()
        )
        rows.extend(method_rows)
        sections.append(settings_table(name, settings))
        notes.extend(method_notes)
    if args.asl is not None:
        notes.extend(asl_export(args.asl.resolve(), base, out / "asl")[2])
    tious = base.evaluation.tiou_thresholds
    heading = (
        f"mAP (%) on `{base.evaluation.subset}` of `{args.config}`, mean ± std over seeds "
        f"{args.seeds}, {args.threads} threads each; wall s: training and inference:"
    )
    text = table(rows, tious)
    print(f"\n{heading}\n\n{text}\n")
    for line in notes:
        print(line)
    if not args.no_page:
        write_results_page(
            "parity",
            "Parity with the official code",
            "\n\n".join(
                [
                    "Each method beside its official implementation on the same features, "
                    "subsets and seeds, both scored by `tal eval`'s evaluator "
                    "(`bench/parity.py` says how each side is run).",
                    heading,
                    text,
                    *(f"- {n}" for n in notes),
                    f"Our side's extra overrides (`--set`): {args.set or 'none'}.",
                    "The hyper-parameters of both sides:",
                    *sections,
                ]
            ),
        )


if __name__ == "__main__":
    main()

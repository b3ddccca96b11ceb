"""Every stage of a training run at ActivityNet size, timed and measured for peak memory, for
this checkout and an earlier commit in the same run.

    python bench/scale.py [--before REV] [--videos 19228] [--classes 200] [--steps 100]
                          [--dim 128] [--threads 1] [--work runs/bench/scale]
                          [--set key=value ...] [--no-page]

The data are synthetic and made once (cached in ``--work``): ``--videos`` videos split as
ActivityNet 1.3 is (half training, a quarter each validation and testing), 1-3 actions of
``--classes`` classes each over 10-240 s, and one ``[--steps, --dim]`` float32 ``.npy`` of
random features per video (ActivityNet's resized layout: every video has the same number of
steps, so each has its own feature rate). For each version the same commands run, each in a
fresh process of this interpreter with ``PYTHONPATH`` on that version's tree (``--before``:
a git worktree of REV made under ``--work``):

1. ``tal import-features --resized`` of the ``.npy`` folder into a new store;
2. ``tal pairs`` of the training videos;
3. ``tal train --num-workers 0`` for one epoch (I2Net, the default method, made smaller:
   ``SMALLER``; ``--set`` adds overrides), evaluated once on validation: start-up (to the
   "training ... on N videos" line), the epoch (its recorded seconds) and the evaluation
   (the rest, to the epoch's line; per validation video too);
4. ``tal infer`` of the checkpoint on validation: seconds per video, start-up included;
5. ``tal eval`` of those predictions.

Each stage's wall time and peak memory (max RSS of its process, from ``os.wait4``), and the
ratio before/after. Threads: ``training.cpus_per_worker`` and ``OMP_NUM_THREADS`` are
``--threads``. Writes ``docs/results/scale.md`` (``--no-page``: print only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from results_page import Transcript, add_page_flag, code_block, write_results_page

REPO = Path(__file__).resolve().parents[1]
SPLIT = (("training", 0.5), ("validation", 0.25), ("testing", 0.25))  # ActivityNet 1.3's
# a small I2Net (one pair per training video, width 32, 3 levels): the bench measures the
# pipeline around the network (reading, pairing, decoding, writing), not its arithmetic
SMALLER = ("model.embed_dim=32", "model.num_levels=3", "pairs.per_video=1")


@dataclass
class Stage:
    """One command's wall seconds, peak RSS and the seconds at which marked lines appeared."""

    seconds: float
    peak_mb: float
    marks: dict[str, float] = field(default_factory=dict)


@dataclass
class Version:
    label: str
    tree: Path
    stages: dict[str, Stage] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)


def make_data(folder: Path, videos: int, classes: int, steps: int, dim: int, seed: int) -> Path:
    """Annotations and one random ``[steps, dim]`` .npy per video in ``folder`` (made once);
    returns the annotations' path."""
    ann = folder / "annotations.json"
    done = folder / "complete.json"
    spec = {"videos": videos, "classes": classes, "steps": steps, "dim": dim, "seed": seed}
    if done.is_file() and json.loads(done.read_text()) == spec:
        return ann
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "npy").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    database = {}
    bounds = np.cumsum([0.0, *[share for _, share in SPLIT]]) * videos
    for i in range(videos):
        subset = next(name for (name, _), hi in zip(SPLIT, bounds[1:], strict=True) if i < hi)
        duration = float(rng.uniform(10.0, 240.0))
        actions = []
        for _ in range(int(rng.integers(1, 4))):
            length = float(rng.uniform(0.05, 0.5)) * duration
            start = float(rng.uniform(0.0, duration - length))
            label = f"class_{int(rng.integers(classes)):03d}"
            actions.append({"segment": [round(start, 2), round(start + length, 2)], "label": label})
        vid = f"v_{i:06d}"
        database[vid] = {"subset": subset, "duration": round(duration, 2), "annotations": actions}
        feats = rng.standard_normal((steps, dim), dtype=np.float32)
        np.save(folder / "npy" / f"{vid}.npy", feats)
    ann.write_text(json.dumps({"version": "synthetic ActivityNet size", "database": database}))
    done.write_text(json.dumps(spec))
    return ann


def imported_from(tree: Path, env: dict[str, str]) -> Path:
    """The folder ``pipelines`` is imported from by a stage run in ``tree`` with ``env``.

    ``python -m`` puts its working directory first on ``sys.path``, ahead of ``PYTHONPATH``:
    a stage run from this checkout would import this checkout's code whatever ``PYTHONPATH``
    says, so stages run in their version's tree, and this checks it."""
    done = subprocess.run(
        [sys.executable, "-c", "import pipelines; print(pipelines.__file__)"],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip()).resolve().parent


def run_stage(
    argv: list[str], env: dict[str, str], log: Path, patterns: dict[str, str], cwd: Path
) -> Stage:
    """Run ``argv`` in ``cwd``, noting when a line matching each pattern first appears; its
    wall seconds and peak RSS (``os.wait4``: this process alone)."""
    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    with log.open("w", encoding="utf-8", buffering=1) as out:  # each line as it comes
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            for key, pattern in patterns.items():
                if key not in marks and re.search(pattern, line):
                    marks[key] = time.perf_counter() - t0
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-20:]
        raise SystemExit(f"{' '.join(argv[2:5])} failed ({log}):\n" + "\n".join(tail))
    return Stage(seconds, usage.ru_maxrss / 1024, marks)


def stage_env(tree: Path, threads: int) -> dict[str, str]:
    """The environment of every stage: ``tree``'s code, ``threads`` threads, unbuffered output
    (a line's time marks when it was printed: a block-buffered child would show its lines only
    at exit, an older commit's prints among them) and no tracking server of the caller's."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_version(version: Version, ann: Path, npy: Path, args: argparse.Namespace) -> None:
    """The five stages on ``version``'s tree, into ``--work/LABEL``."""
    out = Path(args.work).resolve() / re.sub(r"\W+", "_", version.label)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = stage_env(version.tree, args.threads)
    tal = [sys.executable, "-m", "pipelines"]
    code = imported_from(version.tree, env)
    if code != (version.tree / "pipelines").resolve():
        raise SystemExit(f"{version.label}: its stages would import {code}, not {version.tree}")
    store, pairs, run = out / "features.zarr", out / "pairs.parquet", out / "run"
    say = print

    def stage(name: str, argv: list[str], patterns: dict[str, str] | None = None) -> Stage:
        say(f"{version.label}: {name} ...")
        result = run_stage([*tal, *argv], env, out / f"{name}.log", patterns or {}, version.tree)
        version.stages[name] = result
        say(f"{version.label}: {name} {result.seconds:.1f} s, peak {result.peak_mb:.0f} MB")
        return result

    data = ["--annotations", str(ann), "--store", str(store)]
    stage(
        "import", ["import-features", str(npy), *data, "--resized", "--modalities", "rgb", "flow"]
    )
    stage("pairs", ["pairs", *data, "--per-video", "1", "--output", str(pairs)])
    sets = [
        f"run_dir={run}",
        f"tracking.tracking_uri=sqlite:///{out / 'mlflow.db'}",
        "tracking.experiment=scale",
        "training.epochs=1",
        "training.eval_every=1",
        f"training.cpus_per_worker={args.threads}",
        "evaluation.subset=validation",
        f"model.max_seq_len={args.max_seq_len}",
        *SMALLER,
        *args.set,
    ]
    options = [part for key in sets for part in ("--set", key)]
    train = stage(
        "train",
        ["train", *data, "--pairs", str(pairs), "--num-workers", "0", "--no-register", *options],
        {"ready": r"training \S+.* on \d+ videos", "epoch": r"epoch 1/1"},
    )
    history = json.loads((run / "model" / "metrics.json").read_text())["history"]
    epoch_s = float(history[0]["seconds"])
    version.numbers["train start-up s"] = train.marks["ready"]
    version.numbers["train epoch s"] = epoch_s
    version.numbers["train evaluation s"] = train.marks["epoch"] - train.marks["ready"] - epoch_s
    pred = out / "predictions.json"
    checkpoint = str(run / "model" / "checkpoint.pt")
    where = ["--split", "validation", "--output", str(pred)]
    infer = stage("infer", ["infer", "--checkpoint", checkpoint, *data, *where])
    n_val = sum(
        1 for v in json.loads(ann.read_text())["database"].values() if v["subset"] == "validation"
    )
    version.numbers["train eval ms per video"] = (
        1000 * version.numbers["train evaluation s"] / n_val
    )
    version.numbers["infer ms per video"] = 1000 * infer.seconds / n_val
    stage(
        "eval",
        ["eval", "--ground-truth", str(ann), "--predictions", str(pred), "--subset", "validation"],
    )


def worktree(rev: str, work: Path) -> Path:
    """A git worktree of ``rev`` under ``work`` (made once)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = (work / f"tree-{sha}").resolve()
    if not (tree / "pipelines").is_dir():
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=REPO, check=True)
    return tree


def table(versions: list[Version]) -> list[str]:
    """One row per measure, one column per version, and before / after when there are two."""
    rows: list[tuple[str, list[float]]] = []
    for name in versions[-1].stages:
        rows.append((f"{name} s", [v.stages[name].seconds for v in versions]))
        rows.append((f"{name} peak MB", [v.stages[name].peak_mb for v in versions]))
    for key in versions[-1].numbers:
        rows.append((key, [v.numbers[key] for v in versions]))
    head = f"{'measure':<22}" + "".join(f"{v.label:>14}" for v in versions)
    head += f"{'before/after':>14}" if len(versions) == 2 else ""
    lines = [head]
    for name, values in rows:
        line = f"{name:<22}" + "".join(f"{x:>14.1f}" for x in values)
        if len(values) == 2:
            line += f"{values[0] / values[1]:>14.2f}" if values[1] > 0 else f"{'-':>14}"
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="an earlier commit to run beside this checkout")
    parser.add_argument("--videos", type=int, default=19228)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100, help="features per video (resized)")
    parser.add_argument("--dim", type=int, default=128, help="channels (rgb then flow halves)")
    parser.add_argument("--max-seq-len", type=int, default=128, help="model.max_seq_len")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/bench/scale")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add_page_flag(parser, "scale")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    out = Transcript()
    t0 = time.perf_counter()
    ann = make_data(work / "data", args.videos, args.classes, args.steps, args.dim, args.seed)
    out(
        f"data: {args.videos} videos ({', '.join(f'{n} {s:.0%}' for n, s in SPLIT)}), "
        f"{args.classes} classes, [{args.steps}, {args.dim}] float32 features per video; "
        f"made in {time.perf_counter() - t0:.0f} s (cached)"
    )
    versions = []
    if args.before:
        versions.append(Version(f"before {args.before}", worktree(args.before, work)))
    versions.append(Version("this checkout", REPO))
    for version in versions:
        run_version(version, ann, work / "data" / "npy", args)
    lines = table(versions)
    print()
    for line in lines:
        out(line)
    out(f"total wall time of the bench: {time.perf_counter() - t0:.0f} s")
    if not args.no_page:
        write_results_page(
            "scale",
            "Every stage at ActivityNet size",
            "`tal import-features --resized`, `tal pairs`, one epoch of `tal train` (I2Net, "
            "in process, evaluated once on validation), `tal infer` and `tal eval` on "
            "synthetic ActivityNet-sized data, each in a fresh process; wall seconds and peak "
            "memory (max RSS) per stage, for an earlier commit and this checkout in one "
            f"run, {args.threads} thread(s) each:\n\n" + code_block(out.lines),
        )


if __name__ == "__main__":
    main()

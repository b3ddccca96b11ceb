"""Time the vectorised detection evaluator against the per-detection reference, and `tal eval`
on a file against a bare ``json.load`` of it, in one run.

    python bench/eval_speed.py [--videos 5000 --classes 200 --per-video 60 --seed 0]
                               [--file-per-video 200] [--no-page]

1. An ActivityNet-sized random case (by default about 300k detections, 200 classes, tIoU
   0.5:0.05:0.95); both evaluators get the same inputs. Prints both times, the ratio and the
   largest difference between their APs.
2. The same kind of case written to files at ``--file-per-video`` detections per video
   (about 1M by default): ``tal eval`` in a fresh process (parsing, validation, matching,
   start-up included) against ``json.load`` of the predictions file in this one; prints both
   times, the ratio and the peak memory (max RSS) of ``tal eval``.

Writes the lines to ``docs/results/eval_speed.md`` (``--no-page``: print only).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results_page import Transcript, add_page_flag, code_block, write_results_page

from tal.data.annotations import write_annotations
from tal.data.predictions import write_predictions
from tal.evaluation.detection import ACTIVITYNET_TIOU, evaluate_detection
from tal.evaluation.random_case import random_case
from tal.evaluation.reference import reference_evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-video", type=float, default=60.0, help="mean detections per video")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the vectorised evaluator")
    parser.add_argument(
        "--file-per-video", type=float, default=200.0, help="detections per video in the file case"
    )
    add_page_flag(parser, "eval_speed")
    args = parser.parse_args()
    out = Transcript()

    gt, det = random_case(args.videos, args.classes, args.per_video, seed=args.seed)
    n_gt = sum(len(v.instances) for v in gt if v.subset == "validation")
    out(
        f"case: {args.videos} videos, {n_gt} ground-truth instances, {len(det)} detections, "
        f"{args.classes} classes, {len(ACTIVITYNET_TIOU)} tIoU thresholds"
    )
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = evaluate_detection(gt, det, "validation", ACTIVITYNET_TIOU)
        times.append(time.perf_counter() - t0)
    ours = min(times)
    t0 = time.perf_counter()
    ref = reference_evaluate(gt, det, "validation", ACTIVITYNET_TIOU)
    reference = time.perf_counter() - t0
    diff = max(
        np.abs(np.asarray(res.per_class_ap[k]) - np.asarray(v)).max() for k, v in ref.items()
    )
    out(f"vectorised evaluator: {ours:.3f} s (best of {args.repeat})")
    out(f"per-detection reference: {reference:.3f} s")
    out(f"speed-up: {reference / ours:.1f}x")
    out(f"max |AP difference|: {diff:.3g}; average mAP {res.average_mAP:.6f}")
    file_case(args, out)
    if not args.no_page:
        write_results_page(
            "eval_speed",
            "Evaluator speed: vectorised against the per-detection reference",
            "The vectorised detection evaluator (`tal/evaluation/detection.py`) and the "
            "per-detection reference (`tal/evaluation/reference.py`) on the same random "
            "ActivityNet-sized case (`tal/evaluation/random_case.py`); then `tal eval` on "
            "files of a larger case (a fresh process: start-up, orjson decoding, validation "
            "as columns, matching) against a bare `json.load` of the predictions file; in one "
            "run:\n\n" + code_block(out.lines),
        )


def file_case(args: argparse.Namespace, out: Transcript) -> None:
    """`tal eval` on files against ``json.load`` of the predictions file."""
    gt, det = random_case(args.videos, args.classes, args.file_per_video, seed=args.seed + 1)
    with tempfile.TemporaryDirectory(prefix="eval-speed-") as tmp:
        gt_path, pred_path = Path(tmp) / "gt.json", Path(tmp) / "pred.json"
        write_annotations(gt, gt_path)
        write_predictions(det, pred_path)
        size = pred_path.stat().st_size / 1e6
        out(f"file case: {len(det)} detections, predictions file {size:.0f} MB")
        t0 = time.perf_counter()
        with open(pred_path, encoding="utf-8") as file:
            json.load(file)
        bare = time.perf_counter() - t0
        tiou = [str(t) for t in ACTIVITYNET_TIOU]
        argv = [sys.executable, "-m", "pipelines", "eval", "--ground-truth", str(gt_path)]
        argv += ["--predictions", str(pred_path), "--subset", "validation", "--tiou", *tiou]
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        took = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"tal eval failed:\n{done.stderr[-2000:]}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out(f"json.load of the predictions file: {bare:.2f} s")
    out(f"tal eval (fresh process, everything included): {took:.2f} s")
    out(f"ratio tal eval / json.load: {took / bare:.2f}")
    out(f"tal eval peak memory (max RSS): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

"""Time the vectorised detection evaluator against the per-detection reference, in one run.

    python bench/eval_speed.py [--videos 5000 --classes 200 --per-video 60 --seed 0] [--no-page]

An ActivityNet-sized random case (by default about 300k detections, 200 classes, tIoU
0.5:0.05:0.95); both implementations get the same inputs. Prints both times, the ratio and
the largest difference between their APs, and writes them to ``docs/results/eval_speed.md``
(``--no-page``: print only).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results_page import Transcript, add_page_flag, code_block, write_results_page

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
    if not args.no_page:
        write_results_page(
            "eval_speed",
            "Evaluator speed: vectorised against the per-detection reference",
            "The vectorised detection evaluator (`tal/evaluation/detection.py`) and the "
            "per-detection reference (`tal/evaluation/reference.py`) on the same random "
            "ActivityNet-sized case (`tal/evaluation/random_case.py`), in one run:\n\n"
            + code_block(out.lines),
        )


if __name__ == "__main__":
    main()

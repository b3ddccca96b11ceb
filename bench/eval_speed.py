"""Time the vectorised detection evaluator against the per-detection reference, in one run.

    python bench/eval_speed.py [--videos 5000 --classes 200 --per-video 60 --seed 0]

An ActivityNet-sized random case (by default about 300k detections, 200 classes, tIoU
0.5:0.05:0.95); both implementations get the same inputs. Prints both times, the ratio and
the largest difference between their APs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

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
    args = parser.parse_args()

    gt, det = random_case(args.videos, args.classes, args.per_video, seed=args.seed)
    n_gt = sum(len(v.instances) for v in gt if v.subset == "validation")
    print(
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
    print(f"vectorised evaluator: {ours:.3f} s (best of {args.repeat})")
    print(f"per-detection reference: {reference:.3f} s")
    print(f"speed-up: {reference / ours:.1f}x")
    print(f"max |AP difference|: {diff:.3g}; average mAP {res.average_mAP:.6f}")


if __name__ == "__main__":
    main()

"""The methods side by side on the synthetic benchmark: each trained through the Ray Train
launcher with MLflow tracking, for several seeds; prints average mAP (mean, spread) and time.

    python bench/methods.py [--config configs/demo.yaml] [--seeds 0 1 2] [--methods ...]
                            [--workers 2] [--set key=value ...]

Uses the config's dataset and feature store (run `make demo` first). Every run goes to the
MLflow experiment ``methods`` of the config's tracking store (a SQLite file in
``--out`` unless ``MLFLOW_TRACKING_URI`` or the config names one), one run per method and
seed, tagged with both. Methods: the ActionFormer-style baseline, I2Net (intra + inter-video
attention), ASL. (CO2-Net and I2Net on ATA features join as their issue lands.)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from seed_table import print_seed_table

from pipelines.train import run_training
from tal.config import load_config

METHODS = {  # key: (label, overrides)
    "baseline": (
        "ActionFormer-style baseline",
        ["model.name=i2net", "model.intra_attention=false", "model.inter_attention=false"],
    ),
    "i2net": (
        "I2Net (intra + inter)",
        ["model.name=i2net", "model.intra_attention=true", "model.inter_attention=true"],
    ),
    "asl": (
        "ASL",
        ["model.name=asl", "model.intra_attention=false", "model.inter_attention=false"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers (0: in process)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/bench/methods")
    args = parser.parse_args()
    base = load_config(args.config, args.set)
    data = [f"data.root={base.data.root}", f"features.store={base.features.store}"]
    tracking = (
        base.tracking.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path(args.out).resolve() / 'mlflow.db'}"
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)

    scores: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for seed in args.seeds:
        for key in args.methods:
            label, sets = METHODS[key]
            out = Path(args.out) / f"{key}_seed{seed}"
            config = load_config(
                args.config,
                [*args.set, *data, *sets, f"seed={seed}", f"run_dir={out}",
                 "tracking.experiment=methods", f"tracking.tracking_uri={tracking}"],
            )  # fmt: skip
            t0 = time.perf_counter()
            outcome = run_training(
                config, num_workers=args.workers, register=False, log=lambda _m: None
            )
            took = time.perf_counter() - t0
            value = outcome.metrics["val_average_mAP"]
            scores.setdefault(key, []).append(value)
            seconds.setdefault(key, []).append(took)
            print(
                f"seed {seed}: {label}: average mAP {value:.4f} ({took:.0f} s, MLflow run "
                f"{outcome.run_id} at {outcome.tracking_uri})",
                flush=True,
            )

    print(f"\naverage mAP on {base.evaluation.subset}, seeds {args.seeds}, {args.workers} "
          "Ray Train workers:\n")  # fmt: skip
    labels = {METHODS[k][0]: k for k in args.methods}
    print_seed_table(
        "method",
        {n: scores[k] for n, k in labels.items()},
        {n: seconds[k] for n, k in labels.items()},
    )


if __name__ == "__main__":
    main()

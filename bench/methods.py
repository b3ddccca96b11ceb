"""The methods side by side on the synthetic benchmark: each trained through the Ray Train
launcher with MLflow tracking, for several seeds; prints average mAP (mean, spread) and time.

    python bench/methods.py [--config configs/demo.yaml] [--seeds 0 1 2] [--methods ...]
                            [--workers 2] [--set key=value ...] [--no-page]

Each method runs its own config (``configs/demo*.yaml``) on the dataset, feature store and
evaluation thresholds of ``--config`` (run `make demo` first); ``--set`` applies to all.
Every run goes to the MLflow experiment ``methods`` (the config's tracking store, else
``MLFLOW_TRACKING_URI``, else ``--out``/mlflow.db). Methods: the ActionFormer-style baseline,
I2Net (intra + inter-video attention), ASL, CO2-Net (video-level labels only), and I2Net on
ATA features: for that one each seed trains the ATA backbone (Ray Train, the same seed),
extracts its features into the seed's own store, then trains I2Net; its time is all three.
The table is also written, with its provenance, to ``docs/results/methods_demo.md``
(``--no-page``: print only).

``--suite`` runs the comparison that has power instead: every method on every `tal synth`
preset, scored on test with bootstrap intervals (``bench/methods_suite.py``, which writes
``docs/results/methods.md``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from methods_suite import METHODS as SUITE_METHODS
from methods_suite import add_suite_arguments, run_suite
from results_page import add_page_flag, write_results_page
from seed_table import print_seed_table

from pipelines.extract import extract_from_config
from pipelines.train import run_training
from pipelines.train_backbone import run_backbone_training
from tal.config import load_config

METHODS = {  # key: (label, the method's config, overrides)
    "baseline": ("ActionFormer-style baseline", "configs/demo_actionformer.yaml", []),
    "i2net": ("I2Net (intra + inter)", "configs/demo.yaml", []),
    "asl": ("ASL", "configs/demo_asl.yaml", []),
    "co2net": ("CO2-Net (video-level labels only)", "configs/demo_co2net.yaml", []),
    "i2net-ata": ("I2Net on ATA features", "configs/demo_ata.yaml", []),
}
OWN_FEATURES = {"i2net-ata"}  # methods that make their features (backbone + extraction)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(SUITE_METHODS))
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray Train workers (0: in process; default 2, --suite 0)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/bench/methods")
    add_page_flag(parser, "methods_demo / methods (--suite)")
    parser.add_argument(
        "--suite",
        action="store_true",
        help="every method on every tal synth preset, intervals on test (bench/methods_suite.py)",
    )
    add_suite_arguments(parser)
    args = parser.parse_args()
    if args.suite:
        args.workers = 0 if args.workers is None else args.workers
        run_suite(args)
        return
    args.workers = 2 if args.workers is None else args.workers
    args.seeds = [0, 1, 2] if args.seeds is None else args.seeds
    args.methods = list(METHODS) if args.methods is None else args.methods
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: {unknown} run only with --suite; without it: {list(METHODS)}")
    base = load_config(args.config, args.set)
    # every method on the base config's data, features and evaluation thresholds
    tious = "[" + ", ".join(str(t) for t in base.evaluation.tiou_thresholds) + "]"
    data = [
        f"data.root={base.data.root}",
        f"evaluation.subset={base.evaluation.subset}",
        f"evaluation.tiou_thresholds={tious}",
    ]
    store = [f"features.store={base.features.store}"]
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
            label, method_config, sets = METHODS[key]
            out = (Path(args.out) / f"{key}_seed{seed}").resolve()
            own = key in OWN_FEATURES
            weights = [f"features.weights={out / 'backbone_rgb.pt'}", f"backbone.seed={seed}"]
            config = load_config(
                method_config,
                [
                    *data,
                    *(weights if own else store),
                    *sets,
                    *args.set,
                    f"seed={seed}",
                    f"run_dir={out}",
                    "tracking.experiment=methods",
                    f"tracking.tracking_uri={tracking}",
                ],
            )
            t0 = time.perf_counter()
            if own:
                backbone = run_backbone_training(
                    config,
                    out / "backbone_rgb.pt",
                    num_workers=args.workers,
                    register=False,
                    log=lambda _m: None,
                )
                extracted = extract_from_config(config, overwrite=True, log=lambda _m: None)
                print(
                    f"seed {seed}: {label}: backbone val clip accuracy "
                    f"{backbone.report.val_accuracy:.3f} ({backbone.report.seconds:.0f} s), "
                    f"{extracted.done} videos extracted",
                    flush=True,
                )
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

    heading = (
        f"average mAP on {base.evaluation.subset}, seeds {args.seeds}, {args.workers} "
        "Ray Train workers:"
    )
    print(f"\n{heading}\n")
    labels = {METHODS[k][0]: k for k in args.methods}
    table = print_seed_table(
        "method",
        {n: scores[k] for n, k in labels.items()},
        {n: seconds[k] for n, k in labels.items()},
    )
    if not args.no_page:
        own_store = tracking.endswith(str(Path(args.out).resolve() / "mlflow.db"))
        shown_store = f"`{Path(args.out) / 'mlflow.db'}`" if own_store else tracking
        configs = ", ".join(
            f"{METHODS[k][0]}: `{METHODS[k][1]}`"
            + (f" with `{' '.join(METHODS[k][2])}`" if METHODS[k][2] else "")
            for k in args.methods
        )
        write_results_page(
            "methods_demo",
            "The methods compared",
            "\n\n".join(
                [
                    f"Each method's own config ({configs}) on the data, feature store and tIoU "
                    f"thresholds ({tious}) of `{args.config}`; the runs are in the MLflow "
                    f"experiment `methods` ({shown_store}).",
                    heading,
                    table,
                ]
            ),
        )


if __name__ == "__main__":
    main()

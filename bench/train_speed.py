"""Training throughput: the loop in this process against Ray Train with 1 and 2 workers.

    python bench/train_speed.py [--config configs/demo.yaml] [--epochs 8] [--set key=value ...]
                                [--no-page]

Runs the same config three times on the config's feature store (no model registration):
in this process with ``training.cpus_per_worker`` torch threads (the reference: the loop
alone), then on Ray Train with 1 worker and with 2 workers (gloo on CPU, NCCL on GPU), each
worker with ``cpus_per_worker`` CPUs, the global batch the same. Samples (videos) per second
are measured inside the loop per epoch; the first epoch (warm-up) is left out and the median
of the others kept. Prints the rates, the Ray Train overhead (1 worker against the loop alone)
and the 2-worker scaling (2 workers against 1), and the wall time of each run with start-up;
writes them to ``docs/results/train_speed.md`` (``--no-page``: print only).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from results_page import Transcript, add_page_flag, code_block, write_results_page

from pipelines.tracking import client
from pipelines.train import run_training
from tal.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add_page_flag(parser, "train_speed")
    args = parser.parse_args()
    out = Transcript()

    rates: dict[str, float] = {}
    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tal-train-speed-") as tmp:
        sets = [
            *args.set,
            f"training.epochs={args.epochs}",
            f"training.eval_every={args.epochs}",
            f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db",
            f"training.storage_path={tmp}/train",
        ]
        base = load_config(args.config, sets)
        for label, workers in (
            ("loop alone", 0),
            ("Ray Train, 1 worker", 1),
            ("Ray Train, 2 workers", 2),
        ):
            config = load_config(args.config, [*sets, f"run_dir={tmp}/{workers}"])
            if workers == 0:
                torch.set_num_threads(config.training.cpus_per_worker)
            start = time.perf_counter()
            outcome = run_training(
                config,
                base.data.annotations,
                base.features.store,
                base.pairs.output,
                output=Path(tmp) / f"out{workers}",
                num_workers=workers,
                register=False,
                log=lambda _m: None,
            )
            walls[label] = time.perf_counter() - start
            history = client(outcome.tracking_uri).get_metric_history(
                outcome.run_id, "samples_per_second"
            )
            per_epoch = [m.value for m in sorted(history, key=lambda m: m.step)][1:]
            rates[label] = statistics.median(per_epoch)
            out(
                f"{label}: {rates[label]:.1f} videos/s (median of epochs 2-{args.epochs}), "
                f"run {walls[label]:.1f} s with start-up",
                flush=True,
            )
    device = "GPU" if base.training.use_gpu else "CPU"
    out(
        f"\n{device}, {base.training.cpus_per_worker} CPU per worker, global batch "
        f"{base.training.batch_size}:\n"
        f"Ray Train overhead (1 worker / loop alone): "
        f"{rates['Ray Train, 1 worker'] / rates['loop alone']:.2f}x\n"
        f"2-worker scaling (2 workers / 1 worker): "
        f"{rates['Ray Train, 2 workers'] / rates['Ray Train, 1 worker']:.2f}x"
    )
    if not args.no_page:
        write_results_page(
            "train_speed",
            "Training throughput: the loop alone against Ray Train",
            f"`{args.config}` for {args.epochs} epochs on its feature store, run three times: "
            "in this process, then on Ray Train with 1 and 2 workers (the same global batch); "
            "videos per second measured inside the loop, median of the epochs after the "
            "first.\n\n" + code_block(out.lines),
        )


if __name__ == "__main__":
    main()

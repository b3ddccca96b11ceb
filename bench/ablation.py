"""I2Net ablation on the synthetic benchmark: baseline vs intra vs intra+inter, 3 seeds.

    python bench/ablation.py [--config configs/demo.yaml] [--seeds 0 1 2] [--set key=value ...]

Uses the config's feature store (run `tal extract --config C` first) and trains, for each
seed, the ActionFormer-style baseline (both mechanisms off), intra-video attention only, and
intra + inter-video attention; the last is evaluated with each inference partner policy
(``self`` and ``bank``) from the same checkpoint. Prints mean and standard deviation of
average mAP over the config's tIoU thresholds, per variant, and the training time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from seed_table import print_seed_table

from tal.config import load_config
from tal.engine.inference import infer_from_checkpoint
from tal.engine.trainer import train_localizer

VARIANTS = {  # folder name: (label, overrides)
    "baseline": (
        "baseline (ActionFormer-style)",
        ["model.intra_attention=false", "model.inter_attention=false"],
    ),
    "intra": (
        "intra-video attention",
        ["model.intra_attention=true", "model.inter_attention=false"],
    ),
    "intra_inter": (
        "intra + inter-video attention",
        ["model.intra_attention=true", "model.inter_attention=true"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/bench/ablation")
    args = parser.parse_args()

    scores: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for seed in args.seeds:
        for key, (name, sets) in VARIANTS.items():
            config = load_config(args.config, [*args.set, *sets, f"seed={seed}"])
            out = Path(args.out) / f"{key}_seed{seed}"
            t0 = time.perf_counter()
            metrics = train_localizer(
                config,
                config.data.annotations,
                config.features.store,
                None,
                out,
                log=lambda _m: None,
            )
            took = time.perf_counter() - t0
            inter = key == "intra_inter"
            rows = [(f"{name}, partner self" if inter else name, metrics["average_mAP"])]
            if inter:
                _, facts = infer_from_checkpoint(
                    out / "checkpoint.pt", None, None, config.evaluation.subset, partner="bank"
                )
                rows.append((f"{name}, partner bank", facts["result"].average_mAP))
            for label, value in rows:
                scores.setdefault(label, []).append(value)
                seconds.setdefault(label, []).append(took)
                print(f"seed {seed}: {label}: average mAP {value:.4f} ({took:.0f} s)", flush=True)

    tious = load_config(args.config, args.set).evaluation.tiou_thresholds
    print(
        f"\naverage mAP over tIoU {', '.join(f'{t:g}' for t in tious)} on "
        f"{load_config(args.config, args.set).evaluation.subset}, seeds {args.seeds}:\n"
    )
    print_seed_table("variant", scores, seconds)


if __name__ == "__main__":
    main()

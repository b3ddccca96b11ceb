"""I2Net ablation on the synthetic benchmark: baseline vs intra vs intra+inter, 3 seeds.

    python bench/ablation.py [--config configs/demo.yaml] [--seeds 0 1 2] [--set key=value ...]
                             [--baseline-config configs/demo_actionformer.yaml] [--no-page]

Uses the config's feature store (run `tal extract --config C` first) and trains, for each
seed, the ActionFormer-style baseline (``model.name: actionformer``, from
``--baseline-config`` on the data, store and thresholds of ``--config``), intra-video
attention only, and intra + inter-video attention; the last is evaluated with each inference
partner policy (``self`` and ``bank``) from the same checkpoint. Prints mean and standard
deviation of average mAP over the config's tIoU thresholds, per variant, and the training
time, and writes them to ``docs/results/ablation.md`` (``--no-page``: print only).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from results_page import add_page_flag, write_results_page
from seed_table import print_seed_table

from tal.config import load_config
from tal.engine.inference import infer_from_checkpoint
from tal.engine.trainer import train_localizer

VARIANTS = {  # folder name: (label, own config (None: --config), overrides)
    "baseline": ("baseline (ActionFormer-style)", "baseline", []),
    "intra": (
        "intra-video attention",
        None,
        ["model.intra_attention=true", "model.inter_attention=false"],
    ),
    "intra_inter": (
        "intra + inter-video attention",
        None,
        ["model.intra_attention=true", "model.inter_attention=true"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/bench/ablation")
    parser.add_argument(
        "--baseline-config",
        default="configs/demo_actionformer.yaml",
        help="the baseline's config (model.name: actionformer); data, store and thresholds "
        "come from --config",
    )
    add_page_flag(parser, "ablation")
    args = parser.parse_args()
    base = load_config(args.config, args.set)
    tious = "[" + ", ".join(str(t) for t in base.evaluation.tiou_thresholds) + "]"
    shared = [  # the baseline runs on the --config experiment's data and features
        f"data.root={base.data.root}",
        f"data.annotations={base.data.annotations}",
        f"features.store={base.features.store}",
        f"evaluation.subset={base.evaluation.subset}",
        f"evaluation.tiou_thresholds={tious}",
    ]

    scores: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for seed in args.seeds:
        for key, (name, own, sets) in VARIANTS.items():
            if own is None:
                config = load_config(args.config, [*args.set, *sets, f"seed={seed}"])
            else:
                config = load_config(
                    args.baseline_config, [*shared, *args.set, *sets, f"seed={seed}"]
                )
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
            assert metrics.average_mAP is not None
            rows = [(f"{name}, partner self" if inter else name, metrics.average_mAP)]
            if inter:
                _, facts = infer_from_checkpoint(
                    out / "checkpoint.pt",
                    None,
                    None,
                    config.evaluation.subset,
                    config_overrides=["model.inference_partner=bank"],
                )
                assert facts.result is not None
                rows.append((f"{name}, partner bank", facts.result.average_mAP))
            for label, value in rows:
                scores.setdefault(label, []).append(value)
                seconds.setdefault(label, []).append(took)
                print(f"seed {seed}: {label}: average mAP {value:.4f} ({took:.0f} s)", flush=True)

    heading = (
        f"average mAP over tIoU {', '.join(f'{t:g}' for t in base.evaluation.tiou_thresholds)} "
        f"on {base.evaluation.subset}, seeds {args.seeds}:"
    )
    print(f"\n{heading}\n")
    table = print_seed_table("variant", scores, seconds)
    if not args.no_page:
        write_results_page(
            "ablation",
            "I2Net ablation: baseline, intra-video, intra + inter-video attention",
            "\n\n".join(
                [
                    f"`{args.config}` (I2Net variants) and `{args.baseline_config}` (the "
                    "baseline) on the same data and features, trained in this process; the "
                    "intra + inter checkpoint is evaluated with partner `self` and `bank`.",
                    heading,
                    table,
                ]
            ),
        )


if __name__ == "__main__":
    main()

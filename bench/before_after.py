"""I2Net's and ASL's parity fixes, before and after, on the same benchmark and seeds.

    python bench/before_after.py [--config configs/bench72.yaml] [--seeds 0 1 2]
                                 [--variants ...] [--workers 0] [--subset test]
                                 [--set key=value ...] [--out runs/bench/before_after] [--no-page]
                                 [--reuse]

Neither method has official code for THUMOS14, so each fix is shown against our former
behaviour, every other setting equal (the shared ActionFormer network and crops are the
current ones on both sides):

- I2Net: pair crops that keep the shared action (``training.pair_crop``), attention context
  of the training length (``model.attention_context``) and the class-aware bank partner
  (``model.inference_partner``), against independent crops, global context and ``self``;
  and each of the two training changes alone (``i2net-crop``, ``i2net-context``), whose
  checkpoints ``bench/partner_policy.py`` scores with every partner on validation and test;
- ASL: the authors' release (class-level Gaussians only, position by stride x length, no
  contrastive loss) against our former rule (instance-level sensitivity multiplied in,
  contrastive loss 0.1, position by length).

Each variant trains through ``pipelines.train.run_training`` with MLflow tracking (the
experiment ``before_after``), on the data and feature store of ``--config``, and is scored on
``--subset`` (test by default: recipes are fixed and the last epoch is scored, nothing is
selected). ASL's runs log the mean weight of the positives (``cls_pos_weight``,
``reg_pos_weight``) every epoch and a ``plots/training_curves.png`` artifact; the script
prints their first, lowest and last values. The table goes to
``docs/results/before_after.md`` (``--no-page``: print only). Each finished run is recorded in
its folder (``before_after.json``: score, wall seconds, MLflow run, weight trace); with
``--reuse`` a recorded run is taken as it is, so a comparison stopped part way is continued
by running the same command again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from results_page import add_page_flag, write_results_page
from seed_table import print_seed_table

from pipelines.train import run_training
from tal.config import load_config


@dataclass(frozen=True)
class Variant:
    label: str
    config: str
    overrides: tuple[str, ...]


VARIANTS = {
    "i2net-before": Variant(
        "I2Net, former: independent pair crops, global context, partner self",
        "configs/demo.yaml",
        (
            "training.pair_crop=independent",
            "model.attention_context=global",
            "model.inference_partner=self",
        ),
    ),
    "i2net-after": Variant(
        "I2Net, fixed: shared-action pair crops, training-length context, bank_class partner",
        "configs/demo.yaml",
        (
            "training.pair_crop=shared_action",
            "model.attention_context=training_window",
            "model.inference_partner=bank_class",
        ),
    ),
    # each training change alone (the inference partner changes no weight:
    # bench/partner_policy.py scores every checkpoint here with every partner)
    "i2net-crop": Variant(
        "I2Net, shared-action pair crops alone (global context, partner self)",
        "configs/demo.yaml",
        (
            "training.pair_crop=shared_action",
            "model.attention_context=global",
            "model.inference_partner=self",
        ),
    ),
    "i2net-context": Variant(
        "I2Net, training-length context alone (independent crops, partner self)",
        "configs/demo.yaml",
        (
            "training.pair_crop=independent",
            "model.attention_context=training_window",
            "model.inference_partner=self",
        ),
    ),
    "asl-before": Variant(
        "ASL, former: instance branch x class weights, contrastive 0.1, position by length",
        "configs/demo_asl.yaml",
        (
            "model.instance_branch=true",
            "model.combine=prod",
            "model.contrastive_weight=0.1",
            "model.position_by_stride=false",
        ),
    ),
    "asl-after": Variant(
        "ASL, as released: class-level Gaussians, position by stride x length",
        "configs/demo_asl.yaml",
        (
            "model.instance_branch=false",
            "model.contrastive_weight=0.0",
            "model.position_by_stride=true",
        ),
    ),
}
WEIGHT_TERMS = ("cls_pos_weight", "reg_pos_weight")
RECORD = "before_after.json"


@dataclass(frozen=True)
class Finished:
    """One variant and seed, trained and scored."""

    score: float
    seconds: float
    run_id: str
    trace: str
    settings: list[str]  # the config and overrides it ran with: reused only when equal


def weight_trace(output: Path) -> str:
    """First, lowest and last per-epoch value of ASL's mean positive weights, from the run's
    metrics.json (empty when the method logs none)."""
    path = output / "metrics.json"
    if not path.is_file():
        return ""
    history = json.loads(path.read_text(encoding="utf-8")).get("history", [])
    parts = []
    for term in WEIGHT_TERMS:
        values = [row[term] for row in history if term in row]
        if values:
            parts.append(
                f"{term} first {values[0]:.3f}, lowest {min(values):.3f}, last {values[-1]:.3f}"
            )
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/bench72.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--workers", type=int, default=0, help="Ray Train workers (0: in process)")
    parser.add_argument("--subset", default="test", help="subset scored (evaluation.subset)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/bench/before_after")
    parser.add_argument(
        "--reuse", action="store_true", help="take runs recorded in --out as they are"
    )
    add_page_flag(parser, "before_after")
    args = parser.parse_args()
    base = load_config(args.config, [f"evaluation.subset={args.subset}"])
    tious = "[" + ", ".join(str(t) for t in base.evaluation.tiou_thresholds) + "]"
    shared = [
        f"data.root={base.data.root}",
        f"features.store={base.features.store}",
        f"evaluation.subset={args.subset}",
        f"evaluation.tiou_thresholds={tious}",
    ]
    tracking = (
        base.tracking.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path(args.out).resolve() / 'mlflow.db'}"
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)

    scores: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    traces: list[str] = []
    for seed in args.seeds:
        for key in args.variants:
            variant = VARIANTS[key]
            out = (Path(args.out) / f"{key}_seed{seed}").resolve()
            settings = [
                variant.config,
                *shared,
                *variant.overrides,
                *args.set,
                f"seed={seed}",
                f"run_dir={out}",
                f"training.num_workers={args.workers}",
                "tracking.experiment=before_after",
                f"tracking.tracking_uri={tracking}",
            ]
            config = load_config(settings[0], settings[1:])
            record = out / RECORD
            earlier = (
                Finished(**json.loads(record.read_text(encoding="utf-8")))
                if args.reuse and record.is_file()
                else None
            )
            if earlier is not None and earlier.settings == settings:
                done = earlier
                print(f"seed {seed}: {variant.label}: reused {record}", flush=True)
            else:
                t0 = time.perf_counter()
                outcome = run_training(
                    config, num_workers=args.workers, register=False, log=lambda _m: None
                )
                done = Finished(
                    outcome.metrics["val_average_mAP"],
                    time.perf_counter() - t0,
                    outcome.run_id,
                    weight_trace(outcome.output),
                    settings,
                )
                record.write_text(json.dumps(asdict(done), indent=1) + "\n", encoding="utf-8")
            scores.setdefault(variant.label, []).append(done.score)
            seconds.setdefault(variant.label, []).append(done.seconds)
            if done.trace:
                traces.append(f"- {key}, seed {seed} (MLflow run {done.run_id}): {done.trace}")
            print(
                f"seed {seed}: {variant.label}: average mAP {done.score:.4f} ({done.seconds:.0f} "
                f"s, MLflow run {done.run_id}){' ' + done.trace if done.trace else ''}",
                flush=True,
            )

    heading = f"average mAP on {args.subset} of `{args.config}`, seeds {args.seeds}:"
    print(f"\n{heading}\n")
    table = print_seed_table("variant", scores, seconds)
    if traces:
        print("\nmean weight of the positives per epoch (ASL):\n" + "\n".join(traces))
    if not args.no_page:
        overrides = "\n".join(
            f"- {VARIANTS[k].label}: `{VARIANTS[k].config}` with `{' '.join(VARIANTS[k].overrides)}`"
            for k in args.variants
        )
        sections = [
            f"Each variant on the data and feature store of `{args.config}`, tIoU {tious}, "
            f"{args.workers} Ray Train workers (0: in process); runs in the MLflow experiment "
            "`before_after`.",
            overrides,
            heading,
            table,
        ]
        if traces:
            sections.append(
                "Mean weight of the positives per epoch (ASL; the curves are each run's "
                "`plots/training_curves.png` artifact):\n\n" + "\n".join(traces)
            )
        write_results_page(
            "before_after", "I2Net and ASL fixes, before and after", "\n\n".join(sections)
        )


if __name__ == "__main__":
    main()

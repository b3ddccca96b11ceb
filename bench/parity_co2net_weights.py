"""The official CO2-Net's trained weights through our inference, scored beside the official
code's own test detections.

    python bench/parity_co2net_weights.py --run runs/bench/parity/co2-net/seedN

A CO2-Net parity run (``bench/parity.py --co2net``) leaves in each seed's folder the official
model's final weights (``official_model.pt``), its test detections converted to our format
(``official_predictions.json``) and our own run (``ours/model/checkpoint.pt`` and its config).
This script puts the official weights (names mapped by ``parity_co2net_step.to_ours``) into a
copy of our checkpoint in place of its weights and runs ``tal infer``'s path
(``infer_from_checkpoint``) on the same test subset. When our forward pass, decoding and
conversion to seconds do what the official ones do, the two mAPs agree (up to float
rounding in scores and ties). It prints mAP per tIoU for the official code, for our inference
on the official weights, and for our own trained model, and the number of detections of each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from parity_co2net_step import to_ours

from tal.data.annotations import load_annotations
from tal.data.predictions import load_predictions
from tal.engine.checkpoint import load_checkpoint, save_checkpoint
from tal.engine.inference import infer_from_checkpoint
from tal.evaluation.detection import DetectionResult, evaluate_detection


def official_into_ours(official: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> dict:
    """The official state dict under our names; its keys must be exactly ours."""
    mapped = {to_ours(k): v for k, v in official.items() if to_ours(k) is not None}
    if set(mapped) != set(ours):
        raise SystemExit(
            f"official weights do not map onto ours: missing {sorted(set(ours) - set(mapped))}, "
            f"extra {sorted(set(mapped) - set(ours))}"
        )
    bad = [k for k in ours if mapped[k].shape != ours[k].shape]
    if bad:
        raise SystemExit(f"official weights of another shape: {bad}")
    return mapped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a CO2-Net parity seed folder")
    args = parser.parse_args(argv)
    ours_checkpoint = args.run / "ours" / "model" / "checkpoint.pt"
    needed = [
        args.run / "official_model.pt",
        args.run / "official_predictions.json",
        ours_checkpoint,
    ]
    absent = [str(p) for p in needed if not p.is_file()]
    if absent:
        raise SystemExit(f"{args.run}: missing {', '.join(absent)} (run bench/parity.py --co2net)")
    state = load_checkpoint(ours_checkpoint)
    weights = official_into_ours(
        torch.load(args.run / "official_model.pt", weights_only=True), state.inference_weights
    )
    state.model, state.ema = weights, dict(weights)
    with tempfile.TemporaryDirectory() as scratch:
        swapped = save_checkpoint(state, Path(scratch) / "official_weights.pt")
        subset = str(state.config["data"]["test_subset"])
        ours_on_official, facts = infer_from_checkpoint(swapped, None, None, subset)
    config = facts.config
    annotations = load_annotations(config.data.annotations)
    tious = list(config.evaluation.tiou_thresholds)

    def score(detections) -> DetectionResult:
        return evaluate_detection(annotations, detections, subset, tious)

    rows = [
        ("official code", score(load_predictions(args.run / "official_predictions.json"))),
        ("our inference, official weights", score(ours_on_official)),
        (
            "ours (our training)",
            score(load_predictions(args.run / "ours" / "model" / "predictions.json")),
        ),
    ]
    head = " ".join(f"{t:>6.2f}" for t in tious)
    print(f"mAP (%) on {subset}, tIoU     {head}    avg  detections")
    for label, result in rows:
        cells = " ".join(f"{100 * m:6.2f}" for m in result.mAP)
        print(f"{label:33s} {cells} {100 * result.average_mAP:6.2f}  {result.num_predictions:10d}")
    gap = abs(rows[0][1].average_mAP - rows[1][1].average_mAP)
    print(f"|official - our inference on its weights|, average mAP: {gap:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

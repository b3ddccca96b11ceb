"""I2Net's inference partner, chosen on validation: each I2Net checkpoint that
``bench/before_after.py`` trained, scored with every partner policy on validation and test.

    python bench/partner_policy.py [--runs runs/bench/before_after] [--no-page]

The partner a video is paired with at inference (``model.inference_partner``: ``self``,
``bank``, ``bank_class``) changes no weight, so one training run serves every policy: each
checkpoint (``RUNS/i2net-*_seed*/model/checkpoint.pt``, its own data and store) is run by
``tal.engine.inference.infer_from_checkpoint`` with the policy overridden. Validation picks
the policy of each training variant (highest mean over seeds); test reports it. Pure
inference: a few minutes on 2 cores after ``bench/before_after.py``.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

from before_after import VARIANTS
from results_page import add_page_flag, write_results_page
from seed_table import mean_std

from tal.engine.inference import infer_from_checkpoint

POLICIES = ("self", "bank", "bank_class")
SUBSETS = ("validation", "test")
RUN = re.compile(r"^(i2net-[a-z]+)_seed(\d+)$")


def score(checkpoint: Path, subset: str, policy: str) -> float:
    """Average mAP of ``checkpoint`` on ``subset`` with inference partner ``policy``."""
    _, facts = infer_from_checkpoint(
        checkpoint, None, None, subset, config_overrides=[f"model.inference_partner={policy}"]
    )
    if facts.result is None:
        raise SystemExit(f"{checkpoint}: subset {subset} has no ground truth to score")
    return float(facts.result.average_mAP)


def best_setting(scores: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """The training variant and partner with the highest mean validation score over all, and
    its test score: the I2Net settings validation selects on this benchmark."""
    variant, policy = max(
        ((v, p) for v, policies in scores.items() for p in policies),
        key=lambda vp: statistics.mean(scores[vp[0]][vp[1]]["validation"]),
    )
    by_subset = scores[variant][policy]
    return (
        f"Over all training variants and partners, validation picks `{variant}` with `{policy}`: "
        f"validation {mean_std(by_subset['validation'])}, test {mean_std(by_subset['test'])}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/bench/before_after"))
    add_page_flag(parser, "partner_policy")
    args = parser.parse_args()
    found: dict[str, dict[int, Path]] = {}
    for folder in sorted(args.runs.iterdir()) if args.runs.is_dir() else []:
        match = RUN.match(folder.name)
        checkpoint = folder / "model" / "checkpoint.pt"
        if match and checkpoint.is_file():
            found.setdefault(match.group(1), {})[int(match.group(2))] = checkpoint
    if not found:
        raise SystemExit(
            f"{args.runs}: no i2net-*_seed*/model/checkpoint.pt (run bench/before_after.py)"
        )
    # scores[variant][policy][subset] = one value per seed, seeds in order
    scores: dict[str, dict[str, dict[str, list[float]]]] = {}
    for variant, seeds in found.items():
        for seed, checkpoint in sorted(seeds.items()):
            for policy in POLICIES:
                for subset in SUBSETS:
                    value = score(checkpoint, subset, policy)
                    scores.setdefault(variant, {}).setdefault(policy, {}).setdefault(
                        subset, []
                    ).append(value)
                    print(f"{variant} seed {seed}: {policy} on {subset}: {value:.4f}", flush=True)
    lines = [
        "| training variant | seeds | partner | validation | test | test per seed |",
        "|---|---|---|---|---|---|",
    ]
    chosen = []
    for variant, policies in scores.items():
        seeds = ", ".join(str(s) for s in sorted(found[variant]))
        for policy, by_subset in policies.items():
            lines.append(
                f"| {variant} | {seeds} | {policy} | {mean_std(by_subset['validation'])} | "
                f"{mean_std(by_subset['test'])} | "
                f"{', '.join(f'{v:.3f}' for v in by_subset['test'])} |"
            )
        best = max(policies, key=lambda p: statistics.mean(policies[p]["validation"]))
        chosen.append(
            f"- {variant}: validation picks `{best}`; on test {mean_std(policies[best]['test'])}"
        )
    table = "\n".join(lines)
    overall = best_setting(scores)
    print(f"\naverage mAP, mean ± std over seeds:\n\n{table}\n\n" + "\n".join(chosen))
    print(overall)
    if not args.no_page:
        trained = "\n".join(
            f"- `{v}`: {VARIANTS[v].label}" if v in VARIANTS else f"- `{v}`" for v in scores
        )
        body = "\n\n".join(
            [
                f"Each I2Net checkpoint of `{args.runs}` run with every inference partner, on "
                "the training config's own data and feature store. The training variants "
                "(`bench/before_after.py`; the partner named there is replaced by each policy "
                "here):",
                trained,
                "Average mAP, mean ± std over seeds:",
                table,
                "The policy validation picks for each training variant, and its test score:",
                "\n".join(chosen),
                overall,
            ]
        )
        write_results_page(
            "partner_policy", "I2Net's inference partner, chosen on validation", body
        )


if __name__ == "__main__":
    main()

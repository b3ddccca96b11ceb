"""The markdown table the multi-seed benchmarks print: mean, spread and time per row."""

from __future__ import annotations

import statistics


def print_seed_table(
    first_column: str, scores: dict[str, list[float]], seconds: dict[str, list[float]]
) -> None:
    """One row per label: mean and sample standard deviation of its per-seed scores, the
    scores themselves and the mean training time."""
    print(f"| {first_column} | mean | std | per seed | training s (mean) |")
    print("|---|---|---|---|---|")
    for label, values in scores.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        per_seed = ", ".join(f"{v:.3f}" for v in values)
        print(
            f"| {label} | {statistics.mean(values):.3f} | {std:.3f} | {per_seed} | "
            f"{statistics.mean(seconds[label]):.0f} |"
        )

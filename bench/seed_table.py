"""The markdown table the multi-seed benchmarks print: mean, spread and time per row."""

from __future__ import annotations

import statistics


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over seeds (sample standard deviation; 0 for one value)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def seed_table(
    first_column: str, scores: dict[str, list[float]], seconds: dict[str, list[float]]
) -> str:
    """One row per label: mean and sample standard deviation of its per-seed scores, the
    scores themselves and the mean training time, as markdown text (no final newline)."""
    lines = [
        f"| {first_column} | mean | std | per seed | training s (mean) |",
        "|---|---|---|---|---|",
    ]
    for label, values in scores.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        per_seed = ", ".join(f"{v:.3f}" for v in values)
        lines.append(
            f"| {label} | {statistics.mean(values):.3f} | {std:.3f} | {per_seed} | "
            f"{statistics.mean(seconds[label]):.0f} |"
        )
    return "\n".join(lines)


def print_seed_table(
    first_column: str, scores: dict[str, list[float]], seconds: dict[str, list[float]]
) -> str:
    """Print ``seed_table(...)`` and return it (for a results page)."""
    table = seed_table(first_column, scores, seconds)
    print(table)
    return table

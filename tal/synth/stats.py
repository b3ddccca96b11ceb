"""Sizes of a synthetic dataset from its plans alone (no rendering): videos, seconds and
action instances per subset. ``python -m tal.synth.stats`` prints the presets' table of the
data guide (seed 0, each preset's default sizes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tal.data.annotations import SUBSETS
from tal.synth.generate import iter_plans
from tal.synth.presets import PRESET_NAMES, get_preset


@dataclass
class PlanStats:
    """What ``generate_dataset`` would write with some arguments, counted from the plans."""

    videos: int = 0
    seconds: float = 0.0
    """Total video length."""
    shortest_s: float = float("inf")
    longest_s: float = 0.0
    instances: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUBSETS, 0))
    """Action instances per subset."""


def plan_stats(**arguments: Any) -> PlanStats:
    """Count the plans of ``iter_plans(**arguments)`` (the arguments of ``generate_dataset``
    but ``out_dir``, ``workers`` and ``progress``)."""
    stats = PlanStats()
    for subset, plan in iter_plans(**arguments):
        seconds = plan.frames / plan.fps
        stats.videos += 1
        stats.seconds += seconds
        stats.shortest_s = min(stats.shortest_s, seconds)
        stats.longest_s = max(stats.longest_s, seconds)
        stats.instances[subset] += len(plan.instances)
    return stats


def presets_table(seed: int = 0) -> str:
    """A markdown table of every preset at its default sizes."""
    lines = [
        "| preset | videos | classes | video length | total video | "
        "instances training / validation / test |",
        "|---|---|---|---|---|---|",
    ]
    for name in PRESET_NAMES:
        p = get_preset(name)
        s = plan_stats(preset=name, seed=seed)
        n = s.instances
        lines.append(
            f"| `{name}` | {s.videos} | {p.classes} | {p.min_duration:g}-{p.max_duration:g} s "
            f"| {s.seconds:,.0f} s | {n['training']} / {n['validation']} / {n['test']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(presets_table())

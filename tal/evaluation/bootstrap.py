"""Confidence intervals for average mAP: a bootstrap over the evaluated videos and the seeds.

A method trained with a few seeds and scored on one test subset has two sources of spread:
which seed, and which videos happened to be in the test subset. Each bootstrap resample draws
the subset's videos with replacement (a video drawn twice counts twice) and the seeds with
replacement, and takes the mean over the drawn seeds of the average mAP on the drawn videos;
the interval is the percentiles of that statistic over resamples, shifted so that the
resamples' mean is the estimate (below). A paired difference between two methods draws the
same videos and the same seed positions for both, so what the two have in common (hard
videos, easy videos) cancels.

Why the shift: average precision rises as a test set holds fewer distinct videos, and a
resample holds about 63% of them (the rest are copies). On the `standard` preset's 80 test
videos (the baseline, 3 seeds) the full subset scored 0.208, random three-quarters of it 0.214
and halves 0.224 on average, and the resamples 0.222, with only 5% of them below 0.208: plain
percentiles [0.205, 0.240] would leave the estimate at their edge. The shift removes the
resamples' offset (their mean minus the estimate) and keeps their spread; the interval is
still not symmetric about the estimate when the resamples are skewed.

The resamples are cheap because the matching is done once: a prediction's true-positive flags
depend only on its own video (``tal.evaluation.detection.MatchedDetections``), so a resample
only reweights them. Weighting a video by k gives exactly the AP of the subset with k copies
of it; a class with no instance among the drawn videos is left out of that resample's mean,
as the evaluation leaves out classes absent from the ground truth.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tal.evaluation.detection import MatchedDetections, interpolated_ap

RESAMPLES = 1000
LEVEL = 0.95
_CHUNK = 250  # resamples evaluated at once (memory: chunk x thresholds x predictions of a class)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class MethodIntervals:
    """One method's average mAP (mean over seeds) with its interval and, when a baseline is
    given, its paired difference to the baseline (None for the baseline itself)."""

    name: str
    seeds: int
    average_mAP: Interval
    difference: Interval | None


def resampled_average_map(matched: MatchedDetections, weights: np.ndarray) -> np.ndarray:
    """Average mAP with the subset's videos weighted by ``weights`` ``[B, V]`` (how many
    times resample b draws video v, in ``matched.video_ids`` order) -> ``[B]``. Predictions on
    videos outside the subset keep weight 1 (false positives, as in the evaluation)."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    n_subset = len(matched.video_ids)
    if weights.shape[1] != n_subset:
        raise ValueError(
            f"weights: expected {n_subset} columns (one per video), got {weights.shape}"
        )
    out = np.empty(weights.shape[0])
    for lo in range(0, weights.shape[0], _CHUNK):
        out[lo : lo + _CHUNK] = _average_map(matched, weights[lo : lo + _CHUNK])
    return out


def _average_map(m: MatchedDetections, weights: np.ndarray) -> np.ndarray:
    n_b, n_thr, n_cls = weights.shape[0], len(m.thresholds), len(m.class_index)
    n_codes = max(len(m.video_ids), int(m.video.max()) + 1 if len(m.video) else 0)
    per_video = np.ones((n_b, n_codes))
    per_video[:, : len(m.video_ids)] = weights
    counts = np.zeros((len(m.video_ids), n_cls))
    np.add.at(counts, (m.gt_video, m.gt_class), 1.0)
    npos = weights @ counts  # [B, C] instances of each class among the drawn videos
    ap = np.zeros((n_b, n_thr, n_cls))
    for c, (lo, hi) in enumerate(itertools.pairwise(m.class_bounds)):
        if hi == lo:
            continue  # no prediction of this class: AP 0
        w = per_video[:, m.video[lo:hi]]  # [B, n]
        tp_cum = np.cumsum(w[:, None, :] * m.tp[None, :, lo:hi], axis=2)  # [B, T, n]
        all_cum = np.cumsum(w, axis=1)[:, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            # predictions of undrawn videos before any drawn one: no point of the curve
            precision = np.where(all_cum > 0, tp_cum / all_cum, 0.0)
            recall = tp_cum / npos[:, None, None, c]
        n = hi - lo
        ap[:, :, c] = interpolated_ap(
            precision.reshape(-1, n), np.nan_to_num(recall).reshape(-1, n)
        ).reshape(n_b, n_thr)
    present = npos > 0  # [B, C]
    m_ap = (ap * present[:, None, :]).sum(axis=2) / present.sum(axis=1, keepdims=True)
    return m_ap.mean(axis=1)


def bootstrap_intervals(
    runs: Mapping[str, Sequence[MatchedDetections]],
    baseline: str | None = None,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
    shift: bool = True,
) -> list[MethodIntervals]:
    """Each method's average mAP over its seeds (``runs[name]``: one matched run per seed, all
    on the same subset) with a ``level`` percentile interval from ``resamples`` draws of the
    videos and the seeds; with ``baseline``, each other method's paired difference to it (the
    same videos and seed positions drawn for both, so methods must have as many seeds).
    ``shift``: the percentiles are moved by the resamples' offset from the estimate (see the
    module docstring); ``False`` gives the plain percentile interval."""
    if not runs:
        raise ValueError("runs: expected at least one method with at least one run")
    if baseline is not None and baseline not in runs:
        raise ValueError(f"baseline: {baseline!r} is not one of the methods {sorted(runs)}")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    first = next(iter(runs.values()))
    if not first:
        raise ValueError("runs: every method needs at least one run")
    videos = first[0].video_ids
    for name, method_runs in runs.items():
        if not method_runs:
            raise ValueError(f"runs[{name!r}]: expected at least one run (seed)")
        for run in method_runs:
            if run.video_ids != videos:
                raise ValueError(
                    f"runs[{name!r}]: scored on other videos than the first run; every run "
                    "must be matched on the same subset"
                )
    seeds = {len(r) for r in runs.values()}
    if baseline is not None and len(seeds) > 1:
        raise ValueError(
            f"runs: paired differences need the same number of seeds per method, got {seeds}"
        )
    rng = np.random.default_rng(seed)
    n_videos = len(videos)
    weights = rng.multinomial(n_videos, np.full(n_videos, 1.0 / n_videos), size=resamples)
    seed_draws = {s: rng.integers(0, s, size=(resamples, s)) for s in sorted(seeds)}
    full = np.ones((1, n_videos))
    point: dict[str, float] = {}
    stat: dict[str, np.ndarray] = {}
    for name, method_runs in runs.items():
        per_seed = np.stack([resampled_average_map(r, weights) for r in method_runs])  # [S, B]
        draws = seed_draws[len(method_runs)]
        stat[name] = per_seed[draws, np.arange(resamples)[:, None]].mean(axis=1)
        point[name] = float(np.mean([resampled_average_map(r, full)[0] for r in method_runs]))
    tail = 100 * (1 - level) / 2

    def interval(estimate: float, values: np.ndarray) -> Interval:
        shifted = values - (values.mean() - estimate) if shift else values
        low, high = np.percentile(shifted, [tail, 100 - tail])
        return Interval(estimate, float(low), float(high))

    out = []
    for name, method_runs in runs.items():
        difference = None
        if baseline is not None and name != baseline:
            difference = interval(point[name] - point[baseline], stat[name] - stat[baseline])
        out.append(
            MethodIntervals(name, len(method_runs), interval(point[name], stat[name]), difference)
        )
    return out

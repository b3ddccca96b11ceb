"""CO2-Net's fixed-length training sampling: every training video becomes exactly ``t_max``
points (the official ``SampleDataset.load_data`` with ``sampling='random'``, which calls
``random_perturb`` on every training video, ``wsad_dataset.py``; ``t_max`` is
``--max-seqlen``, 500 on THUMOS14).

Random perturbed uniform sampling of a video of ``L`` points to ``N``: point ``i`` of the
result comes from the bin that starts at ``lo_i = floor(i L / N)``:

- ``L == N``: the video as it is;
- ``i < N - 1``: a uniform draw from ``lo_i .. lo_{i+1}`` (both ends included, so
  neighbouring bins share an end point) when ``lo_i != lo_{i+1}``, else ``lo_i``;
- the last point: a uniform draw from ``lo_{N-1} .. L - 1`` when ``lo_{N-1} < L - 1``, else
  ``lo_{N-1}``.

A video longer than ``N`` is thinned to ``N`` ordered points, one around each bin; a shorter
one is stretched to ``N`` by repeating points (never padded). The draws come from torch's
global CPU generator (seeded by the trainer and saved in its checkpoints, so a resumed run
draws what an uninterrupted one would).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tal.data.dataset import Batch, pad_features, padded_length


def perturbed_indices(length: int, target: int, generator: torch.Generator | None = None) -> Tensor:
    """``target`` increasing indices into ``length`` points (see the module docstring)."""
    if length < 1 or target < 1:
        raise ValueError(
            f"perturbed_indices: length and target must be >= 1, got {length}, {target}"
        )
    if length == target:
        return torch.arange(target)
    lo = torch.arange(target + 1) * length // target  # exact floor(i L / N), i = 0 .. N
    hi = lo[1:].clone()  # inclusive upper end of bin i: the next bin's start ...
    hi[-1] = length - 1  # ... and the last point of the video for the last bin
    lo = lo[:-1]
    draw = torch.rand(target, generator=generator, dtype=torch.float64)
    picks = lo + (draw * (hi - lo + 1).to(torch.float64)).floor().long()
    return torch.minimum(picks, hi)  # a draw of exactly 1.0 after rounding stays in its bin


def resample_batch(batch: Batch, target: int, divisible_by: int) -> Batch:
    """Every video of ``batch`` (its real points only) resampled to ``target`` points with
    ``perturbed_indices``, padded to ``target`` rounded up to ``divisible_by``; segments are
    not carried (weak training has none)."""
    lengths = batch.masks.sum(1).tolist()
    feats = [
        batch.feats[row, :, : int(n)][:, perturbed_indices(int(n), target)]
        for row, n in enumerate(lengths)
    ]
    padded, masks = pad_features(feats, padded_length(target, divisible_by))
    return Batch(
        padded,
        masks,
        [torch.zeros(0, 2) for _ in lengths],
        list(batch.labels),
        list(batch.video_ids),
        list(batch.items),
    )

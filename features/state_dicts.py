"""How a state dict differs from the one a network expects, in one line: the check behind
every strict load of weights from a file (I3D weights, packaged models)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

SHOWN = 10  # keys listed per kind of difference


def _listed(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def state_mismatch(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    may_lack: Iterable[str] = (),
) -> str | None:
    """``"missing keys: ...; unexpected keys: ...; wrong shapes: ..."`` for what ``state``
    lacks, adds or shapes differently from ``expected`` (keys ending in a ``may_lack`` suffix
    may be absent); None when it fits exactly."""
    optional = tuple(may_lack)
    missing = [k for k in expected if k not in state and not (optional and k.endswith(optional))]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    parts = [
        f"{label}: {_listed(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", wrong),
        )
        if keys
    ]
    return "; ".join(parts) or None

"""features/state_dicts.py: the one-line difference between a state dict and the expected one."""

from __future__ import annotations

import torch

from features.state_dicts import state_mismatch


def test_an_exact_fit_is_none_and_each_difference_is_named():
    expected = {
        "a.weight": torch.zeros(2, 3),
        "a.bias": torch.zeros(2),
        "bn.num_batches_tracked": torch.zeros(()),
    }
    assert state_mismatch(expected, dict(expected)) is None
    state = {"a.weight": torch.zeros(3, 2), "extra": torch.zeros(1)}
    text = state_mismatch(expected, state)
    assert text == (
        "missing keys: a.bias, bn.num_batches_tracked; unexpected keys: extra; "
        "wrong shapes: a.weight (3, 2) (expected (2, 3))"
    )
    # a suffix that may be absent is not missing
    assert state_mismatch(expected, state, may_lack=("num_batches_tracked",)).startswith(
        "missing keys: a.bias; "
    )


def test_long_lists_are_cut_with_the_count():
    expected = {f"k{i:02d}": torch.zeros(1) for i in range(25)}
    text = state_mismatch(expected, {})
    assert text.endswith("k09, ... (25 in all)") and "k10" not in text

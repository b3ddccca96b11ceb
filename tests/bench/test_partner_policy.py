"""bench/partner_policy.py: the settings it reports as chosen are chosen on validation, never on
test."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import partner_policy  # noqa: E402


def test_the_overall_choice_is_the_best_validation_mean_not_the_best_test():
    scores = {
        "i2net-before": {
            "self": {"validation": [0.50, 0.52], "test": [0.40, 0.40]},
            "bank": {"validation": [0.40, 0.40], "test": [0.90, 0.90]},
        },
        "i2net-crop": {"self": {"validation": [0.49, 0.51], "test": [0.60, 0.60]}},
    }
    line = partner_policy.best_setting(scores)
    assert "`i2net-before` with `self`" in line
    assert "validation 0.510 ± 0.014, test 0.400 ± 0.000" in line

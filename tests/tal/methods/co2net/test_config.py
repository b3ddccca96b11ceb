"""CO2-Net's ``model:`` keys and the THUMOS14 config that carries the official recipe."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tal.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[4]


def test_official_behaviour_is_the_default_and_a_bad_value_names_its_key():
    model = load_config(None, ["model.name=co2net"]).model
    assert (model.train_sampling, model.coactivity_pairs) == ("perturb", 3)
    assert (model.proposal_bounds, model.oic_rounding, model.nms_overlap) == (
        "edges",
        "ceil_floor",
        "plus_one",
    )
    with pytest.raises(ConfigError, match=r"model.train_sampling"):
        load_config(None, ["model.name=co2net", "model.train_sampling=crop"])
    with pytest.raises(ConfigError, match=r"model.coactivity_pairs"):
        load_config(None, ["model.name=co2net", "model.coactivity_pairs=0"])


def test_thumos14_config_is_the_official_recipe():
    """run.sh of harlanhong/MM2021-CO2-Net: --max-seqlen 500 --lr 0.00005 --k 7
    --max-iter 5000 --weight_decay 0.001 --seed 3552; options.py: --batch-size 10,
    --num-similar 3, Adam, no scheduler. 5,000 iterations from the 200 THUMOS14 validation
    videos, each one pair of every epoch with its partner drawn anew (the official similar
    pairs are drawn afresh each step)."""
    config = load_config(REPO / "configs" / "thumos14_co2net.yaml")
    t, m = config.training, config.model
    assert (t.optimizer, t.lr, t.weight_decay, t.weight_decay_on) == ("adam", 5e-5, 1e-3, "all")
    assert (t.schedule, t.warmup_epochs, t.ema_decay, t.amp) == ("constant", 0, 0.0, False)
    assert (m.max_seq_len, m.train_sampling, m.topk_ratio, m.coactivity_pairs) == (
        500,
        "perturb",
        7,
        3,
    )
    assert 2 * t.batch_size == 10 and config.seed == 3552
    assert t.partner_draw == "each_epoch" and config.pairs.per_video >= 199  # all partners
    steps_per_epoch = math.ceil(200 / t.batch_size)
    assert t.epochs * steps_per_epoch == 5000
    assert t.eval_every * steps_per_epoch == 200  # --interval
    assert config.model.name == "co2net" and config.data.train_subsets == ["validation"]
    assert config.evaluation.tiou_thresholds == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])

"""ASL's defaults and configs/thumos14_asl.yaml against the authors' release settings
(github.com/JonnyS1226/ego4d_asl: configs/baseline.yaml over libs/core/config.py, and
libs/modeling/meta_archs.py); the values below are read from those files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tal.config import load_config
from tal.methods.asl import ASLConfig

REPO = Path(__file__).resolve().parents[4]


def test_defaults_are_the_release():
    c = ASLConfig()
    # meta_archs.py: no instance-level output reaches the losses; positions divided by
    # stride x length; mu/sigma learned; the contrastive call commented out, weight 0
    assert c.instance_branch is False
    assert c.position_by_stride is True and c.learn_gaussians is True
    assert c.contrastive_weight == 0.0 and c.normalize is False
    assert (c.temperature, c.region) == (0.07, 0.2)  # train_cfg temperature, length_theta


def test_thumos14_recipe_follows_the_release_where_it_applies():
    config = load_config(REPO / "configs" / "thumos14_asl.yaml")
    m, t, i = config.model, config.training, config.inference
    assert isinstance(m, ASLConfig)
    assert (m.instance_branch, m.contrastive_weight, m.position_by_stride) == (False, 0.0, True)
    # opt, loader and train_cfg of baseline.yaml / the defaults
    assert (t.optimizer, t.lr, t.weight_decay, t.warmup_epochs) == ("adamw", 1e-4, 0.05, 5)
    assert (t.batch_size, t.grad_clip, t.center_radius, t.reg_weight) == (2, 1.0, 1.5, 1.0)
    assert (t.loss_norm_init, t.loss_norm_momentum) == (100, 0.9)
    assert t.crop_ratio == pytest.approx((0.9, 1.0))
    assert m.drop_path == 0.1
    # test_cfg: soft NMS per class, at most 200 detections
    assert (i.nms_method, i.multiclass_nms, i.max_detections) == ("soft", True, 200)
    # THUMOS (ours): ActionFormer's THUMOS14 values where the release's are Ego4D's
    assert (m.max_seq_len, m.embed_dim, m.num_levels, m.attention_window) == (2304, 512, 6, 19)
    assert (t.epochs, t.trunc_thresh) == (35, 0.5)
    assert config.evaluation.tiou_thresholds == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])

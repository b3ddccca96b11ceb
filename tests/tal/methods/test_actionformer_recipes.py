"""The ActionFormer recipes hold the official values key by key (values read from
happyharrycn/actionformer_release configs/thumos_i3d.yaml, configs/anet_i3d.yaml and the
defaults of libs/core/config.py; the mapping is the table in docs/methods/actionformer.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tal.config import load_config

ROOT = Path(__file__).resolve().parents[3]

# our key: (THUMOS14 official value, ActivityNet official value)
OFFICIAL = {
    "model.max_seq_len": (2304, 192),
    "model.embed_convs": (2, 2),
    "model.stem_blocks": (2, 2),
    "model.num_levels": (6, 6),  # backbone_arch[2] = 5 strided blocks, + level 0
    "model.embed_dim": (512, 256),
    "model.num_heads": (4, 4),
    "model.attention_window": (19, [7, 7, 7, 7, 7, -1]),
    "model.abs_pe": (False, True),
    "model.neck_norm": (True, True),
    "model.drop_path": (0.1, 0.1),
    "model.dropout": (0.0, 0.0),
    "model.downsample": ("in_block", "in_block"),
    "training.loss_norm_init": (100, 200),
    "training.loss_norm_momentum": (0.9, 0.9),
    "training.label_smoothing": (0.0, 0.1),
    "training.reg_weight": (1.0, 2.0),
    "training.center_radius": (1.5, 1.5),
    "training.grad_clip": (1.0, 1.0),
    "training.optimizer": ("adamw", "adamw"),
    "training.weight_decay_on": ("modules", "modules"),
    "training.schedule": ("cosine", "cosine"),
    "training.lr": (1e-4, 1e-3),
    "training.weight_decay": (0.05, 0.05),
    "training.ema_decay": (0.999, 0.999),
    "training.ema_warmup": (False, False),
    "training.trunc_thresh": (0.5, 0.5),
    "training.crop_ratio": ((0.9, 1.0), (0.9, 1.0)),
    "training.class_agnostic": (False, True),  # dataset.num_classes: 20 / 1
    "inference.external_topk": (2, 2),
    "inference.score_threshold": (0.001, 0.001),
    "inference.pre_nms_topk": (2000, 2000),
    "inference.topk_per": ("level", "level"),
    "inference.duration_threshold": (0.05, 0.001),
    "inference.nms_method": ("soft", "soft"),
    "inference.iou_threshold": (0.1, 0.1),
    "inference.nms_sigma": (0.5, 0.75),
    "inference.min_score": (0.001, 0.001),
    "inference.max_detections": (200, 100),
    "inference.multiclass_nms": (True, False),
    "inference.voting_threshold": (0.7, 0.9),
}


def _get(config: object, dotted: str) -> object:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


@pytest.mark.parametrize(
    ("path", "column"),
    [("configs/thumos14_actionformer.yaml", 0), ("configs/anet13_actionformer.yaml", 1)],
)
def test_recipe_holds_the_official_values(path: str, column: int) -> None:
    config = load_config(ROOT / path)
    assert config.model.name == "actionformer"
    wrong = {
        key: (_get(config, key), values[column])
        for key, values in OFFICIAL.items()
        if _get(config, key) != values[column]
    }
    assert not wrong, f"{path}: (ours, official) differ for {wrong}"


@pytest.mark.parametrize(
    ("path", "passes", "videos_per_step", "warmup_passes"),
    [
        ("configs/thumos14_actionformer.yaml", 35, 2, 5),
        ("configs/anet13_actionformer.yaml", 15, 16, 5),
    ],
)
def test_recipe_matches_passes_and_batch(
    path: str, passes: int, videos_per_step: int, warmup_passes: int
) -> None:
    """An epoch walks the pairs (each video about twice with one pair per video) and a pair
    is 2 videos: the recipes halve epochs and batch to match the official passes."""
    config = load_config(ROOT / path)
    assert config.pairs.per_video == 1
    assert 2 * config.training.batch_size == videos_per_step
    assert 2 * config.training.epochs in (passes, passes + 1)
    assert 2 * config.training.warmup_epochs in (warmup_passes, warmup_passes + 1)

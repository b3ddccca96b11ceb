"""Image pretraining of the ATA network: frame labels from the generator's plans, the weights
file, and fine-tuning from it with either temporal attention."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from features.ata import ATAViT
from features.weights import load_ata
from tal.backbone.clips import BackboneError
from tal.backbone.image_pretrain import build_frame_set, pretrain_image, visible_shapes
from tal.backbone.train import BackboneTrainConfig, build_network
from tal.config import load_config
from tal.synth.generate import iter_plans

ARCH = {"image_size": 32, "patch_size": 8, "dim": 16, "depth": 2, "heads": 4, "match": "content"}


def test_every_action_shows_its_class_shape_in_its_middle_frame(tiny_synth):
    meta = json.loads((tiny_synth.annotations.parent / "synth.json").read_text())
    shape_of = {c["name"]: c["shape"] for c in meta["classes"]}
    plans = [plan for _, plan in iter_plans(**meta["params"])]
    checked = 0
    for plan, video in zip(plans, meta["videos"].values(), strict=True):
        assert plan.frames == video["frames"]
        for inst in video["instances"]:
            a, b = inst["action_frames"]
            assert shape_of[inst["label"]] in visible_shapes(plan, (a + b) // 2)
            checked += 1
        # before anything fades in, only distractors can be on screen: never more shapes
        # than the sprites alive in that frame
        alive = {s.shape for s in plan.sprites if s.f0 <= 0 < s.f1}
        assert visible_shapes(plan, 0) <= alive
    assert checked >= 8


def test_frame_sets_are_seeded_and_labelled_in_the_training_order(tiny_synth):
    root = tiny_synth.annotations.parent
    train = build_frame_set(root, ["training"], 5, 32, seed=1)
    again = build_frame_set(root, ["training"], 5, 32, seed=1)
    np.testing.assert_array_equal(train.frames, again.frames)
    np.testing.assert_array_equal(train.labels, again.labels)
    assert train.frames.shape[1:] == (32, 32, 3) and train.frames.dtype == np.uint8
    assert train.labels.shape == (len(train.frames), len(train.shape_names))
    assert train.shape_names == sorted(train.shape_names) and train.labels.max() == 1.0
    val = build_frame_set(root, ["validation"], 5, 32, seed=2, shape_names=train.shape_names)
    assert val.shape_names == train.shape_names
    with pytest.raises(BackboneError, match=r"no videos in subsets \['nowhere'\]"):
        build_frame_set(root, ["nowhere"], 5, 32)
    with pytest.raises(BackboneError, match="synth.json: not found"):
        build_frame_set(root / "videos", ["training"], 5, 32)


def test_ata_and_plain_start_from_the_same_image_weights_as_the_same_function(tiny_synth, tmp_path):
    path = tmp_path / "image.pt"
    report = pretrain_image(
        tiny_synth.annotations.parent, path, arch=ARCH, frames_per_video=4, epochs=1, seed=0
    )
    assert 0.0 <= report.val_accuracy <= 1.0 and report.train_frames > 0
    image, meta = load_ata(path)
    assert meta["image_pretrained"] is True and image.arch["frames"] == 1

    def settings(temporal: str, match: str = "content") -> BackboneTrainConfig:
        config = load_config(
            None,
            [
                "features.extractor=ata",
                "features.modalities=[rgb]",
                "features.clip_length=4",
                "features.input_size=32",
                "features.ata.dim=16",
                f"features.ata.temporal={temporal}",
                f"features.ata.match={match}",
                f"backbone.init={path}",
            ],
        )
        return BackboneTrainConfig.from_experiment(config)

    aligned, origin = build_network(settings("aligned"), num_classes=3)
    plain, _ = build_network(settings("plain"), num_classes=3)
    positioned, _ = build_network(settings("aligned", "with_position"), num_classes=3)
    assert "image-pretrained" in origin["origin"] and "temporal (aligned)" in origin["origin"]
    for model in (aligned, plain, positioned):
        assert isinstance(model, ATAViT) and model.arch["frames"] == 4
        torch.testing.assert_close(model.space, image.space)
        torch.testing.assert_close(model.patch.weight, image.patch.weight)
        torch.testing.assert_close(model.blocks[1].mlp[0].weight, image.blocks[1].mlp[0].weight)
        assert not model.blocks[0].temporal.attn.out_proj.weight.any()  # starts as the image model
    clips = torch.rand(2, 3, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(aligned.features(clips), plain.features(clips))
        torch.testing.assert_close(aligned.features(clips), positioned.features(clips))


def test_image_weights_of_another_width_are_refused(tmp_path):
    image = ATAViT(5, frames=1, temporal="plain", **{**ARCH, "dim": 32})
    with pytest.raises(ValueError, match="image weights do not fit this network"):
        ATAViT(3, frames=4, **ARCH).load_image_state(image.state_dict())

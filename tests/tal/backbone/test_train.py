"""Backbone training: a tiny run saves loadable weights; flow works; bad input is clear."""

from __future__ import annotations

import json

import pytest
import torch

from features.ata import ATAViT
from features.weights import load_i3d, resolve_i3d, save_weights
from tal.backbone.clips import BackboneError
from tal.backbone.train import BackboneTrainConfig, build_network, random_flip, train_backbone
from tal.config import load_config
from tal.data.annotations import AnnotationError, load_annotations

TINY = BackboneTrainConfig(
    init="random",
    epochs=1,
    batch_size=8,
    input_size=32,
    fps=10.0,
    clip_length=8,
    device="cpu",
    flow_method="dis",
)


def _train(synth, out, settings=TINY):
    return train_backbone(synth.out_dir / "videos", synth.annotations, out, settings, log=None)


@pytest.fixture(scope="module")
def rgb_run(tiny_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("rgb") / "w.pt"
    return out, _train(tiny_synth, out)


def test_tiny_run_saves_weights_extract_can_load(rgb_run, tiny_synth):
    out, report = rgb_run
    model, meta = load_i3d(out)
    assert model.num_classes == 4 and model.in_channels == 3  # 3 classes + background
    assert meta["digest"] == report.digest and meta["path"] == str(out)
    names = load_annotations(tiny_synth.annotations).label_map().names
    assert meta["labels"] == [*names, "background"] and meta["num_classes"] == 4
    assert meta["modality"] == "rgb" and meta["epochs"] == 1 and meta["input_size"] == 32
    assert meta["fps"] == 10.0 and meta["clip_length"] == 8
    assert meta["origin"].startswith("fine-tuned from random initialisation")
    assert str(tiny_synth.annotations) in meta["origin"]
    assert 0.0 <= meta["val_accuracy"] <= 1.0 and meta["val_accuracy"] == report.val_accuracy
    assert len(meta["init_digest"]) == 64
    # the extractor's way in: a weights file resolved for the rgb stream
    again, again_meta = resolve_i3d(str(out), "rgb")
    assert again_meta["digest"] == report.digest
    assert again.features(torch.zeros(1, 3, 8, 32, 32)).shape == (1, 1024)


def test_report_fields(rgb_run):
    _, report = rgb_run
    assert report.train_clips > 0 and report.val_clips > 0
    assert len(report.epochs) == 1 and report.epochs[0]["train_loss"] > 0
    assert sum(report.train_class_counts) == report.train_clips
    assert report.skipped == [] and report.seconds > 0
    json.dumps(report.to_dict())  # plain data: trackers can log it as is


def test_deterministic_on_cpu(rgb_run, tiny_synth, tmp_path):
    out, report = rgb_run
    again = _train(tiny_synth, tmp_path / out.name)  # torch.save records the file's name
    first, second = load_i3d(out)[0].state_dict(), load_i3d(tmp_path / out.name)[0].state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert again.digest == report.digest


def test_flow_run(tiny_synth, tmp_path):
    settings = BackboneTrainConfig(**{**TINY.__dict__, "modality": "flow"})
    report = _train(tiny_synth, tmp_path / "flow.pt", settings)
    model, meta = load_i3d(tmp_path / "flow.pt")
    assert model.in_channels == 2 and model.num_classes == 4
    assert meta["modality"] == "flow" and meta["flow_method"] == "dis"
    assert report.modality == "flow"


def test_random_flip_mirrors_and_negates_flow_x():
    x = torch.arange(2 * 2 * 1 * 1 * 3, dtype=torch.float32).reshape(2, 2, 1, 1, 3)
    g = torch.Generator().manual_seed(0)
    while True:  # find a draw that flips exactly the first clip
        state = g.get_state()
        flips = torch.rand(2, generator=g) < 0.5
        if flips.tolist() == [True, False]:
            break
    g.set_state(state)
    out = random_flip(x, "flow", g)
    assert torch.equal(out[0, 0], -x[0, 0].flip(-1)) and torch.equal(out[0, 1], x[0, 1].flip(-1))
    assert torch.equal(out[1], x[1])
    g.set_state(state)
    rgb = random_flip(x, "rgb", g)
    assert torch.equal(rgb[0], x[0].flip(-1))


def test_missing_annotations(tiny_synth, tmp_path):
    with pytest.raises(AnnotationError, match="nope.json: annotation file not found"):
        train_backbone(
            tiny_synth.out_dir / "videos", tmp_path / "nope.json", tmp_path / "w.pt", TINY
        )
    assert not (tmp_path / "w.pt").exists()


def test_subset_without_instances(tiny_synth, tmp_path):
    data = json.loads(tiny_synth.annotations.read_text())
    for entry in data["database"].values():
        if entry["subset"] == "validation":
            entry["annotations"] = []
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BackboneError, match=r"ann\.json: subset validation: no action instances"):
        train_backbone(tiny_synth.out_dir / "videos", path, tmp_path / "w.pt", TINY)


def test_settings_from_experiment_config():
    cfg = load_config(
        None, ["features.input_size=112", "features.fps=15", "features.flow_method=dis"]
    )
    s = BackboneTrainConfig.from_experiment(cfg)
    assert (s.input_size, s.fps, s.clip_length, s.flow_method) == (112, 15.0, 16, "dis")
    assert (s.modality, s.init, s.epochs, s.batch_size, s.lr) == ("rgb", "kinetics-rgb", 4, 8, 1e-4)
    cfg = load_config(None, ["backbone.input_size=64", "backbone.fps=10", "backbone.modality=flow"])
    s = BackboneTrainConfig.from_experiment(cfg)
    assert (s.input_size, s.fps, s.modality) == (64, 10.0, "flow")


def test_cuda_requested_without_gpu_is_clear(tiny_synth, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    settings = BackboneTrainConfig(**{**TINY.__dict__, "device": "cuda"})
    with pytest.raises(BackboneError, match="backbone.device.*cuda"):
        _train(tiny_synth, tmp_path / "w.pt", settings)


def test_ata_network_is_built_from_the_features_settings(tmp_path):
    config = load_config(
        None,
        [
            "features.extractor=ata",
            "features.modalities=[rgb]",
            "features.clip_length=4",
            "features.input_size=32",
            "features.ata.dim=16",
            "features.ata.temporal=plain",
            "backbone.seed=3",
        ],
    )
    settings = BackboneTrainConfig.from_experiment(config)
    assert settings.extractor == "ata" and settings.init == "random"
    model, meta = build_network(settings, num_classes=5)
    assert isinstance(model, ATAViT) and model.num_classes == 5
    assert model.arch == {
        "frames": 4,
        "image_size": 32,
        "patch_size": 8,
        "dim": 16,
        "depth": 2,
        "heads": 4,
        "temporal": "plain",
        "match": "content",
    }
    assert meta["origin"] == "random initialisation (torch seed 3)"
    again, _ = build_network(settings, num_classes=5)  # seeded: the same start
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    # continuing from ATA weights keeps their network; another shape is refused
    path = tmp_path / "ata.pt"
    save_weights(model.state_dict(), path, {"arch": "ata", "ata": model.arch, "num_classes": 5})
    resumed, _ = build_network(
        BackboneTrainConfig(**{**settings.__dict__, "init": str(path)}), num_classes=3
    )
    torch.testing.assert_close(resumed.space, model.space)
    assert resumed.num_classes == 3
    wider = {**settings.__dict__, "init": str(path), "ata": {**settings.ata, "dim": 32}}
    with pytest.raises(BackboneError, match="ata.pt: an ATA network .* but the config asks for"):
        build_network(BackboneTrainConfig(**wider), num_classes=3)

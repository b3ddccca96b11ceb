"""ATA end to end: trained on 2 Ray Train workers (tracked, registered), then the extractor
of a feature store through `tal extract --extractor ata`, from real H.264 files."""

from __future__ import annotations

import numpy as np
import pytest

from features.extractor import ClipSettings, VideoExtractor
from features.store import FeatureStore
from features.weights import load_ata
from pipelines.cli import exit_status as run

pytestmark = pytest.mark.slow

FEATURES = [
    "features.extractor=ata",
    "features.modalities=[rgb]",
    "features.clip_length=8",
    "features.input_size=32",
    "features.fps=10",
    "features.ata.dim=32",
]


@pytest.fixture(scope="module")
def ata_weights(tiny_synth, tmp_path_factory, ray_local):
    from pipelines.train_backbone import run_backbone_training
    from tal.config import load_config

    run_dir = tmp_path_factory.mktemp("ata")
    config = load_config(
        None,
        [
            *FEATURES,
            "backbone.epochs=2",
            "backbone.batch_size=4",
            "backbone.device=cpu",
            f"run_dir={run_dir}",
        ],
    )
    outcome = run_backbone_training(
        config,
        run_dir / "ata.pt",
        tiny_synth.out_dir / "videos",
        tiny_synth.annotations,
        num_workers=2,
        log=lambda _m: None,
    )
    return outcome


def test_ata_trains_on_two_ray_workers_tracked_and_registered(ata_weights):
    from pipelines.tracking import client

    outcome = ata_weights
    model, meta = load_ata(outcome.output)
    assert meta["arch"] == "ata" and outcome.report.digest == meta["digest"]
    assert model.arch == {
        "frames": 8,
        "image_size": 32,
        "patch_size": 8,
        "dim": 32,
        "depth": 2,
        "heads": 4,
        "temporal": "aligned",
        "match": "content",
    }
    assert meta["origin"].startswith("trained from random initialisation")
    assert outcome.workers == 2 and outcome.report.extractor == "ata"
    c = client(outcome.tracking_uri)
    run_ = c.get_run(outcome.run_id)
    assert run_.info.status == "FINISHED" and run_.data.tags["method"] == "ata-rgb"
    history = c.get_metric_history(outcome.run_id, "val_accuracy")
    # the last epoch's accuracy is logged again linked to the LoggedModel (same step, value)
    assert [m.step for m in history] == [1, 2, 2]
    assert history[-1].value == history[-2].value == outcome.report.val_accuracy
    reg = outcome.registration
    assert reg.name == "synth-ata-rgb" and reg.promoted


def test_tal_extract_ata_fills_a_store_with_the_networks_features(
    ata_weights, tiny_synth, tmp_path, capsys
):
    videos = tiny_synth.out_dir / "videos"
    store = tmp_path / "ata.zarr"
    sets = [a for s in FEATURES[2:] for a in ("--set", s)]
    code = run(
        [
            "extract",
            "--videos",
            str(videos),
            "--store",
            str(store),
            "--extractor",
            "ata",
            "--weights",
            str(ata_weights.output),
            "--workers",
            "1",
            *sets,
        ]
    )
    assert code == 0, capsys.readouterr().err
    fs = FeatureStore.open(store)
    assert len(fs.completed()) == 8
    assert fs.attrs["extractor"] == "ata" and fs.attrs["feature_dims"] == {"rgb": 32}
    model, meta = load_ata(ata_weights.output)
    assert fs.attrs["weights_digest"]["rgb"] == meta["digest"]
    stored = fs.read("synth_0000")
    direct = VideoExtractor(
        {"rgb": model}, ClipSettings(fps=10.0, clip_length=8, stride=4, input_size=32), "cpu"
    ).extract(videos / "synth_0000.mp4")
    assert stored.shape == direct.features["rgb"].shape and stored.shape[1] == 32
    np.testing.assert_allclose(stored, direct.features["rgb"], atol=1e-4)
    assert float(stored.std(axis=0).mean()) > 0  # features change along the video


def test_ata_extract_errors_name_what_is_wrong(ata_weights, tiny_synth, tmp_path, capsys):
    videos = str(tiny_synth.out_dir / "videos")
    base = [
        "extract",
        "--videos",
        videos,
        "--store",
        str(tmp_path / "s.zarr"),
        "--extractor",
        "ata",
        "--set",
        "features.clip_length=8",
        "--set",
        "features.input_size=32",
    ]
    assert run(base) == 2
    assert "needs trained ATA weights" in capsys.readouterr().err
    assert (
        run([*base, "--weights", str(ata_weights.output), "--set", "features.clip_length=16"]) == 2
    )
    err = capsys.readouterr().err
    assert "takes clips of 8 frames at 32 px" in err and "are 16 and 32" in err
    assert run([*base, "--modalities", "rgb", "--modalities", "flow"]) == 2
    assert "modalities must be [rgb]" in capsys.readouterr().err
    assert not (tmp_path / "s.zarr").exists()

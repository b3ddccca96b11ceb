"""`tal predict` with a registered model on real video files: decode, featurise as the model's
features were made, localize, write predictions and a timeline figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipelines.cli import exit_status as run
from pipelines.extract import run_extraction
from pipelines.train import run_training
from tal.config import FeaturesConfig, load_config
from tal.data.predictions import load_predictions
from tal.engine.inference import infer_from_checkpoint

pytestmark = pytest.mark.slow

FEATURES = {
    "features.fps": 10.0,
    "features.input_size": 32,
    "features.clip_length": 8,
    "features.stride": 4,
    "features.flow_method": "dis",
    "features.dtype": "float16",
}
MODEL = {
    "dataset": "tiny",
    "model.embed_dim": 32,
    "model.num_heads": 4,
    "model.num_levels": 3,
    "model.max_seq_len": 16,
    "model.attention_window": 5,
    "training.epochs": 2,
    "training.eval_every": 2,
    "training.batch_size": 2,
}


@pytest.fixture(scope="module")
def registered(tiny_synth, tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("predict")
    sets = {**FEATURES, **MODEL, "run_dir": str(root)}
    config = load_config(None, [f"{k}={v}" for k, v in sets.items()])
    features = FeaturesConfig(**{k.split(".", 1)[1]: v for k, v in FEATURES.items()})
    store = root / "features.zarr"
    run_extraction(tiny_synth.out_dir / "videos", store, features, workers=1, log=lambda _m: None)
    ann = tiny_synth.out_dir / "annotations.json"
    outcome = run_training(config, ann, store, None, num_workers=0, log=lambda _m: None)
    return outcome, ann, store, tiny_synth


def test_predict_matches_the_checkpoint_and_draws_a_timeline(registered, tmp_path, capsys):
    outcome, ann, store, synth = registered
    test_ids = [
        vid for vid, v in json.loads(ann.read_text())["database"].items() if v["subset"] == "test"
    ]
    videos = [str(synth.out_dir / "videos" / f"{vid}.mp4") for vid in test_ids]
    pred, png = tmp_path / "pred.json", tmp_path / "timeline.png"
    torch.set_num_threads(2)
    code = run(
        [
            "predict",
            *videos,
            "--model",
            "models:/tiny-i2net@champion",
            "--tracking-uri",
            outcome.tracking_uri,
            "--output",
            str(pred),
            "--plot",
            str(png),
            "--annotations",
            str(ann),
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert torch.get_num_threads() == 1  # training.cpus_per_worker, not torch's default
    assert f"for {len(test_ids)} videos -> {pred}; timeline {png}" in captured.out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    got = load_predictions(pred)
    expected, _ = infer_from_checkpoint(outcome.output / "checkpoint.pt", ann, store, "test")
    assert len(got) == len(expected) > 0 and set(got.video_ids) == set(test_ids)

    def table(d):
        order = np.lexsort((d.start, d.labels.astype(str), d.video_ids.astype(str)))
        return d.labels[order].tolist(), np.c_[d.start, d.end, d.score][order]

    (labels_got, got_values), (labels_exp, exp_values) = table(got), table(expected)
    assert labels_got == labels_exp
    np.testing.assert_allclose(got_values, exp_values, atol=2e-3)  # re-extracted features


def test_bad_video_and_bad_model_are_clear(registered, tmp_path, capsys):
    outcome, *_ = registered
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    code = run(
        [
            "predict",
            str(bad),
            "--model",
            "models:/tiny-i2net@champion",
            "--tracking-uri",
            outcome.tracking_uri,
            "--output",
            str(tmp_path / "p.json"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1 and "broken.mp4: skipped" in captured.err
    assert "1 videos could not be read: broken" in captured.err
    code = run(
        [
            "predict",
            str(bad),
            "--model",
            "models:/nope@champion",
            "--tracking-uri",
            outcome.tracking_uri,
            "--output",
            str(tmp_path / "p.json"),
        ]
    )
    assert code == 2 and "cannot load model models:/nope@champion" in capsys.readouterr().err

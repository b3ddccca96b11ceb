"""`tal train-backbone`: a tiny run end to end, and exit status 2 with a clear message."""

from __future__ import annotations

import pytest

from features.weights import load_i3d
from pipelines.cli import exit_status as run

TINY_SETTINGS = [
    "backbone.init=random",
    "backbone.epochs=1",
    "backbone.device=cpu",
    "backbone.input_size=32",
    "backbone.fps=10",
    "features.clip_length=8",
    "features.flow_method=dis",
]


def _tiny(run_dir) -> list[str]:
    """Options of a tiny run in ``run_dir`` on the driver alone (no Ray workers)."""
    sets = [*TINY_SETTINGS, f"run_dir={run_dir}"]
    return [*(arg for s in sets for arg in ("--set", s)), "--num-workers", "0"]


def _train(videos, annotations, output, *options: str) -> int:
    """``tal train-backbone`` on these files; its exit status."""
    files = ["--videos", str(videos), "--annotations", str(annotations), "--output", str(output)]
    return run(["train-backbone", *files, *options])


def test_train_backbone_command(tiny_synth, tmp_path, capsys):
    out = tmp_path / "w.pt"
    code = _train(tiny_synth.out_dir / "videos", tiny_synth.annotations, out, *_tiny(tmp_path))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "epoch 1/1" in captured.err
    _, meta = load_i3d(out)
    assert f"sha256 {meta['digest']}" in captured.out and str(out) in captured.out
    assert "val accuracy" in captured.out and meta["num_classes"] == 4
    assert "registered synth-i3d-rgb v1 (val_accuracy" in captured.err


def test_train_backbone_bad_input_exits_2(tiny_synth, tmp_path, capsys):
    videos, out = tiny_synth.out_dir / "videos", tmp_path / "w.pt"
    code = _train(videos, tmp_path / "a.json", out, *_tiny(tmp_path))
    assert code == 2 and "a.json: annotation file not found" in capsys.readouterr().err
    code = _train(videos, tiny_synth.annotations, out, "--modality", "depth")
    assert code == 2 and "backbone.modality" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = _train(empty, tiny_synth.annotations, out, *_tiny(tmp_path))
    err = capsys.readouterr().err
    assert code == 2 and "subset training: no clips" in err and "error:" in err
    assert not out.exists()


@pytest.mark.slow
def test_two_ray_train_workers_track_and_register(tiny_synth, tmp_path, ray_local):
    from pipelines.tracking import client
    from pipelines.train_backbone import run_backbone_training
    from tal.config import load_config

    sets = [*TINY_SETTINGS, "backbone.epochs=2", "backbone.batch_size=4", f"run_dir={tmp_path}"]
    config = load_config(None, sets)
    out = tmp_path / "w.pt"
    videos, annotations = tiny_synth.out_dir / "videos", tiny_synth.annotations
    outcome = run_backbone_training(
        config, out, videos, annotations, num_workers=2, log=lambda _m: None
    )
    assert outcome.workers == 2 and outcome.report.val_accuracy >= 0
    _, meta = load_i3d(out)
    assert outcome.report.digest == meta["digest"]
    c = client(outcome.tracking_uri)
    run_ = c.get_run(outcome.run_id)
    assert run_.info.status == "FINISHED" and run_.data.tags["kind"] == "backbone"
    history = c.get_metric_history(outcome.run_id, "val_accuracy")
    # the last epoch's accuracy is logged again linked to the LoggedModel (same step, value)
    assert [m.step for m in history] == [1, 2, 2]
    assert history[-1].value == history[-2].value == outcome.report.val_accuracy
    (output,) = run_.outputs.model_outputs
    logged = c.get_logged_model(output.model_id)
    assert {m.key: m.value for m in logged.metrics} == {"val_accuracy": history[-1].value}
    files = {a.path.rsplit("/", 1)[-1] for a in c.list_logged_model_artifacts(logged.model_id)}
    assert files == {"MLmodel", "tal_model.json", "weights.safetensors"}
    assert [m.step for m in c.get_metric_history(outcome.run_id, "train_loss")] == [1, 2]
    assert {a.path for a in c.list_artifacts(outcome.run_id, "weights")} == {"weights/w.pt"}
    reg = outcome.registration
    assert reg.name == "synth-i3d-rgb" and reg.promoted and reg.score_name == "val_accuracy"
    assert str(c.get_model_version_by_alias("synth-i3d-rgb", "champion").version) == "1"

"""`tal train-backbone`: a tiny run end to end, and exit status 2 with a clear message."""

from __future__ import annotations

from features.weights import load_i3d
from pipelines.cli import exit_status as run

TINY_SET = [
    "--set", "backbone.init=random", "--set", "backbone.epochs=1", "--set", "backbone.device=cpu",
    "--set", "backbone.input_size=32", "--set", "backbone.fps=10",
    "--set", "features.clip_length=8", "--set", "features.flow_method=dis",
]  # fmt: skip


def test_train_backbone_command(tiny_synth, tmp_path, capsys):
    out = tmp_path / "w.pt"
    code = run(["train-backbone", "--videos", str(tiny_synth.out_dir / "videos"),
                "--annotations", str(tiny_synth.annotations), "--output", str(out), *TINY_SET])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "epoch 1/1" in captured.err
    _, meta = load_i3d(out)
    assert f"sha256 {meta['digest']}" in captured.out and str(out) in captured.out
    assert "val accuracy" in captured.out and meta["num_classes"] == 4


def test_train_backbone_bad_input_exits_2(tiny_synth, tmp_path, capsys):
    videos = str(tiny_synth.out_dir / "videos")
    code = run(["train-backbone", "--videos", videos, "--annotations", str(tmp_path / "a.json"),
                "--output", str(tmp_path / "w.pt"), *TINY_SET])  # fmt: skip
    assert code == 2 and "a.json: annotation file not found" in capsys.readouterr().err
    code = run(["train-backbone", "--videos", videos, "--annotations", str(tiny_synth.annotations),
                "--output", str(tmp_path / "w.pt"), "--modality", "depth"])  # fmt: skip
    assert code == 2 and "backbone.modality" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = run(["train-backbone", "--videos", str(empty), "--annotations",
                str(tiny_synth.annotations), "--output", str(tmp_path / "w.pt"), *TINY_SET])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "subset training: no clips" in err and "error:" in err
    assert not (tmp_path / "w.pt").exists()

"""`tal train` and `tal infer` end to end on a small feature store; bad input exits 2."""

from __future__ import annotations

import json

from pipelines.cli import exit_status as run
from tal.data.predictions import load_predictions

SMALL = [
    "--set",
    "model.embed_dim=32",
    "--set",
    "model.num_heads=4",
    "--set",
    "model.num_levels=3",
    "--set",
    "model.max_seq_len=64",
    "--set",
    "model.attention_window=5",
    "--set",
    "training.epochs=3",
    "--set",
    "training.eval_every=3",
    "--num-workers",
    "0",
]


def test_train_then_infer(toy_store, tmp_path, capsys, monkeypatch):
    import tal.engine.trainer as trainer_module

    _, ann, store = toy_store
    out = tmp_path / "run"
    loads = []
    load_data = trainer_module.load_data
    monkeypatch.setattr(
        trainer_module, "load_data", lambda *a, **k: loads.append(a[1:]) or load_data(*a, **k)
    )
    code = run(
        [
            "train",
            "--annotations",
            str(ann),
            "--store",
            str(store),
            "--pairs",
            str(tmp_path / "absent.parquet"),
            "--output",
            str(out),
            *SMALL,
            "--set",
            f"run_dir={tmp_path}",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "pairs built in memory" in captured.err and "epoch 3/3" in captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"average {metrics['average_mAP']:.4f} after 3 epochs" in captured.out
    assert f"MLflow run {json.loads((tmp_path / 'latest_train.json').read_text())['run_id']}" in (
        captured.out
    )
    assert (out / "checkpoint.pt").is_file() and (out / "config.yaml").is_file()
    # the driver's check of the inputs and the in-process loop share one load of the data
    assert [a[:2] for a in loads] == [(str(ann), str(store))], loads

    pred = tmp_path / "pred.json"
    code = run(
        [
            "infer",
            "--checkpoint",
            str(out / "checkpoint.pt"),
            "--annotations",
            str(ann),
            "--store",
            str(store),
            "--split",
            "validation",
            "--output",
            str(pred),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    detections = load_predictions(pred)
    assert set(detections.video_ids) <= {f"toy_{v:02d}" for v in range(12, 18)}
    assert f"average mAP {metrics['average_mAP']:.4f} (i2net (intra True, inter True))" in (
        captured.out
    )


def test_bad_inputs_exit_2(toy_store, tmp_path, capsys):
    _, ann, store = toy_store
    code = run(
        ["infer", "--checkpoint", str(tmp_path / "none.pt"), "--output", str(tmp_path / "p.json")]
    )
    assert code == 2 and "none.pt: checkpoint not found" in capsys.readouterr().err
    code = run(
        [
            "train",
            "--annotations",
            str(ann),
            "--store",
            str(tmp_path / "nostore.zarr"),
            "--output",
            str(tmp_path / "r"),
            *SMALL,
            "--set",
            f"run_dir={tmp_path}",
        ]
    )
    assert code == 2 and "nostore.zarr" in capsys.readouterr().err
    code = run(
        [
            "train",
            "--annotations",
            str(ann),
            "--store",
            str(store),
            "--output",
            str(tmp_path / "r"),
            *SMALL,
            "--set",
            "model.max_seq_len=62",
            "--set",
            f"run_dir={tmp_path}",
        ]
    )
    assert code == 2 and "max_seq_len" in capsys.readouterr().err

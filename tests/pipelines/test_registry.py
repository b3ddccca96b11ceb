"""The registry on a real MLflow SQLite store: champion moves only to a strictly better
version, the comparison is logged, `tal models` lists it; models are LoggedModels of
tensor-only files, and a crafted pickled champion runs no code."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from pipelines.cli import exit_status as run
from pipelines.registry import (
    CHAMPION,
    RegistryError,
    champion,
    list_versions,
    load_packaged,
    log_model,
    register,
)
from pipelines.tracking import artifact_location, client
from tal.engine.model_files import write_model_dir


def _run(uri: str, score: float) -> str:
    c = client(uri)
    experiment = c.get_experiment_by_name("reg") or c.get_experiment(
        c.create_experiment("reg", artifact_location=artifact_location(uri))
    )
    run_id = c.create_run(experiment.experiment_id).info.run_id
    c.log_metric(run_id, "val_average_mAP", score, step=1)
    return run_id


def _model_dir(tmp_path: Path) -> Path:
    net = torch.nn.Linear(2, 1)
    return write_model_dir(tmp_path / "model", "extractor", {"note": "a linear"}, net.state_dict())


def test_champion_moves_only_to_a_strictly_better_version(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = _model_dir(tmp_path)
    outcomes = []
    for score in (0.5, 0.4, 0.5, 0.6):
        run_id = _run(uri, score)
        model_uri = log_model(uri, run_id, folder, "extractor", {"val_average_mAP": score}, 1)
        outcomes.append(register(uri, run_id, model_uri, "m", score))
    assert [o.promoted for o in outcomes] == [True, False, False, True]
    assert [o.previous_version for o in outcomes] == [None, "1", "1", "1"]
    assert champion(uri, "m") == ("4", 0.6)
    rows = list_versions(uri, "m")
    assert [(r.version, r.score, r.aliases) for r in rows] == [
        ("1", 0.5, []),
        ("2", 0.4, []),
        ("3", 0.5, []),
        ("4", 0.6, [CHAMPION]),
    ]
    c = client(uri)
    local = c.download_artifacts(rows[2].run_id, "champion_comparison.json", str(tmp_path))
    comparison = json.loads(Path(local).read_text())
    assert comparison["promoted"] is False and comparison["previous_champion_score"] == 0.5
    assert c.get_run(rows[1].run_id).data.tags["champion"] == "not promoted"

    assert run(["models", "m", "--tracking-uri", uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "version", "score"]
    assert lines[4].split()[:5] == ["m", "4", "0.6000", "val_average_mAP", "champion"]
    assert run(["models", "--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert "is not reachable" in capsys.readouterr().err


def test_model_is_a_logged_model_linked_to_run_and_metrics(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = _run(uri, 0.5)
    model_uri = log_model(uri, run_id, _model_dir(tmp_path), "extractor", {"val_x": 0.25}, 3)
    assert model_uri.startswith("models:/m-")
    c = client(uri)
    logged = c.get_logged_model(model_uri.removeprefix("models:/"))
    assert logged.source_run_id == run_id and str(logged.status) == "READY"
    assert [(m.key, m.value, m.step) for m in logged.metrics] == [("val_x", 0.25, 3)]
    names = {Path(f.path).name for f in c.list_logged_model_artifacts(logged.model_id)}
    assert names == {"MLmodel", "tal_model.json", "weights.safetensors"}
    registration = register(uri, run_id, model_uri, "m", 0.5)
    version = c.get_model_version("m", registration.version)
    assert version.tags["model_id"] == logged.model_id
    assert version.source == logged.artifact_location
    links = json.loads(c.get_logged_model(logged.model_id).tags["mlflow.modelVersions"])
    assert links == [{"name": "m", "version": registration.version}]


class _Payload:
    """Unpickling this runs ``touch MARKER``: what a crafted model.pth would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_champion(uri: str, tmp_path: Path, marker: Path) -> str:
    """An attacker with write access to the tracking server: an mlflow.pytorch-style model
    whose data/model.pth runs a command when unpickled, registered straight through the
    client as ``evil@champion`` (bypassing ``register``)."""
    folder = tmp_path / "evil" / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "model.pth").write_bytes(pickle.dumps(_Payload(marker)))
    (folder / "MLmodel").write_text(
        "flavors:\n  pytorch:\n    model_data: data\n    pytorch_version: 2.13.0\n"
        "  python_function:\n    loader_module: mlflow.pytorch\n    data: data\n"
    )
    run_id = _run(uri, 0.9)
    c = client(uri)
    c.log_artifacts(run_id, str(folder), "model")
    c.create_registered_model("evil")
    source = f"{c.get_run(run_id).info.artifact_uri}/model"
    mv = c.create_model_version("evil", source, run_id=run_id)
    c.set_registered_model_alias("evil", CHAMPION, mv.version)
    return run_id


def test_crafted_pickled_champion_runs_nothing(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    marker = tmp_path / "pwned"
    # the payload is live: unpickling it runs the command
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))
    assert (tmp_path / "control").exists()

    run_id = _crafted_champion(uri, tmp_path, marker)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0")
    code = run(
        ["predict", str(video), "--model", "models:/evil@champion", "--tracking-uri", uri,
         "--output", str(tmp_path / "p.json")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "models:/evil@champion: holds a pickled model (data/model.pth)" in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: cannot load model models:/evil@champion: holds a pickled model (data/model.pth); "
        "loading it could run code from the file, so only tensor-only models "
        "(tal_model.json + weights.safetensors) are loaded"
    ], err
    with pytest.raises(RegistryError, match=r"runs:/.*/model: holds a pickled model"):
        load_packaged(f"runs:/{run_id}/model", uri)
    with pytest.raises(RegistryError, match=r"a pickled model \(data/model.pth\); the registry"):
        register(uri, run_id, f"runs:/{run_id}/model", "evil", 0.99)
    assert not marker.exists()


def test_crafted_tensor_files_run_nothing(tmp_path):
    """A tal model directory whose weights file is a pickle and whose MLmodel names a
    pickling loader: the files are parsed as safetensors and JSON, and refused."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    marker = tmp_path / "pwned"
    net = torch.nn.Linear(2, 1)
    folder = write_model_dir(tmp_path / "model", "localizer", {}, net.state_dict())
    weights = folder / "weights.safetensors"
    weights.write_bytes(pickle.dumps(_Payload(marker)))
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pytorch\n"
    )
    c = client(uri)
    run_id = _run(uri, 0.5)
    c.log_artifacts(run_id, str(folder), "model")
    with pytest.raises(RegistryError, match=r"weights.safetensors: sha256 differs"):
        load_packaged(f"runs:/{run_id}/model", uri)
    # with the digest recomputed the file is still parsed as safetensors, never unpickled
    manifest = json.loads((folder / "tal_model.json").read_text())
    manifest["files"]["weights.safetensors"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / "tal_model.json").write_text(json.dumps(manifest))
    run_id = _run(uri, 0.5)
    c.log_artifacts(run_id, str(folder), "model")
    with pytest.raises(RegistryError, match=r"weights.safetensors: not a safetensors file"):
        load_packaged(f"runs:/{run_id}/model", uri)
    assert not marker.exists()


def test_predict_without_a_tracking_store_writes_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(RegistryError, match="no tracking store to read it from"):
        load_packaged("models:/m@champion")
    assert list(tmp_path.iterdir()) == []

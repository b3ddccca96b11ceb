"""Links into the MLflow UI for a tracking server, none for a local store."""

from __future__ import annotations

from pipelines.tracking import ui_links


def test_server_gets_run_and_model_links():
    links = ui_links("http://127.0.0.1:5000/", "3", "abc", "synth-i2net", "2")
    assert links == {
        "run": "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning",
        "model": "http://127.0.0.1:5000/#/models/synth-i2net/versions/2?workflowType=machine_learning",
    }
    assert ui_links("https://mlflow.example", "1", "r") == {
        "run": "https://mlflow.example/#/experiments/1/runs/r?workflowType=machine_learning"
    }


def test_local_store_gets_none():
    assert ui_links("sqlite:////tmp/run/mlflow.db", "1", "abc", "m", "1") == {}

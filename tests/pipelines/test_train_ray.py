"""Training through the launcher: Ray Train workers (gloo on CPU), MLflow tracking in a real
SQLite store, registry and champion selection, fault tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.registry import CHAMPION, list_versions
from pipelines.tracking import TrackingError, client
from pipelines.train import FAULT_ENV, run_training
from tal.config import load_config

pytestmark = pytest.mark.slow  # Ray Train workers, fault injection, fresh processes

# the small pyramid of the one-stage methods (CO2-Net has none of these keys)
PYRAMID = {
    "model.embed_dim": 32,
    "model.num_heads": 4,
    "model.num_levels": 3,
    "model.attention_window": 5,
}
SMALL = {
    "seed": 0,
    "model.max_seq_len": 64,
    "training.epochs": 6,
    "training.batch_size": 4,
    "training.lr": 0.002,
    "training.warmup_epochs": 1,
    "training.eval_every": 3,
    "training.ema_decay": 0.9,
    "pairs.per_video": 2,
    "features.modalities": "[rgb, flow]",
    "dataset": "toy",
}


def _config(run_dir, **changes):
    shape = {} if changes.get("model.name") == "co2net" else PYRAMID
    sets = {**shape, **SMALL, "run_dir": str(run_dir), **changes}
    return load_config(None, [f"{k}={v}" for k, v in sets.items()])


def _quiet(_msg: str) -> None:
    pass


def _train(toy_store, run_dir, workers, **changes):
    _, ann, store = toy_store
    config = _config(run_dir, **changes)
    return run_training(config, ann, store, None, num_workers=workers, log=_quiet)


def test_in_process_run_is_tracked_and_registered(toy_store, tmp_path):
    outcome = _train(toy_store, tmp_path / "run", 0)
    c = client(outcome.tracking_uri)
    assert outcome.tracking_uri == f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}"
    run = c.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert c.get_experiment(run.info.experiment_id).name == "toy"
    assert run.data.params["training.epochs"] == "6" and run.data.params["model.embed_dim"] == "32"
    tags = run.data.tags
    assert tags["dataset"] == "toy" and tags["method"] == "i2net"
    assert len(tags["feature_store_digest"]) == 64 and tags["git_commit"]
    history = c.get_metric_history(outcome.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]
    for name in ("lr", "samples_per_second", "train_cls_loss", "train_reg_loss"):
        assert len(c.get_metric_history(outcome.run_id, name)) == 6, name
    val = c.get_metric_history(outcome.run_id, "val_average_mAP")
    # the last evaluation is logged again linked to the LoggedModel (same step and value)
    assert [m.step for m in val] == [3, 6, 6] and val[-1].value == val[-2].value
    assert val[-1].value == pytest.approx(outcome.metrics["val_average_mAP"])
    assert {m.step for m in c.get_metric_history(outcome.run_id, "val_mAP_0.50")} == {3, 6}
    # MLflow 3 views: a model-training experiment, dataset inputs, a LoggedModel with the
    # final validation metrics, registered model and version descriptions
    experiment = c.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"feats.zarr", "annotations.json"}, inputs
    assert inputs["feats.zarr"].digest == tags["feature_store_digest"][:36]
    assert json.loads(inputs["feats.zarr"].schema)["modalities"] == ["rgb", "flow"]
    (output,) = run.outputs.model_outputs
    logged = c.get_logged_model(output.model_id)
    assert (
        logged.source_run_id == outcome.run_id and outcome.model_uri == f"models:/{logged.model_id}"
    )
    linked = {m.key: m.value for m in logged.metrics}
    assert linked["val_average_mAP"] == pytest.approx(outcome.metrics["val_average_mAP"])
    version = c.get_model_version("toy-i2net", "1")
    assert version.description.startswith("method: i2net") and "scores: " in version.description
    assert "i2net action localizer for toy" in c.get_registered_model("toy-i2net").description
    artifacts = {a.path for a in c.list_artifacts(outcome.run_id)}
    assert {"config.yaml", "predictions.json", "metrics.json", "plots"} <= artifacts
    plots = {a.path for a in c.list_artifacts(outcome.run_id, "plots")}
    assert plots == {
        "plots/timeline.png",
        "plots/per_class_ap.png",
        "plots/precision_recall.png",
        "plots/training_curves.png",
    }
    reg = outcome.registration
    assert reg.name == "toy-i2net" and reg.version == "1" and reg.promoted
    assert str(c.get_model_version_by_alias("toy-i2net", CHAMPION).version) == "1"
    local = c.download_artifacts(outcome.run_id, "champion_comparison.json", str(tmp_path))
    comparison = json.loads(Path(local).read_text())
    assert comparison["promoted"] is True and comparison["previous_champion_version"] is None


FRESH_PROCESS = """
import json, sys
import mlflow.pyfunc
from pipelines.registry import load_packaged
from tal.data.annotations import LabelMap, load_annotations
from tal.data.dataset import FeatureDataset
from features.store import FeatureStore
model = load_packaged(sys.argv[1])
ann = load_annotations(sys.argv[2])
data = FeatureDataset(sys.argv[3], ann, ["validation"], LabelMap(model.label_names))
d = model.predict_dataset(data)
# MLflow's own loader (the python_function flavour) gives the same detections
video = str(d.video_ids[0])
store = FeatureStore.open(sys.argv[3])
feats = {m: store.read(video, m) for m in model.modalities}
frame = mlflow.pyfunc.load_model(sys.argv[1]).predict({video: feats})
alone = model.predict_features(video, feats)
assert len(alone) > 0 and frame["score"].tolist() == alone.score.tolist(), "pyfunc differs"
assert frame["label"].tolist() == alone.labels.tolist(), "pyfunc labels differ"
print(json.dumps([d.video_ids.tolist(), d.labels.tolist(), d.start.tolist(), d.end.tolist(),
                  d.score.tolist()]))
"""


def test_registered_model_loads_alone_and_predicts_as_the_checkpoint(toy_store, tmp_path):
    from tal.engine.inference import infer_from_checkpoint

    _, ann, store = toy_store
    outcome = _train(toy_store, tmp_path / "run", 0, **{"training.epochs": 3})
    env = {**os.environ, "MLFLOW_TRACKING_URI": outcome.tracking_uri}
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, "models:/toy-i2net@champion", str(ann), str(store)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    vids, labels, start, end, score = json.loads(done.stdout.strip().splitlines()[-1])
    expected, _ = infer_from_checkpoint(outcome.output / "checkpoint.pt", ann, store, "validation")
    assert vids == expected.video_ids.tolist() and labels == expected.labels.tolist()
    assert len(vids) > 0
    assert start == pytest.approx(expected.start.tolist(), abs=1e-6)
    assert end == pytest.approx(expected.end.tolist(), abs=1e-6)
    assert score == pytest.approx(expected.score.tolist(), abs=1e-6)


def test_unreachable_tracking_server_fails_fast(toy_store, tmp_path):
    start = time.perf_counter()
    with pytest.raises(TrackingError, match=r"http://127\.0\.0\.1:9 is not reachable.*make up"):
        _train(toy_store, tmp_path / "run", 0, **{"tracking.tracking_uri": "http://127.0.0.1:9"})
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "run" / "model").exists()  # nothing started


@pytest.fixture(scope="module")
def ray_runs(toy_store, tmp_path_factory, ray_local):
    """One run on 1 Ray Train worker and one on 2, same config and global batch, one store.
    Drop-path is off: its per-sample draws come from each worker's own generator, so with it
    the two runs would differ by more than summation order."""
    root = tmp_path_factory.mktemp("ray")
    runs = {
        w: _train(toy_store, root, w, **{"name": f"w{w}", "model.drop_path": 0}) for w in (1, 2)
    }
    return root, runs


def test_two_workers_match_one_worker(ray_runs):
    root, runs = ray_runs
    one, two = runs[1], runs[2]
    assert one.workers == 1 and two.workers == 2
    c = client(one.tracking_uri)
    losses = {
        w: [m.value for m in c.get_metric_history(runs[w].run_id, "train_loss")] for w in (1, 2)
    }
    assert len(losses[1]) == len(losses[2]) == 6
    # the same global batches and normaliser: equal up to float summation order
    assert losses[2] == pytest.approx(losses[1], rel=1e-3)
    assert two.metrics["val_average_mAP"] == pytest.approx(one.metrics["val_average_mAP"], abs=0.02)
    assert (root / "train" / two.run_name).is_dir()  # Ray Train's checkpoints, absolute path


def test_champion_moves_only_for_a_better_model(ray_runs):
    _, runs = ray_runs
    first, second = runs[1].registration, runs[2].registration
    assert (first.version, second.version) == ("1", "2") and first.promoted
    assert second.promoted == (second.score > first.score)
    best = "2" if second.promoted else "1"
    rows = list_versions(runs[1].tracking_uri, "toy-i2net")
    assert [r.aliases for r in rows] == [[CHAMPION] if r.version == best else [] for r in rows]


def test_killed_worker_resumes_from_the_last_checkpoint(
    toy_store, tmp_path, ray_local, monkeypatch
):
    marker = tmp_path / "killed.txt"
    monkeypatch.setenv(FAULT_ENV, f"3:1:{marker}")  # rank 1 SIGKILLs itself after epoch 3
    outcome = _train(toy_store, tmp_path / "run", 2, **{"training.epochs": 5})
    assert marker.read_text() == "killed rank 1 after epoch 3\n"
    assert outcome.metrics["epoch"] == 5
    c = client(outcome.tracking_uri)
    run = c.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    experiment_runs = c.search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in experiment_runs] == [outcome.run_id]  # one run, not two
    resumed = [m.value for m in c.get_metric_history(outcome.run_id, "resumed_after_epoch")]
    # the restart began at the last checkpoint Ray Train had registered: epoch 3's, or epoch
    # 2's when the worker died before the controller took in epoch 3's report
    assert len(resumed) == 1 and resumed[0] in (2, 3)
    steps = [m.step for m in c.get_metric_history(outcome.run_id, "train_loss")]
    # one history: epochs 1-3 before the kill, then again from the checkpoint on
    assert steps == [1, 2, 3, *range(int(resumed[0]) + 1, 6)]


def test_interrupted_run_continues_with_resume(toy_store, tmp_path, ray_local, monkeypatch):
    from ray.train import TrainingFailedError

    _, ann, store = toy_store
    marker = tmp_path / "killed.txt"
    monkeypatch.setenv(FAULT_ENV, f"2:0:{marker}")  # rank 0 dies after epoch 2 ...
    config = _config(tmp_path / "run", **{"training.epochs": 4, "training.max_failures": 0})
    with pytest.raises(TrainingFailedError):  # ... and no restart is allowed: the run stops
        run_training(config, ann, store, None, num_workers=2, log=_quiet)
    latest = json.loads((tmp_path / "run" / "latest_train.json").read_text())
    c = client(latest["tracking_uri"])
    assert c.get_run(latest["run_id"]).info.status == "FAILED"
    monkeypatch.delenv(FAULT_ENV)
    lines: list[str] = []
    outcome = run_training(config, ann, store, None, num_workers=2, resume=True, log=lines.append)
    assert (outcome.run_id, outcome.run_name) == (latest["run_id"], latest["run_name"])
    assert f"resuming run {latest['run_name']} (MLflow run {latest['run_id']})" in lines
    assert outcome.metrics["epoch"] == 4 and c.get_run(outcome.run_id).info.status == "FINISHED"
    resumed = [m.value for m in c.get_metric_history(outcome.run_id, "resumed_after_epoch")]
    assert len(resumed) == 1 and resumed[0] in (1, 2)
    steps = [m.step for m in c.get_metric_history(outcome.run_id, "train_loss")]
    assert steps == [1, 2, *range(int(resumed[0]) + 1, 5)]


def test_asl_trains_on_two_ray_workers_and_is_tracked(toy_store, tmp_path, ray_local):
    outcome = _train(toy_store, tmp_path / "run", 2, **{"model.name": "asl"})
    c = client(outcome.tracking_uri)
    run = c.get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and outcome.workers == 2
    assert run.data.tags["method"] == "asl" and run.data.params["model.combine"] == "prod"
    # the positives' mean weights are logged too (ASL's loss returns them as loss terms)
    for name in ("train_cls_pos_weight_loss", "train_contrastive_loss", "train_cls_loss"):
        history = c.get_metric_history(outcome.run_id, name)
        assert len(history) == 6 and all(m.value > 0 for m in history), name
    assert outcome.registration.name == "toy-asl" and outcome.registration.version == "1"


def test_co2net_trains_on_two_ray_workers_and_is_tracked(toy_store, tmp_path, ray_local):
    co2 = {"model.name": "co2net", "model.attention_dim": 16, "model.fusion_dim": 32}
    outcome = _train(toy_store, tmp_path / "run", 2, **co2)
    c = client(outcome.tracking_uri)
    run = c.get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and outcome.workers == 2
    assert run.data.tags["method"] == "co2net"
    for name in ("train_mil_loss", "train_coactivity_loss", "train_mutual_loss"):
        assert len(c.get_metric_history(outcome.run_id, name)) == 6, name
    assert outcome.registration.name == "toy-co2net"
    # the registered model (the package of tal predict) is CO2-Net and localizes
    assert outcome.model_uri is not None

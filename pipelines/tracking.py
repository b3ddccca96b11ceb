"""MLflow tracking of training runs: which store, which experiment and run, what is logged.

The tracking URI comes from the config, else ``MLFLOW_TRACKING_URI``, else a SQLite file in
the run folder (nothing to start). A server URI is checked before any work starts, so an
unreachable server fails fast. One experiment per dataset. The driver creates the run (params,
tags, the config file) and registers the model; rank 0 logs per-epoch metrics and the
evaluation artifacts through ``RunLogger``; other ranks never talk to MLflow.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineInputError
from tal.config import ExperimentConfig, dump_config

CHECK_TIMEOUT_S = 5.0
# the experiment tag that makes MLflow 3's UI open an experiment on its model-training view
# (untagged experiments are listed under GenAI's evaluation runs)
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# MLflow 3's UI keeps a global GenAI / model-training switch (GenAI unless changed); links
# the project prints open the model-training side
UI_VIEW = "workflowType=machine_learning"


# training-loop keys -> MLflow metric names (the rest keep their names: lr, val_mAP_0.50, ...)
def metric_name(key: str, loss_terms: Collection[str] = ()) -> str:
    """The MLflow metric of an epoch row's ``key``: the method's loss terms as
    ``train_TERM`` with a ``_loss`` suffix where the term has none (``loss`` -> ``train_loss``,
    ``mil`` -> ``train_mil_loss``), ``seconds`` as ``epoch_seconds``, anything else as is."""
    if key in loss_terms:
        return f"train_{key}" if key.endswith("loss") else f"train_{key}_loss"
    return "epoch_seconds" if key == "seconds" else key


class TrackingError(PipelineInputError):
    """The tracking store cannot be used; says which URI and what to do."""


def tracking_uri(config: ExperimentConfig) -> str:
    """Config, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///RUN_DIR/mlflow.db`` (absolute)."""
    uri = config.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    db = Path(config.run_dir).resolve() / "mlflow.db"
    return f"sqlite:///{db}"


def check_tracking(uri: str, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Raise TrackingError unless the tracking store at ``uri`` can be used now."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                if reply.status != 200:
                    raise TrackingError(f"{url} answered HTTP {reply.status}")
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking server {uri} is not reachable ({reason}); start it "
                "(`make up` starts one on 127.0.0.1:5000) or point tracking.tracking_uri / "
                "MLFLOW_TRACKING_URI at a running one"
            ) from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"tracking store {uri}: cannot create {folder} ({exc})") from None


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a SQLite store (``mlartifacts/``; MLflow's
    own default is the working directory), else wherever the server says (None)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


def ui_links(
    uri: str,
    experiment_id: str,
    run_id: str,
    model: str | None = None,
    version: str | None = None,
) -> dict[str, str]:
    """Links into the MLflow UI of a tracking server (none for a local file store, whose UI
    is opened with ``mlflow ui --backend-store-uri``)."""
    if not uri.startswith(("http://", "https://")):
        return {}
    base = uri.rstrip("/")
    links = {"run": f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{UI_VIEW}"}
    if model is not None and version is not None:
        links["model"] = f"{base}/#/models/{model}/versions/{version}?{UI_VIEW}"
    return links


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_name(config: ExperimentConfig) -> str:
    return config.tracking.experiment or config.dataset


def method_name(config: ExperimentConfig) -> str:
    """What was trained: the registered method's name (``model.name``)."""
    return config.model.name


def registered_model_name(config: ExperimentConfig) -> str:
    return config.tracking.registered_model or f"{config.dataset}-{method_name(config)}"


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested config data as ``{"training.lr": "0.0005", ...}`` (MLflow params)."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    text = json.dumps(data) if isinstance(data, list) else str(data)
    return {prefix.rstrip("."): text[:6000]}


def git_commit(folder: str | os.PathLike[str] = ".") -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def store_digest(store) -> str:
    """sha256 of a feature store's identity attributes and its complete videos (ids, lengths
    and source file digests): equal digests mean the same features."""
    videos = []
    for vid in sorted(store.completed()):
        meta = store.meta(vid)
        videos.append([vid, meta.get("num_features"), meta.get("source_sha256")])
    text = json.dumps({"attrs": store.attrs, "videos": videos}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def start_run(
    config: ExperimentConfig, uri: str, run_name: str, tags: dict[str, str]
) -> tuple[str, str]:
    """Create a run in the dataset's experiment with params, tags and the config file;
    returns ``(experiment_id, run_id)``."""
    from mlflow.entities import Param, RunTag

    c = client(uri)
    name = experiment_name(config)
    experiment = c.get_experiment_by_name(name)
    if experiment is None:
        exp_id = c.create_experiment(
            name, artifact_location=artifact_location(uri), tags={EXPERIMENT_KIND: MODEL_TRAINING}
        )
    else:
        exp_id = experiment.experiment_id
        if experiment.tags.get(EXPERIMENT_KIND) is None:
            c.set_experiment_tag(exp_id, EXPERIMENT_KIND, MODEL_TRAINING)
    run = c.create_run(exp_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in flatten(config.to_yaml_dict()).items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        c.log_batch(run_id, params=params[i : i + 100])
    c.log_batch(run_id, tags=[RunTag("mlflow.runName", run_name)])
    c.log_text(run_id, dump_config(config), "config.yaml")
    return exp_id, run_id


def log_dataset_inputs(
    uri: str,
    run_id: str,
    store: str,
    store_attrs: Mapping[str, Any],
    videos: int,
    digest: str,
    annotations: str,
) -> None:
    """Record the feature store and the annotations as the run's dataset inputs (name,
    digest, source, schema, profile), the MLflow view of what the model was trained on."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from features.weights import sha256_file

    schema = {
        "modalities": list(store_attrs.get("modalities", [])),
        "feature_dims": store_attrs.get("feature_dims", {}),
        "dtype": store_attrs.get("dtype"),
        "stride": store_attrs.get("stride"),
        "clip_length": store_attrs.get("clip_length"),
        "fps": store_attrs.get("fps"),
    }
    inputs = [
        DatasetInput(
            Dataset(
                name=Path(store).name or store,
                digest=digest[:36],
                source_type="zarr",
                source=json.dumps({"uri": store}),
                schema=json.dumps(schema, default=str),
                profile=json.dumps({"videos": videos}),
            ),
            [InputTag("mlflow.data.context", "training")],
        ),
        DatasetInput(
            Dataset(
                name=Path(annotations).name,
                digest=sha256_file(annotations)[:36],
                source_type="local",
                source=json.dumps({"uri": annotations}),
                schema=json.dumps({"format": "ActivityNet-style JSON (database, subsets)"}),
            ),
            [InputTag("mlflow.data.context", "training")],
        ),
    ]
    client(uri).log_inputs(run_id, datasets=inputs)


class RunLogger:
    """Rank 0's handle on the run: metrics per epoch, files as artifacts."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id = uri, run_id
        self.client = client(uri)

    def log_epoch(self, row: Mapping[str, float], loss_terms: Collection[str] = ()) -> None:
        """One epoch's row at step ``row["epoch"]`` (names: ``metric_name``)."""
        from mlflow.entities import Metric

        step = int(row["epoch"])
        now = int(time.time() * 1000)
        metrics = [
            Metric(metric_name(k, loss_terms), float(v), now, step)
            for k, v in row.items()
            if k != "epoch" and isinstance(v, int | float) and math.isfinite(float(v))
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_artifact(self, path: str | os.PathLike[str], folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, os.fspath(path), folder)

    def log_dict(self, data: dict, name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

"""The MLflow model registry: log a trained localizer, register it, keep ``champion`` on the best.

A model is logged as an MLflow 3 LoggedModel of the run (``models:/<model_id>``) whose
artifacts are a tensor-only model directory (``tal.engine.model_files``: safetensors weights,
the config, label names, feature settings and partner bank as JSON; flavour
``pipelines.model_flavor``). Loading one (``load_packaged``) reads those files and rebuilds
the network with the project's code; nothing is unpickled, and a pickled model (an
``mlflow.pytorch`` artifact) is refused by both ``load_packaged`` and ``register``, so
whoever can write to the tracking server cannot run code on a machine that predicts with
the champion. One registered model per dataset and method; the alias ``champion`` moves to a
new version only when its validation score (average mAP for localizers, clip accuracy for
backbones) beats the current champion's, and the comparison is logged with the run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from features.errors import UserInputError
from pipelines.tracking import client

if TYPE_CHECKING:
    from tal.engine.package import PackagedLocalizer

CHAMPION = "champion"
SCORE = "val_average_mAP"


class RegistryError(UserInputError):
    """A model URI or registered model that cannot be used; names it and why."""


@dataclass
class Registration:
    name: str
    version: str
    score: float
    promoted: bool
    previous_version: str | None
    previous_score: float | None
    score_name: str = SCORE

    def line(self) -> str:
        was = (
            f"champion was v{self.previous_version} ({self.previous_score:.4f})"
            if self.previous_version is not None
            else "no champion before"
        )
        verdict = "now champion" if self.promoted else "champion unchanged"
        return (
            f"registered {self.name} v{self.version} ({self.score_name} {self.score:.4f}): "
            f"{verdict}; {was}"
        )


def log_model(
    uri: str,
    run_id: str,
    folder: str | os.PathLike[str],
    kind: str,
    metrics: Mapping[str, float] | None = None,
    step: int = 0,
) -> str:
    """Log the model directory ``folder`` (``tal.engine.model_files``) as the run's
    LoggedModel ``model`` and return ``models:/<model_id>``; ``metrics`` (the run's final
    validation scores, at ``step``) are linked to the model.

    Through a client bound to ``uri``: MLflow's fluent API would set a process-wide
    tracking URI, and a later run in the same process would then log to this store."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    from pipelines.model_flavor import FLAVORS, write_mlmodel

    c = client(uri)
    run = c.get_run(run_id)
    logged = c.create_logged_model(
        run.info.experiment_id, name="model", source_run_id=run_id, model_type=FLAVORS[kind]
    )
    try:
        write_mlmodel(Path(folder), kind, logged.model_id, run_id)
        c.log_model_artifacts(logged.model_id, str(folder))
    except BaseException:
        c.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    c.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    c.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    for key, value in (metrics or {}).items():
        c.log_metric(run_id, key, float(value), step=step, model_id=logged.model_id)
    return f"models:/{logged.model_id}"


def _logged_model_id(model_uri: str) -> str | None:
    """``m-...`` of ``models:/m-...`` (a LoggedModel), else None (a registered model)."""
    ref = model_uri.removeprefix("models:/")
    is_id = ref != model_uri and ref.startswith("m-") and not set("/@") & set(ref)
    return ref if is_id else None


def check_tensor_only(uri: str, model_uri: str, location: str) -> None:
    """Raise ``RegistryError`` unless the artifacts of ``model_uri`` (at ``location``) are a
    tensor-only model directory (what ``log_model`` writes): the registry takes no pickled
    model."""
    from mlflow.artifacts import list_artifacts

    from tal.engine.model_files import MODEL_FILE, PICKLED_MARKERS

    top = {Path(f.path).name for f in list_artifacts(artifact_uri=location, tracking_uri=uri)}
    data = (
        {f"data/{Path(f.path).name}" for f in list_artifacts(f"{location}/data", tracking_uri=uri)}
        if "data" in top
        else set()
    )
    pickled = [m for m in PICKLED_MARKERS if m in top | data]
    if pickled or MODEL_FILE not in top:
        what = f"a pickled model ({pickled[0]})" if pickled else f"no {MODEL_FILE}"
        raise RegistryError(
            f"{model_uri}: {what}; the registry takes only tensor-only models "
            "(pipelines.registry.log_model)"
        )


def _version_score(c, name: str, version: str) -> float:
    """The score a version was registered with (tag ``score``), else its run's metric."""
    mv = c.get_model_version(name, version)
    tags = mv.tags or {}
    if "score" in tags:
        return float(tags["score"])
    run = c.get_run(mv.run_id)
    return float(run.data.metrics[tags.get("score_name", SCORE)])


def champion(uri: str, name: str) -> tuple[str, float] | None:
    """``(version, score)`` of the current champion, or None."""
    from mlflow.exceptions import MlflowException

    c = client(uri)
    try:
        mv = c.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return str(mv.version), _version_score(c, name, mv.version)


def _link_version(c, model_id: str, name: str, version: str) -> None:
    """Record the registered version on the LoggedModel (the tag ``mlflow.modelVersions``
    that ``mlflow.register_model`` sets), so the model's page lists it."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    links = json.loads(c.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
    links.append({"name": name, "version": version})
    c.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(links)})


def register(
    uri: str,
    run_id: str,
    model_uri: str,
    name: str,
    score: float,
    score_name: str = SCORE,
    description: str | None = None,
    model_description: str | None = None,
) -> Registration:
    """Register ``model_uri`` under ``name`` and move ``champion`` to it if it scores higher
    (``score``: the run's ``score_name`` metric, higher is better). ``description`` is the
    version's (what it is, trained on what, its scores); ``model_description`` the registered
    model's, set when it is created."""
    from mlflow.exceptions import MlflowException

    location = _source_of(model_uri, uri)
    check_tensor_only(uri, model_uri, location)
    c = client(uri)
    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name, description=model_description)
    before = champion(uri, name)
    tags = {"score": repr(float(score)), "score_name": score_name, "run_id": run_id}
    model_id = _logged_model_id(model_uri)
    if model_id:
        tags["model_id"] = model_id
    # the LoggedModel's storage location, not ``models:/m-...``: MLflow's SQL registry would
    # resolve that through the process-wide tracking URI rather than ``uri``
    mv = c.create_model_version(
        name,
        location,
        run_id=run_id,
        tags=tags,
        description=description,
        model_id=model_id,
    )
    if model_id:
        _link_version(c, model_id, name, str(mv.version))
    promoted = before is None or score > before[1]
    if promoted:
        c.set_registered_model_alias(name, CHAMPION, mv.version)
    result = Registration(
        name,
        str(mv.version),
        score,
        promoted,
        before[0] if before else None,
        before[1] if before else None,
        score_name,
    )
    c.log_dict(
        run_id,
        {
            "registered_model": name,
            "version": result.version,
            "score_name": score_name,
            "score": score,
            "previous_champion_version": result.previous_version,
            "previous_champion_score": result.previous_score,
            "promoted": promoted,
            "rule": f"champion moves only to a strictly higher {score_name}",
        },
        "champion_comparison.json",
    )
    c.set_tag(run_id, "champion", "promoted" if promoted else "not promoted")
    return result


@dataclass(frozen=True)
class ModelVersion:
    """One registered version as ``tal models`` lists it."""

    name: str
    version: str
    score: float | None
    score_name: str
    aliases: list[str]
    run_id: str
    created: int


def list_versions(uri: str, name: str | None = None) -> list[ModelVersion]:
    """Every registered version (of ``name``, or of all models) with score, run and aliases."""
    c = client(uri)
    names = [name] if name else [m.name for m in c.search_registered_models()]
    rows = []
    for model_name in names:
        model = c.get_registered_model(model_name)
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in c.search_model_versions(f"name='{model_name}'"):
            try:
                score: float | None = _version_score(c, model_name, mv.version)
            except (KeyError, ValueError):
                score = None
            rows.append(
                ModelVersion(
                    name=model_name,
                    version=str(mv.version),
                    score=score,
                    score_name=(mv.tags or {}).get("score_name", SCORE),
                    aliases=sorted(aliases.get(str(mv.version), [])),
                    run_id=str(mv.run_id),
                    created=int(mv.creation_timestamp),
                )
            )
    return sorted(rows, key=lambda r: (r.name, int(r.version)))


def load_packaged(model_uri: str, uri: str | None = None) -> PackagedLocalizer:
    """A packaged localizer from a model directory on disk, a registered model
    (``models:/NAME@champion``, ``models:/NAME/VERSION``), a LoggedModel (``models:/m-...``)
    or a run's artifact (``runs:/RUN/PATH``), read from the tracking store at ``uri``
    (default ``$MLFLOW_TRACKING_URI``; none: an error, never a new local store). Nothing is
    unpickled: a pickled model is refused with a message."""
    from mlflow.artifacts import download_artifacts

    from tal.engine.model_files import ModelFileError
    from tal.engine.package import PackagedLocalizer

    if Path(model_uri).is_dir():
        return PackagedLocalizer.load(model_uri)
    if not model_uri.startswith(("models:/", "runs:/")):
        raise RegistryError(
            f"{model_uri}: expected a model directory, models:/NAME@ALIAS, "
            "models:/NAME/VERSION, models:/MODEL_ID or runs:/RUN/PATH"
        )
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RegistryError(
            f"{model_uri}: no tracking store to read it from; give --tracking-uri or set "
            "MLFLOW_TRACKING_URI"
        )
    location = _source_of(model_uri, uri)
    with tempfile.TemporaryDirectory(prefix="tal-model-") as tmp:
        folder = download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=uri)
        try:
            return PackagedLocalizer.load(folder)
        except ModelFileError as exc:
            raise RegistryError(str(exc).replace(str(Path(folder)), model_uri)) from None


def _source_of(model_uri: str, uri: str, depth: int = 0) -> str:
    """The artifact location behind ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``models:/MODEL_ID`` or ``runs:/RUN/PATH`` in the store at ``uri``."""
    from mlflow.exceptions import MlflowException

    if depth > 3:
        raise RegistryError(f"{model_uri}: its source refers to other models more than 3 deep")

    c = client(uri)
    try:
        if model_uri.startswith("runs:/"):
            run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
            return f"{c.get_run(run_id).info.artifact_uri}/{path}"
        model_id = _logged_model_id(model_uri)
        if model_id is not None:
            return c.get_logged_model(model_id).artifact_location
        ref = model_uri.removeprefix("models:/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = c.get_model_version_by_alias(name, alias)
        else:
            name, _, version = ref.partition("/")
            mv = c.get_model_version(name, version)
    except MlflowException as exc:
        raise RegistryError(f"{model_uri}: not found in {uri} ({exc.message})") from None
    if str(mv.source).startswith(("models:/", "runs:/")):
        return _source_of(str(mv.source), uri, depth + 1)
    return str(mv.source)

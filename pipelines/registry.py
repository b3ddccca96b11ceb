"""The MLflow model registry: log a trained localizer, register it, keep ``champion`` on the best.

A model is logged with ``mlflow.pytorch`` as a pickled ``PackagedLocalizer`` (weights, config,
label map, feature timing and partner bank together), so ``mlflow.pytorch.load_model`` gives a
module that predicts on its own. ``serialization_format="pickle"``: MLflow's default
(torch.export) fixes input shapes, and videos differ in length. One registered model per
dataset and method; the alias ``champion`` moves to a new version only when its validation
score (average mAP for localizers, clip accuracy for backbones) beats the current champion's,
and the comparison is logged with the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.tracking import client

if TYPE_CHECKING:
    import torch

    from tal.engine.package import PackagedLocalizer

CHAMPION = "champion"
SCORE = "val_average_mAP"
PIP_REQUIREMENTS = ["tal-pipeline", "torch==2.13.0", "numpy"]


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


def log_model(uri: str, run_id: str, model: torch.nn.Module) -> str:
    """Log ``model`` (a PackagedLocalizer, an I3D) to the run as ``model``; returns its
    artifact URI.

    Saved with ``mlflow.pytorch.save_model`` and uploaded through a client bound to ``uri``:
    MLflow's fluent API would set a process-wide tracking URI (and ``MLFLOW_TRACKING_URI``),
    and a later run in the same process would then log to this store."""
    import tempfile

    import mlflow.pytorch

    c = client(uri)
    with tempfile.TemporaryDirectory(prefix="tal-model-") as folder:
        path = f"{folder}/model"
        mlflow.pytorch.save_model(
            model, path, serialization_format="pickle", pip_requirements=PIP_REQUIREMENTS
        )
        c.log_artifacts(run_id, path, "model")
    return f"{c.get_run(run_id).info.artifact_uri}/model"


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


def register(
    uri: str, run_id: str, model_uri: str, name: str, score: float, score_name: str = SCORE
) -> Registration:
    """Register ``model_uri`` under ``name`` and move ``champion`` to it if it scores higher
    (``score``: the run's ``score_name`` metric, higher is better)."""
    from mlflow.exceptions import MlflowException

    c = client(uri)
    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name)
    before = champion(uri, name)
    tags = {"score": repr(float(score)), "score_name": score_name, "run_id": run_id}
    mv = c.create_model_version(name, model_uri, run_id=run_id, tags=tags)
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
    """A registered or logged model (``models:/NAME@champion``, ``runs:/ID/model``, ...)."""
    import mlflow.pytorch

    if uri and model_uri.startswith(("models:/", "runs:/")):
        # resolve through a client bound to ``uri`` rather than the process-wide setting
        model_uri = _source_of(model_uri, uri)
    return mlflow.pytorch.load_model(model_uri, map_location="cpu")


def _source_of(model_uri: str, uri: str) -> str:
    """The artifact location behind ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or
    ``runs:/RUN/PATH`` in the store at ``uri``."""
    c = client(uri)
    if model_uri.startswith("runs:/"):
        run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
        return f"{c.get_run(run_id).info.artifact_uri}/{path}"
    ref = model_uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return c.get_model_version_by_alias(name, alias).source
    name, _, version = ref.partition("/")
    return c.get_model_version(name, version).source

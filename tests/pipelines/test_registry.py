"""The registry on a real MLflow SQLite store: champion moves only to a strictly better
version, the comparison is logged, `tal models` lists it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipelines.cli import exit_status as run
from pipelines.registry import CHAMPION, champion, list_versions, log_model, register
from pipelines.tracking import artifact_location, client


def _run(uri: str, score: float) -> str:
    c = client(uri)
    experiment = c.get_experiment_by_name("reg") or c.get_experiment(
        c.create_experiment("reg", artifact_location=artifact_location(uri))
    )
    run_id = c.create_run(experiment.experiment_id).info.run_id
    c.log_metric(run_id, "val_average_mAP", score, step=1)
    return run_id


def test_champion_moves_only_to_a_strictly_better_version(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = torch.nn.Linear(2, 1)
    outcomes = []
    for score in (0.5, 0.4, 0.5, 0.6):
        run_id = _run(uri, score)
        outcomes.append(register(uri, run_id, log_model(uri, run_id, model), "m", score))
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

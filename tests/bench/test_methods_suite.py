"""bench/methods.py --suite: its plan (which methods where, training length), its readings of
an interval, and a CI-sized run end to end that a second invocation resumes without training."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import methods_suite as suite  # noqa: E402

from tal.evaluation.bootstrap import Interval  # noqa: E402
from tal.synth.presets import PRESET_NAMES  # noqa: E402


def _args(**kw) -> argparse.Namespace:
    base = dict(presets=None, methods=None, seeds=None, scale=None, quick=False, set=[])
    return argparse.Namespace(**{**base, **kw})


def test_every_preset_has_the_baseline_and_each_mechanism_runs_in_its_preset():
    assert set(suite.PRESET_METHODS) == set(PRESET_NAMES)
    for preset, keys in suite.PRESET_METHODS.items():
        assert keys[0] == suite.BASELINE, preset
        assert set(keys) <= set(suite.METHODS)
    for m in suite.MECHANISMS:
        assert {m.method, m.reference} <= set(suite.PRESET_METHODS[m.preset]), m
    # camera's mechanism (ATA, a backbone) is bench/ata_pretraining.py's
    assert {m.preset for m in suite.MECHANISMS} == set(PRESET_NAMES) - {"standard", "camera"}


def test_training_length_keeps_the_videos_seen_of_the_recipe():
    # the demo recipe: 100 epochs of 14 videos; 72 videos at scale 1 -> ceil(19.4)
    assert suite.epochs_for(100, 72, 1.0) == 20
    assert suite.epochs_for(100, 72, 0.5) == 10
    assert suite.epochs_for(100, 14, 1.0) == 100
    assert suite.epochs_for(5, 180, 0.5) == 1  # never below one epoch
    assert suite.epochs_for(100, 0, 1.0) == 1400  # no division by zero


def test_the_plan_always_keeps_the_baseline_and_quick_is_small():
    plan = suite.build_plan(_args(methods=["asl"]))
    assert plan.presets == list(PRESET_NAMES)
    assert all(keys == ("baseline", "asl") for keys in plan.methods.values())
    assert plan.seeds == [0, 1, 2] and plan.scale == 0.3 and plan.sets == []
    quick = suite.build_plan(_args(quick=True, set=["training.batch_size=2"]))
    assert quick.presets == suite.QUICK_PRESETS and quick.seeds == [0, 1]
    assert all(set(k) <= set(suite.QUICK_METHODS) for k in quick.methods.values())
    assert quick.sets == [*suite.QUICK_SETS, "training.batch_size=2"]


def test_a_reading_follows_where_the_interval_lies():
    assert suite.reading(Interval(0.05, 0.01, 0.09)) == "gain"
    assert suite.reading(Interval(-0.05, -0.09, -0.01)) == "loss"
    assert suite.reading(Interval(0.02, -0.01, 0.05)) == "no difference shown"
    assert suite.reading(Interval(0.0, 0.0, 0.0)) == "no difference shown"
    assert suite.reading(None) == ""
    assert suite.signed(Interval(0.012, -0.01, 0.035)) == "+0.012 [-0.010, +0.035]"


def test_a_run_never_generates_data_and_evaluates_once_at_the_end(tmp_path):
    cfg = suite.preset_config("configs/suite.yaml", "keyframes", tmp_path, [])
    plan = suite.build_plan(_args(presets=["keyframes"]))
    settings = suite.run_settings("asl", 2, cfg, 54, plan, 0, "sqlite:///x.db", tmp_path / "r")
    assert settings[:2] == ["configs/demo_asl.yaml", "name=suite-keyframes-asl"]
    assert "data.synth=null" in settings
    assert f"features.store={cfg.features.store}" in settings
    epochs = suite.epochs_for(100, 54, plan.scale)
    assert f"training.epochs={epochs}" in settings
    assert f"training.eval_every={epochs}" in settings
    assert "seed=2" in settings and "evaluation.subset=validation" in settings
    ata = suite.run_settings("i2net-ata", 0, cfg, 54, plan, 0, "sqlite:///x.db", tmp_path / "a")
    assert f"features.weights={tmp_path / 'a' / 'backbone_rgb.pt'}" in ata
    assert not any(s.startswith("features.store=") for s in ata)  # its own store


@pytest.mark.slow
def test_quick_suite_runs_end_to_end_and_resumes_from_its_records(tmp_path):
    out = tmp_path / "suite"
    command = [
        sys.executable,
        str(REPO / "bench" / "methods.py"),
        "--suite",
        "--quick",
        "--presets",
        "standard",
        "--seeds",
        "0",
        "--resamples",
        "200",
        "--out",
        str(out),
    ]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    page = (out / "methods.md").read_text()
    assert (out / "methods.png").stat().st_size > 10_000
    overview, per_preset = page.split("## Per preset")

    def method_rows(text: str) -> list[str]:
        return [r for r in text.splitlines() if r.startswith(("| ActionFormer", "| I2Net"))]

    # every cell: a mean with its interval, in the overview and in the preset's table;
    # I2Net: a paired difference to the baseline with its interval
    for rows in (method_rows(overview), method_rows(per_preset)):
        assert len(rows) == 2
        assert all("[" in row.split("|")[2] for row in rows)
    assert "[" in method_rows(per_preset)[1].split("|")[3]
    records = sorted((out / "standard").glob("*_seed*/suite.json"))
    assert [r.parent.name for r in records] == [
        "baseline_seed0",
        "i2net_seed0",
    ]
    extraction = json.loads((out / "standard" / "extraction.json").read_text())
    assert extraction["videos"] == 10 and extraction["extract_seconds"] > 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    for record in records:
        done = json.loads(record.read_text())
        run = client.get_run(done["run_id"])
        assert run.data.metrics["test_average_mAP"] == pytest.approx(done["test"])
        assert [a.path for a in client.list_artifacts(done["run_id"], "test")] == [
            "test/test_predictions.json"
        ]

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reused") == 2
    assert "epoch 1/" not in again.stdout  # nothing trained again
    assert (out / "methods.md").read_text().split("## Provenance")[0].count("[") == page.split(
        "## Provenance"
    )[0].count("[")


def test_the_overview_puts_each_method_in_a_row_and_leaves_presets_it_skips_empty():
    from tal.evaluation.bootstrap import MethodIntervals

    def iv(name: str, x: float) -> MethodIntervals:
        return MethodIntervals(name, 3, Interval(x, x - 0.02, x + 0.03), None)

    results = {
        "standard": {"baseline": iv("baseline", 0.3), "co2net": iv("co2net", 0.1)},
        "context": {"baseline": iv("baseline", 0.5)},
    }
    lines = suite.overview_table(["standard", "context"], results).splitlines()
    assert lines[0] == "| method | `standard` | `context` |"
    assert (
        lines[2] == "| ActionFormer-style baseline | 0.300 [0.280, 0.330] | 0.500 [0.480, 0.530] |"
    )
    assert lines[3] == "| CO2-Net (video-level labels only) | 0.100 [0.080, 0.130] | - |"
    assert len(lines) == 4


def test_a_mechanism_row_reads_a_method_that_adds_every_missing_instance_as_a_gain():
    from tal.data.predictions import Detections
    from tal.evaluation.detection import match_detections
    from tal.evaluation.random_case import random_case

    gt, det = random_case(12, 4, 9.0, seed=2)
    exact = [
        (v.video_id, i.label, i.start, i.end, 2.0)  # above every random score
        for v in gt.videos.values()
        if v.subset == "validation"
        for i in v.instances
    ]
    better = Detections.concat([det, Detections.from_rows(exact)])
    tious = (0.3, 0.5, 0.7)
    matched = {
        "baseline": [match_detections(gt, det, "validation", tious)] * 2,
        "asl": [match_detections(gt, better, "validation", tious)] * 2,
    }
    row = suite.mechanism_row(suite.MECHANISMS[2], matched, resamples=200)
    assert row.startswith("| ASL's action sensitivity | `keyframes` | ASL vs ActionFormer-style")
    assert row.endswith("| gain |")
    same = {"baseline": matched["baseline"], "asl": matched["baseline"]}
    row = suite.mechanism_row(suite.MECHANISMS[2], same, resamples=200)
    assert "+0.000 [+0.000, +0.000] | no difference shown |" in row


def test_the_readme_headline_holds_the_overview_and_every_mechanism_row():
    from tal.evaluation.bootstrap import MethodIntervals

    plan = suite.build_plan(_args())
    iv = MethodIntervals("baseline", 3, Interval(0.3, 0.28, 0.33), None)
    results = {p: {"baseline": iv} for p in plan.presets}
    rows = ["| intra | `context` | I2Net vs baseline | -0.1 [-0.2, -0.0] | loss |"]
    body = suite.readme_body(plan, results, rows)
    assert body.startswith("Test average mAP [95% CI], seeds 0 1 2, 0.3 x")
    assert suite.overview_table(plan.presets, results) in body
    assert body.endswith("|---|---|---|---|---|\n" + rows[0])

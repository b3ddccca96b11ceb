"""One command layer: `python -m pipelines COMMAND` is `tal COMMAND`; `tal --help` and
`tal eval` start without torch or zarr; input errors are one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "zarr", "ray", "mlflow", "prefect")
PROBE = """
import json, sys
from pipelines.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def _probe(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _annotations(tmp_path: Path) -> tuple[Path, Path]:
    gt = tmp_path / "gt.json"
    video = {"subset": "validation", "duration": 10.0, "fps": 10.0}
    video["annotations"] = [{"label": "jump", "segment": [1.0, 3.0]}]
    gt.write_text(json.dumps({"version": "1.3", "database": {"v1": video}}))
    pred = tmp_path / "pred.json"
    found = [{"label": "jump", "segment": [1.0, 3.2], "score": 0.9}]
    pred.write_text(json.dumps({"version": "1.3", "results": {"v1": found}}))
    return gt, pred


def test_help_and_eval_import_neither_torch_nor_zarr(tmp_path):
    assert _probe("--help") == {"code": 0, "heavy": []}
    gt, pred = _annotations(tmp_path)
    assert _probe("eval", "--ground-truth", str(gt), "--predictions", str(pred)) == {
        "code": 0,
        "heavy": [],
    }


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_module_form_takes_the_same_commands_and_options():
    tal = str(Path(sys.executable).with_name("tal"))
    module = [sys.executable, "-m", "pipelines"]
    tal_help, module_help = _run(tal, "--help"), _run(*module, "--help")
    assert tal_help.returncode == module_help.returncode == 0
    assert tal_help.stdout == module_help.stdout
    for command in ("train", "extract", "pairs", "train-backbone", "predict", "infer", "demo"):
        assert f" {command} " in module_help.stdout, command
    show = ["config", "show", "--config", "configs/demo.yaml", "--set", "training.epochs=3"]
    a, b = _run(tal, *show), _run(*module, *show)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout
    assert "epochs: 3" in a.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config", "show", "--set", "model.intra_attention=maybe"], "model.intra_attention"),
        (["config", "show", "--set", "model.name=nope"], "unknown method 'nope'"),
        (["train", "--config", "missing.yaml"], "missing.yaml: config file not found"),
    ],
)
def test_input_errors_are_one_line_and_exit_2(argv, message):
    done = _run(sys.executable, "-m", "pipelines", *argv)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_no_job_module_imports_the_cli():
    for path in (REPO / "pipelines").glob("*.py"):
        if path.name in {"cli.py", "__main__.py"}:
            continue
        text = path.read_text(encoding="utf-8")
        assert "pipelines.cli" not in text, path.name

"""The local stack (infra/local/stack.py) for real: up, a `ray job submit` training run that
logs to the MLflow server, status, a taken port, down leaving no process behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STACK = [sys.executable, str(ROOT / "infra" / "local" / "stack.py")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stack(action: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*STACK, action], env=env, capture_output=True, text=True, timeout=timeout
    )


def _session_processes(stack_dir: Path) -> list[str]:
    """Processes whose command line names this stack's folder or ports (left-overs)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(stack_dir) in line]


def test_stack_up_job_submit_and_down(tmp_path, toy_store):
    head_address = None
    ports = {k: _free_port() for k in ("RAY", "RAY_DASHBOARD", "RAY_AGENT", "MLFLOW", "PREFECT")}
    env = {**os.environ, "STACK_DIR": str(tmp_path / "stack")}
    env |= {f"STACK_{k}_PORT": str(v) for k, v in ports.items()}
    try:
        up = _stack("up", env)
        assert up.returncode == 0, up.stdout + up.stderr
        for name in ("ray", "mlflow", "prefect"):
            assert f"{name}: ready at http://127.0.0.1:" in up.stdout
        status = _stack("status", env)
        assert status.returncode == 0 and status.stdout.count(" ready ") == 3
        exports = json.loads((tmp_path / "stack" / "env.json").read_text())
        head_address = (tmp_path / "stack" / "ray_current_cluster").read_text()
        assert exports["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{ports['MLFLOW']}"

        again = _stack("up", env)  # already running: nothing new starts
        assert again.returncode == 0 and "started" not in again.stdout

        # a training job through `ray job submit`, logging to the MLflow server
        _, ann, store = toy_store
        config = tmp_path / "toy.yaml"
        config.write_text(yaml.safe_dump({
            "name": "toy", "dataset": "toy", "run_dir": str(tmp_path / "run"),
            "model": {"embed_dim": 32, "num_heads": 4, "num_levels": 3, "max_seq_len": 64,
                      "attention_window": 5},
            "training": {"epochs": 2, "eval_every": 2, "batch_size": 4, "num_workers": 2,
                         "storage_path": str(tmp_path / "ckpt")},
        }))  # fmt: skip
        job_env = {**env, **exports}
        job = subprocess.run(
            [str(Path(sys.executable).parent / "ray"), "job", "submit", "--working-dir", str(ROOT),
             "--", "python", "-m", "pipelines.train", "--config", str(config),
             "--annotations", str(ann), "--store", str(store)],
            env=job_env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr

        from pipelines.tracking import client

        c = client(exports["MLFLOW_TRACKING_URI"])
        experiment = c.get_experiment_by_name("toy")
        runs = c.search_runs([experiment.experiment_id])
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        assert runs[0].data.tags["workers"] == "2" and "val_average_mAP" in runs[0].data.metrics
        assert str(c.get_model_version_by_alias("toy-i2net", "champion").version) == "1"

        # a port that something else listens on is refused with the port and the service
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen()
            port = blocker.getsockname()[1]
            taken = {**env, "STACK_DIR": str(tmp_path / "other"), "STACK_MLFLOW_PORT": str(port)}
            refused = _stack("up", taken)
        assert refused.returncode == 2
        assert f"port {port} on 127.0.0.1 (for mlflow) is taken" in refused.stderr
        assert not (tmp_path / "other" / "mlflow.pid").exists()  # nothing was started
    finally:
        down = _stack("down", env)
    assert down.returncode == 0 and down.stdout.count("stopped") == 3
    assert _session_processes(tmp_path / "stack") == []
    for port in ports.values():  # nothing listens any more
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, port
    assert _stack("status", env).returncode == 1
    current = Path("/tmp/ray/ray_current_cluster")  # no pointer to the stopped head is left
    assert not current.is_file() or current.read_text() != head_address

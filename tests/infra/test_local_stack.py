"""The local stack (infra/local/stack.py) for real: up; a `ray job submit` training run that logs
to the MLflow server; the Prefect deployments of prefect.yaml run by a process worker, with
`tal-pipeline` killed during extraction and run again; down leaving no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))  # the helpers beside this file

from prefect_worker import start_worker, stop_worker, wait_for  # noqa: E402

BIN = Path(sys.executable).parent
STACK = [sys.executable, str(ROOT / "infra" / "local" / "stack.py")]
POOL = "tal-local"  # the work pool of prefect.yaml

# tal-pipeline on 10 synthetic videos of 20-30 s with 64 px features: extraction takes long
# enough (about 1 s a video on 2 cores) to be killed half way
KILLED_SYNTH = {"videos": 10, "min_duration": 20, "max_duration": 30}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stack(action: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*STACK, action], env=env, capture_output=True, text=True, timeout=timeout
    )


def _session_processes(marker: str) -> list[str]:
    """Processes whose command line names ``marker`` (a folder of this test)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return not state.stdout.strip().startswith("Z")


class Stack:
    def __init__(self, root: Path):
        self.root = root
        self.ports = {
            k: _free_port() for k in ("RAY", "RAY_DASHBOARD", "RAY_AGENT", "MLFLOW", "PREFECT")
        }
        self.env = {**os.environ, "STACK_DIR": str(root / "stack")}
        self.env |= {f"STACK_{k}_PORT": str(v) for k, v in self.ports.items()}
        self.exports: dict[str, str] = {}
        self.head_address: str | None = None
        self.up_stdout = ""
        self.pids: list[int] = []  # processes the tests start against the stack (a worker)

    @property
    def client_env(self) -> dict[str, str]:
        """What a user's shell has after the exports of `make status`."""
        return {**self.env, **self.exports, "PREFECT_HOME": str(self.root / "prefect-client")}

    def prefect(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "prefect"), *args],
            env=self.client_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def api(self, path: str, body: dict | None = None):
        url = self.exports["PREFECT_API_URL"] + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"))
    up = _stack("up", s.env)
    assert up.returncode == 0, up.stdout + up.stderr
    s.exports = json.loads((s.root / "stack" / "env.json").read_text())
    s.head_address = (s.root / "stack" / "ray_current_cluster").read_text()
    s.up_stdout = up.stdout
    yield s
    _stack("down", s.env)  # the last test stops it and checks; this covers a failure before


def test_stack_is_up_and_refuses_a_taken_port(stack, tmp_path):
    for name in ("ray", "mlflow", "prefect"):
        assert f"{name}: ready at http://127.0.0.1:" in stack.up_stdout
    status = _stack("status", stack.env)
    assert status.returncode == 0 and status.stdout.count(" ready ") == 3
    _assert_loopback_only(stack, status.stdout)
    assert stack.exports["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{stack.ports['MLFLOW']}"
    assert stack.exports["RAY_ADDRESS"] == f"127.0.0.1:{stack.ports['RAY']}"

    again = _stack("up", stack.env)  # already running: nothing new starts
    assert again.returncode == 0 and "started" not in again.stdout

    # a port that something else listens on is refused with the port and the service
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        taken = {**stack.env, "STACK_DIR": str(tmp_path / "other"), "STACK_MLFLOW_PORT": str(port)}
        refused = _stack("up", taken)
    assert refused.returncode == 2
    assert f"port {port} on 127.0.0.1 (for mlflow) is taken" in refused.stderr
    assert not (tmp_path / "other" / "mlflow.pid").exists()  # nothing was started


def test_ray_job_submit_trains_and_logs_to_the_mlflow_server(stack, tmp_path, toy_store):
    _, ann, store = toy_store
    config = tmp_path / "toy.yaml"
    toy = {
        "name": "toy",
        "dataset": "toy",
        "run_dir": str(tmp_path / "run"),
        "model": {
            "embed_dim": 32,
            "num_heads": 4,
            "num_levels": 3,
            "max_seq_len": 64,
            "attention_window": 5,
        },
        "training": {
            "epochs": 2,
            "eval_every": 2,
            "batch_size": 4,
            "num_workers": 2,
            "storage_path": str(tmp_path / "ckpt"),
        },
    }
    config.write_text(yaml.safe_dump(toy))
    submit = [str(BIN / "ray"), "job", "submit", "--working-dir", str(ROOT)]
    submit += ["--address", f"http://127.0.0.1:{stack.ports['RAY_DASHBOARD']}"]
    train = ["python", "-m", "pipelines", "train", "--config", str(config)]
    train += ["--annotations", str(ann), "--store", str(store)]
    job = subprocess.run(
        [*submit, "--", *train], env=stack.client_env, capture_output=True, text=True, timeout=400
    )
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout + job.stderr

    from pipelines.tracking import client

    c = client(stack.exports["MLFLOW_TRACKING_URI"])
    runs = c.search_runs([c.get_experiment_by_name("toy").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["workers"] == "2" and "val_average_mAP" in runs[0].data.metrics
    assert str(c.get_model_version_by_alias("toy-i2net", "champion").version) == "1"


def _markers(store: Path) -> dict[str, int]:
    """Complete videos of a local store, with the mtime of their completion marker."""
    done = store / "_done"
    if not done.is_dir():
        return {}
    return {p.name: (p / "zarr.json").stat().st_mtime_ns for p in done.iterdir() if p.is_dir()}


def test_deployment_killed_during_extraction_resumes_on_the_next_run(
    stack, tmp_path, tiny_pipeline_config
):
    run_dir = tmp_path / "run"
    config = tmp_path / "deployed.yaml"
    killed = tiny_pipeline_config(run_dir, "deployed", **KILLED_SYNTH)
    killed["features"]["input_size"] = 64
    config.write_text(yaml.safe_dump(killed))
    store = run_dir / "features.zarr"

    pool = stack.prefect("work-pool", "create", POOL, "--type", "process")
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deployed = stack.prefect("--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    names = {d["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    flows = {
        f["id"]: f["name"] for f in stack.api("/flows/filter", {})
    }  # every deployment of prefect.yaml exists, for its flow
    made = {(flows[d["flow_id"]], d["name"]) for d in stack.api("/deployments/filter", {})}
    assert len(made) == 7 and {name for _, name in made} == names
    assert {f for f, _ in made} == {
        "tal-pipeline",
        "train-backbone",
        "extract-features",
        "build-pairs",
        "train-model",
        "evaluate-model",
        "predict-videos",
    }
    # the cluster's deployments (infra/prefect/cluster.yaml) are accepted by the server too
    assert stack.prefect("work-pool", "create", "tal-cluster", "--type", "process").returncode == 0
    cluster = stack.prefect(
        "--no-prompt", "deploy", "--all", "--prefect-file", "infra/prefect/cluster.yaml"
    )
    assert cluster.returncode == 0, cluster.stdout[-3000:] + cluster.stderr[-3000:]
    on_cluster = [d for d in stack.api("/deployments/filter", {}) if d["name"] == "thumos14"]
    assert len(on_cluster) == 3 and {d["work_pool_name"] for d in on_cluster} == {"tal-cluster"}
    assert all(d["job_variables"]["env"]["RAY_ADDRESS"] == "127.0.0.1:6379" for d in on_cluster)
    assert all(
        d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == "/app"
        for d in on_cluster
    )

    worker = start_worker(POOL, stack.client_env, tmp_path, tmp_path / "worker.log")
    stack.pids.append(worker.pid)
    try:
        # the first run is killed (the flow run's whole process group) once two videos are done
        run_demo = ("deployment", "run", "tal-pipeline/demo", "--param", f"config={config}")
        started = stack.prefect(*run_demo)
        assert started.returncode == 0, started.stdout + started.stderr
        first = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout).group(1)
        wait_for(lambda: len(_markers(store)) >= 2, 300, "two extracted videos")
        flow_runs = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(worker.pid)], capture_output=True, text=True
        ).stdout.split()
        assert flow_runs, "the worker runs no flow-run process"
        for pid in map(int, flow_runs):
            stack.pids.append(pid)
            os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not any(_alive(int(p)) for p in flow_runs), 30, "the killed run")
        state = wait_for(
            lambda: (
                stack.api(f"/flow_runs/{first}")["state_type"] in ("CRASHED", "FAILED")
                and stack.api(f"/flow_runs/{first}")["state_type"]
            ),
            60,
            "the worker to report it",
            interval=1,
        )
        assert state == "CRASHED"
        finished = _markers(store)
        assert 2 <= len(finished) < 10, finished

        # the second run resumes: the finished videos are not extracted again
        again = stack.prefect(*run_demo, "--watch", timeout=600)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "Completed" in again.stdout
    finally:
        stop_worker(worker)
    summary = json.loads((run_dir / "pipeline_summary.json").read_text())
    extracted = summary["extracted"]
    assert extracted["skipped"] == len(finished) and extracted["failed"] == 0
    assert extracted["done"] == 10 - len(finished)
    after = _markers(store)
    assert len(after) == 10 and all(after[v] == t for v, t in finished.items())

    # the run, its test metrics and the champion are on the stack's MLflow server
    from pipelines.tracking import client

    trained = summary["trained"]
    assert trained["tracking_uri"] == stack.exports["MLFLOW_TRACKING_URI"]
    c = client(trained["tracking_uri"])
    run = c.get_run(trained["run_id"])
    assert run.info.status == "FINISHED" and "test_average_mAP" in run.data.metrics
    champion = c.get_model_version_by_alias("deployed-i2net", "champion")
    assert champion.run_id == trained["run_id"]
    assert (run_dir / "timeline_test_videos.png").read_bytes()[:4] == b"\x89PNG"
    artifacts = stack.api(
        "/artifacts/filter", {"artifacts": {"key": {"any_": ["tal-pipeline-summary"]}}}
    )
    assert len(artifacts) == 1 and trained["run_id"] in artifacts[0]["data"]
    assert "| tIoU | validation mAP |" in artifacts[0]["data"]
    server = stack.exports["MLFLOW_TRACKING_URI"]
    view = "?workflowType=machine_learning"  # the UI's model-training side
    run_page = f"{server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}{view}"
    assert f"[MLflow run]({run_page})" in artifacts[0]["data"]
    model_page = f"{server}/#/models/deployed-i2net/versions/1{view}"
    assert f"[MLflow model]({model_page})" in artifacts[0]["data"]

    # the README's schedule example
    schedule = ("deployment", "schedule", "create", "tal-pipeline/demo")
    made = stack.prefect(*schedule, "--cron", "0 3 * * *", "--timezone", "UTC")
    assert made.returncode == 0, made.stdout + made.stderr
    assert (
        "cron: 0 3 * * *"
        in stack.prefect("deployment", "schedule", "ls", "tal-pipeline/demo").stdout
    )


def _assert_loopback_only(stack: Stack, status_stdout: str) -> None:
    """Every socket the stack's processes (and their children: Ray's GCS, raylet, agents,
    workers) listen on is on loopback, as `stack.py status` says and psutil confirms."""
    from pipelines.listeners import exposed, listeners

    pids = [
        int((stack.root / "stack" / f"{n}.pid").read_text()) for n in ("ray", "mlflow", "prefect")
    ]
    found = listeners(pids)
    names = " ".join(s.process for s in found)
    assert "gcs_server" in names and "raylet" in names and "DashboardAgent" in names, names
    assert not exposed(found), [str(s) for s in exposed(found)]
    assert "all on loopback" in status_stdout and "warning" not in status_stdout


def test_down_stops_everything(stack):
    # after the jobs and flow runs above (their Ray workers may still idle)
    _assert_loopback_only(stack, _stack("status", stack.env).stdout)
    down = _stack("down", stack.env)
    assert down.returncode == 0 and down.stdout.count("stopped") == 3
    assert _session_processes(str(stack.root)) == []
    assert not [pid for pid in stack.pids if _alive(pid)]
    for port in stack.ports.values():  # nothing listens any more
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, port
    assert _stack("status", stack.env).returncode == 1
    current = Path("/tmp/ray/ray_current_cluster")  # no pointer to the stopped head is left
    assert not current.is_file() or current.read_text() != stack.head_address

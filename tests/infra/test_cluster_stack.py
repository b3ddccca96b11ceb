"""The cluster profile of the loopback stack for real (`make up PROFILE=cluster`): PostgreSQL,
moto's S3 API, MLflow on PostgreSQL with artifacts in S3, Prefect on PostgreSQL, a Ray head and
a second Ray node; every listener on loopback; credentials from the environment; down leaves
nothing behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))  # the helpers beside this file

from prefect_worker import start_worker, stop_worker, wait_for  # noqa: E402

STACK = [sys.executable, str(ROOT / "infra" / "local" / "stack.py")]
BIN = Path(sys.executable).parent
SERVICES = ("postgres", "s3", "ray", "mlflow", "prefect", "ray-node2")
PORTS = ("RAY", "RAY_DASHBOARD", "RAY_AGENT", "MLFLOW", "PREFECT", "POSTGRES", "S3")
# credentials as a user's shell (or a secret store) would give them; never in the repository
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret-for-the-test",
    "S3_ACCESS_KEY": "tal-test-key",
    "S3_SECRET_KEY": "s3-secret-for-the-test",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stack(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*STACK, *args], env=env, capture_output=True, text=True, timeout=timeout)


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        ports = {k: _free_port() for k in (*PORTS, "RAY_NODE2_AGENT")}
        self.ports = ports
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STACK_", "AWS_"))}
        self.env = {**env, **SECRETS, "STACK_DIR": str(root / "stack")}
        self.env |= {f"STACK_{k}_PORT": str(v) for k, v in ports.items()}
        self.env["STACK_RAY_NODE_CPUS"] = "1"
        self.exports: dict[str, str] = {}
        self.up = subprocess.CompletedProcess([], 0)

    @property
    def client_env(self) -> dict[str, str]:
        """What a user's shell has after the exports of `make status`."""
        return {**self.env, **self.exports, "PREFECT_HOME": str(self.root / "prefect-client")}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A command of the repository's environment, run as that user from the checkout."""
        return subprocess.run(
            [*args], env=self.client_env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )

    def pids(self) -> list[int]:
        return [int((self.root / "stack" / f"{n}.pid").read_text()) for n in SERVICES]


def _query(cluster: Cluster, database: str, sql: str, *args: object) -> list[tuple]:
    """Rows of ``sql`` on one of the profile's databases, as the test's user would read them."""
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1",
        port=cluster.ports["POSTGRES"],
        user="tal",
        password=SECRETS["POSTGRES_PASSWORD"],
        dbname=database,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def _s3(cluster: Cluster):
    """A boto3 S3 client for the profile's endpoint with the test's keys."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=cluster.exports["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=SECRETS["S3_ACCESS_KEY"],
        aws_secret_access_key=SECRETS["S3_SECRET_KEY"],
        region_name="us-east-1",
    )


@pytest.fixture(scope="module")
def cluster():
    # PostgreSQL runs as nobody when the tests run as root: its folder must be reachable, which
    # pytest's own temporary folders (mode 0700) are not
    root = Path(tempfile.mkdtemp(prefix="tal-cluster-"))
    root.chmod(0o755)
    c = Cluster(root)
    c.up = _stack(c.env, "up", "--profile", "cluster")
    assert c.up.returncode == 0, c.up.stdout + c.up.stderr
    c.exports = json.loads((c.root / "stack" / "env.json").read_text())
    yield c
    _stack(c.env, "down")  # the last test stops it and checks; this covers a failure before
    shutil.rmtree(root, ignore_errors=True)


def test_every_service_is_up_on_loopback_with_the_environments_credentials(cluster):
    for name in SERVICES:
        assert f"{name}: ready at " in cluster.up.stdout
    status = _stack(cluster.env, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "profile: cluster" in status.stdout
    assert "all on loopback" in status.stdout and "warning" not in status.stdout

    from pipelines.listeners import exposed, listeners

    found = listeners(cluster.pids())
    names = " ".join(s.process for s in found)
    for process in ("postgres", "moto_server", "gcs_server", "raylet", "DashboardAgent"):
        assert process in names, names
    assert not exposed(found), [str(s) for s in exposed(found)]
    assert sum(s.process == "raylet" for s in found) >= 2  # the head's and the second node's

    # the exports point fsspec and boto3 at the S3 API, with the credentials given
    e = cluster.exports
    assert e["AWS_ACCESS_KEY_ID"] == SECRETS["S3_ACCESS_KEY"]
    assert e["AWS_SECRET_ACCESS_KEY"] == SECRETS["S3_SECRET_KEY"]
    assert e["AWS_ENDPOINT_URL_S3"] == f"http://127.0.0.1:{cluster.ports['S3']}"
    assert f"export AWS_ENDPOINT_URL_S3={e['AWS_ENDPOINT_URL_S3']}" in status.stdout
    assert not (cluster.root / "stack" / "credentials.env").exists()  # nothing generated
    # no server's command line shows the database password (MLflow's URL is in its environment)
    for pid in cluster.pids():
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert SECRETS["POSTGRES_PASSWORD"] not in args


def test_a_task_on_the_second_node_writes_to_s3(cluster):
    driver = textwrap.dedent(
        """
        import json, os, ray
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        nodes = [n for n in ray.nodes() if n["Alive"]]

        @ray.remote(resources={"second_node": 0.01})
        def write(bucket):
            import fsspec  # the node's own S3 settings (the stack gives them to both nodes)
            fs = fsspec.filesystem("s3")
            fs.pipe(bucket + "/probe/from-node2.txt", b"node2")
            return ray.get_runtime_context().get_node_id()

        node = ray.get(write.remote(os.environ["S3_BUCKET"]))
        second = [n["NodeID"] for n in nodes if n["Resources"].get("second_node")]
        print(json.dumps({"nodes": len(nodes), "node": node, "second": second}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", driver],
        env=cluster.client_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["nodes"] == 2 and result["second"] == [result["node"]]

    s3 = _s3(cluster)
    body = s3.get_object(Bucket=cluster.exports["S3_BUCKET"], Key="probe/from-node2.txt")["Body"]
    assert body.read() == b"node2"


def test_mlflow_keeps_runs_in_postgresql_and_artifacts_in_s3(cluster, tmp_path):

    from pipelines.tracking import client

    c = client(cluster.exports["MLFLOW_TRACKING_URI"])
    experiment = c.create_experiment("cluster-probe")
    run = c.create_run(experiment)
    c.log_metric(run.info.run_id, "val_average_mAP", 0.25)
    (tmp_path / "note.txt").write_text("through the server")
    c.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    c.set_terminated(run.info.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server

    metrics = _query(
        cluster, "mlflow", "SELECT value FROM metrics WHERE run_uuid = %s", run.info.run_id
    )
    assert metrics == [(0.25,)]
    s3 = _s3(cluster)
    listed = s3.list_objects_v2(Bucket=cluster.exports["S3_BUCKET"], Prefix="mlartifacts/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert f"mlartifacts/{experiment}/{run.info.run_id}/artifacts/note.txt" in keys


def test_prefect_keeps_its_state_in_postgresql(cluster):

    made = cluster.run(
        str(BIN / "prefect"), "work-pool", "create", "probe-pool", "--type", "process"
    )
    assert made.returncode == 0, made.stdout + made.stderr
    pools = _query(cluster, "prefect", "SELECT name FROM work_pool WHERE name = 'probe-pool'")
    assert pools == [("probe-pool",)]


# where each piece of the run lives: the store and Ray Train's checkpoints in the bucket
RUN = "onthecluster"


def _ray_facts(cluster: Cluster) -> dict:
    """The cluster's live nodes (id -> is the second node) and the nodes every Ray Train
    worker ran on, from the Ray head (its state API keeps dead actors)."""
    driver = textwrap.dedent(
        """
        import json, os, ray
        from ray.util.state import list_actors
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        nodes = {n["NodeID"]: bool(n["Resources"].get("second_node"))
                 for n in ray.nodes() if n["Alive"]}
        train = list_actors(filters=[("class_name", "=", "RayTrainWorker")], limit=1000)
        print("FACTS", json.dumps({"nodes": nodes, "train_workers": [a.node_id for a in train]}))
        """
    )
    done = cluster.run(sys.executable, "-c", driver, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    # Ray prints its own warnings on stdout too (a lagging heartbeat, say)
    facts = [line for line in done.stdout.splitlines() if line.startswith("FACTS ")]
    assert facts, done.stdout[-3000:]
    return json.loads(facts[-1].removeprefix("FACTS "))


def _s3_env(cluster: Cluster, monkeypatch) -> None:
    """This process reads the bucket as the stack's exports say (fsspec, boto3)."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.setenv(key, cluster.exports[key])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _keys(cluster: Cluster, prefix: str) -> list[str]:
    s3 = _s3(cluster)
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=cluster.exports["S3_BUCKET"], Prefix=prefix
    )
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _stop_service(cluster: Cluster, name: str, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to a service's whole process group (SIGKILL: the node or server dies at
    once, its children with it) and wait until it is gone."""
    pid = int((cluster.root / "stack" / f"{name}.pid").read_text())
    os.killpg(pid, sig)

    def gone() -> bool:
        state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True)
        return state.stdout.strip() in (b"", b"Z", b"Zs")

    wait_for(gone, 60, f"{name} to stop", interval=0.2)


def _bring_back(cluster: Cluster) -> None:
    """`make up` again starts what is not running."""
    up = _stack(cluster.env, "up", "--profile", "cluster")
    assert up.returncode == 0, up.stdout + up.stderr
    # the head's view of the nodes lags a restart by a heartbeat or two, and a restarted node
    # starts workers only once what was left of the killed one is gone
    wait_for(lambda: len(_ray_facts(cluster)["nodes"]) == 2, 90, "two live Ray nodes", interval=1)
    wait_for(lambda: _second_node_runs_a_task(cluster), 180, "a task on the second node")


def _second_node_runs_a_task(cluster: Cluster) -> bool:
    driver = textwrap.dedent(
        """
        import os, ray
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)

        @ray.remote(resources={"second_node": 0.01})
        def where():
            return ray.get_runtime_context().get_node_id()

        print("FACTS", ray.get(where.remote(), timeout=30))
        """
    )
    done = cluster.run(sys.executable, "-c", driver, timeout=120)
    return done.returncode == 0 and "FACTS " in done.stdout


def _second_node(cluster: Cluster) -> str:
    return next(n for n, second in _ray_facts(cluster)["nodes"].items() if second)


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


class Job:
    """A `python -m pipelines ...` command running in the background as the user's shell
    would run it, its output in a file (a pipe nobody reads would fill and stop it)."""

    def __init__(self, cluster: Cluster, name: str, *args: str) -> None:
        self.log = cluster.root / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipelines", *args],
                env=cluster.client_env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        """Until ``predicate()`` holds; fails with the job's output if the job ends first
        or the time runs out."""

        def holds() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the job ended before {what}: {self.output()[-3000:]}")
            return bool(predicate())

        try:
            wait_for(holds, timeout, what, interval=0.2)
        except AssertionError as exc:
            self.proc.kill()
            raise AssertionError(f"{exc}\n{self.output()[-3000:]}") from None

    def finish(self, timeout: float = 600) -> str:
        """The job's output once it ended with status 0."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.proc.kill()
        out = self.output()
        assert self.proc.returncode == 0, out[-3000:]
        return out


@pytest.fixture(scope="module")
def onthecluster(cluster, tiny_pipeline_config) -> tuple[Path, dict]:
    """The config of the run on the cluster (its store and checkpoints in the bucket, a
    Train worker on each node) and its raw form; written once per module."""
    bucket = cluster.exports["S3_BUCKET"]
    raw = tiny_pipeline_config(cluster.root / RUN, RUN)
    raw["features"] |= {"num_actors": 2, "store": f"s3://{bucket}/{RUN}/features.zarr"}
    raw["training"] |= {
        "storage_path": f"s3://{bucket}/{RUN}/train",
        "placement_strategy": "STRICT_SPREAD",  # one worker on each node, or no run
    }
    config = cluster.root / f"{RUN}.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config, raw


@pytest.fixture
def onthecluster_store(cluster, onthecluster) -> Path:
    """The run's config with its store extracted in the bucket: by the deployment's test when
    it ran first, else here (pytest-xdist does not promise the file's order)."""
    config, _ = onthecluster
    if not _keys(cluster, f"{RUN}/features.zarr/manifest.parquet"):
        job = Job(cluster, "onthecluster-extract", "extract", "--config", str(config))
        job.finish()
    return config


def test_the_pipeline_deployment_runs_on_both_nodes_with_its_store_in_s3(
    cluster, onthecluster, monkeypatch
):
    run_dir = cluster.root / RUN
    config, raw = onthecluster

    prefect = str(BIN / "prefect")
    pool = cluster.run(prefect, "work-pool", "create", "tal-local", "--type", "process")
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deployed = cluster.run(prefect, "--no-prompt", "deploy", "--name", "tal-pipeline/demo")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    worker = start_worker("tal-local", cluster.client_env, cluster.root, cluster.root / "w.log")
    try:
        run = ("deployment", "run", "tal-pipeline/demo", "--param", f"config={config}", "--watch")
        ran = cluster.run(prefect, *run, timeout=900)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        assert "Completed" in ran.stdout
    finally:
        stop_worker(worker)
    summary = json.loads((run_dir / "pipeline_summary.json").read_text())
    extracted = summary["extracted"]  # done now, or by a fault test's fixture before
    assert extracted["done"] + extracted["skipped"] == 8 and extracted["failed"] == 0
    assert not (run_dir / "features.zarr").exists()  # nothing of the store on local disk

    # extraction actors ran on both nodes (the manifest names each video's), and so did the
    # two Ray Train workers
    facts = _ray_facts(cluster)
    assert len(facts["nodes"]) == 2
    _s3_env(cluster, monkeypatch)
    from features.store import FeatureStore

    remote = FeatureStore.open(raw["features"]["store"])
    rows = remote.manifest().to_pylist()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    assert {r["node"] for r in rows} == set(facts["nodes"])
    assert len(facts["train_workers"]) >= 2 and set(facts["train_workers"]) == set(facts["nodes"])

    # Ray Train's checkpoints and the MLflow run's artifacts are objects in the bucket
    assert any(k.endswith("/checkpoint.pt") for k in _keys(cluster, f"{RUN}/train/"))
    trained = summary["trained"]
    artifacts = _keys(cluster, f"mlartifacts/{trained['experiment_id']}/")
    assert artifacts and any(trained["run_id"] in k for k in artifacts)

    # the store read back from S3 equals a local folder store of the same videos
    local = cluster.root / "local.zarr"
    extract = ("-m", "pipelines", "extract", "--config", str(config), "--store", str(local))
    done = cluster.run(sys.executable, *extract, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    here = FeatureStore.open(local)
    assert here.completed() == remote.completed() and len(here.completed()) == 8
    assert here.attrs == remote.attrs
    for video in sorted(here.completed()):
        assert here.meta(video)["num_features"] == remote.meta(video)["num_features"]
        np.testing.assert_allclose(remote.read(video), here.read(video), rtol=1e-3, atol=1e-3)


def test_extraction_goes_on_on_the_head_when_the_second_node_dies(
    cluster, tiny_pipeline_config, monkeypatch
):
    bucket = cluster.exports["S3_BUCKET"]
    # 10 videos of 20-30 s: long enough to kill the node half way
    raw = tiny_pipeline_config(cluster.root / "nodeloss", "nodeloss", videos=10, min_duration=20)
    raw["data"]["synth"]["max_duration"] = 30
    store = f"s3://{bucket}/nodeloss/features.zarr"
    raw["features"] |= {"num_actors": 2, "store": store}
    config = cluster.root / "nodeloss.yaml"
    config.write_text(yaml.safe_dump(raw))
    second = _second_node(cluster)
    s3 = _s3(cluster)

    def done_on_second() -> bool:
        for key in _keys(cluster, "nodeloss/features.zarr/_manifest/"):
            row = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if row["node"] == second:
                return True
        return False

    job = Job(cluster, "nodeloss-extract", "extract", "--config", str(config))
    job.wait_for(done_on_second, 300, "a video extracted on the second node")
    _stop_service(cluster, "ray-node2")
    out = job.finish()
    _s3_env(cluster, monkeypatch)
    from features.store import FeatureStore

    rows = {r["video_id"]: r for r in FeatureStore.open(store).manifest().to_pylist()}
    assert len(rows) == 10 and {r["status"] for r in rows.values()} == {"done"}
    on_second = [v for v, r in rows.items() if r["node"] == second]
    assert 1 <= len(on_second) < 10
    # the video the dead node held went back to the queue and was done on the head
    lost = re.findall(r"^(\S+): worker died \(\w+\); worker replaced, retry 1$", out, re.M)
    assert lost, out[-3000:]
    assert all(rows[v]["node"] not in (None, second) for v in lost)
    assert "extracted" in out and "failed 0" in out
    _bring_back(cluster)


def test_training_restarts_from_its_s3_checkpoint_when_the_second_node_dies(
    cluster, onthecluster_store
):
    from pipelines.tracking import client

    config = onthecluster_store  # the deployment's run: its store is in S3
    storage = f"s3://{cluster.exports['S3_BUCKET']}/nodeloss-train"
    sets = [f"training.storage_path={storage}", "training.epochs=30", "training.eval_every=30"]
    sets += ["training.max_failures=4", "name=nodeloss-train"]
    _bring_back(cluster)  # whatever a test before left: both nodes up
    job = Job(cluster, "nodeloss-train", "train", "--config", str(config), *_sets(sets))
    job.wait_for(
        lambda: any(k.endswith("/checkpoint.pt") for k in _keys(cluster, "nodeloss-train/")),
        300,
        "a checkpoint in S3",
    )
    _stop_service(cluster, "ray-node2")
    _bring_back(cluster)  # room again for a worker on each node
    job.finish()
    latest = json.loads((cluster.root / RUN / "latest_train.json").read_text())
    c = client(latest["tracking_uri"])
    assert c.get_run(latest["run_id"]).info.status == "FINISHED"
    resumed = [m.value for m in c.get_metric_history(latest["run_id"], "resumed_after_epoch")]
    assert len(resumed) == 1 and 1 <= resumed[0] < 30
    steps = [m.step for m in c.get_metric_history(latest["run_id"], "train_loss")]
    # one history: the epochs before the node died, then again from the checkpoint on
    assert steps[-(30 - int(resumed[0])) :] == list(range(int(resumed[0]) + 1, 31))


def test_a_postgresql_restart_during_training_loses_no_metric(cluster, onthecluster_store):
    from pipelines.tracking import client

    config = onthecluster_store
    sets = ["training.epochs=20", "training.eval_every=20", "name=pgrestart"]
    sets += [f"training.storage_path=s3://{cluster.exports['S3_BUCKET']}/pgrestart"]
    _bring_back(cluster)  # whatever a test before left: both nodes up
    job = Job(cluster, "pgrestart", "train", "--config", str(config), *_sets(sets))

    def logged() -> list[tuple]:
        return _query(
            cluster,
            "mlflow",
            "SELECT m.step FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
            "WHERE r.name LIKE 'pgrestart-%%' AND m.key = 'train_loss'",
        )

    job.wait_for(logged, 300, "a first epoch in PostgreSQL")
    _stop_service(cluster, "postgres", signal.SIGINT)  # fast shutdown, as `make down`
    _bring_back(cluster)
    job.finish()
    latest = json.loads((cluster.root / RUN / "latest_train.json").read_text())
    c = client(latest["tracking_uri"])
    assert c.get_run(latest["run_id"]).info.status == "FINISHED"
    steps = [m.step for m in c.get_metric_history(latest["run_id"], "train_loss")]
    assert steps == list(range(1, 21))  # every epoch, before and after the restart


def test_another_profile_is_refused_while_this_one_is_up(cluster):
    again = _stack(cluster.env, "up", "--profile", "local")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"error: the cluster profile is up in {cluster.root / 'stack'}: `make down` before "
        "`make up PROFILE=local`"
    )


def test_down_stops_every_service(cluster):
    pids = cluster.pids()
    down = _stack(cluster.env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count("stopped") == len(SERVICES)
    for pid in pids:
        state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True)
        assert state.stdout.strip() in (b"", b"Z", b"Zs"), pid
    for name in PORTS:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", cluster.ports[name])) != 0, name
    assert _stack(cluster.env, "status").returncode == 1

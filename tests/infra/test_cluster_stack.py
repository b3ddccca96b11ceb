"""The cluster profile of the loopback stack for real (`make up PROFILE=cluster`): PostgreSQL,
moto's S3 API, MLflow on PostgreSQL with artifacts in S3, Prefect on PostgreSQL, a Ray head and
a second Ray node; every listener on loopback; credentials from the environment; down leaves
nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STACK = [sys.executable, str(ROOT / "infra" / "local" / "stack.py")]
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
        return {**self.env, **self.exports}

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

    prefect = str(Path(sys.executable).parent / "prefect")
    made = subprocess.run(
        [prefect, "work-pool", "create", "probe-pool", "--type", "process"],
        env={**cluster.client_env, "PREFECT_HOME": str(cluster.root / "prefect-client")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    pools = _query(cluster, "prefect", "SELECT name FROM work_pool WHERE name = 'probe-pool'")
    assert pools == [("probe-pool",)]


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

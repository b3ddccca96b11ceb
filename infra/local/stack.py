"""The local loopback stack: a Ray head, an MLflow server and a Prefect server on 127.0.0.1.

    python infra/local/stack.py up | down | status        (make up / make down / make status)

Each service runs as a background process in a session of its own, with its pid and log file
under ``.stack/`` (``STACK_DIR`` to move it). ``up`` refuses a port that something else
listens on, starts what is not running, and waits until each answers its health check;
``down`` stops exactly the process groups that ``up`` started (SIGTERM, then SIGKILL after a
grace period); jobs submitted to the Ray head see ``MLFLOW_TRACKING_URI`` and
``PREFECT_API_URL`` of the stack; ``status`` says what runs and prints the environment that points the product
at the stack. Every server listens on 127.0.0.1 only (the Ray head too: ``LOOPBACK_ENV``, in
its environment and in the exports, keeps Ray's servers off the host's address), so Ray's token
authentication is off and ``ray job submit`` needs no token.

Two profiles (``--profile``, ``make up PROFILE=...``): ``local`` (the default: the three servers
above, MLflow and Prefect on SQLite) and ``cluster`` (``cluster_profile.py``: PostgreSQL and an
S3 API added, MLflow and Prefect on PostgreSQL with MLflow's artifacts in S3, and a second
Ray node joined to the head). ``up`` records the profile in ``STACK_DIR/profile``; ``down`` and
``status`` act on the recorded one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster_profile  # beside this file; standard library only at import

ROOT = Path(__file__).resolve().parents[2]
STACK = Path(os.environ.get("STACK_DIR", ROOT / ".stack")).resolve()
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
CURRENT_CLUSTER = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
# keeps the head's servers on 127.0.0.1: pipelines/ray_env.py says why (this file uses only the
# standard library, so it repeats the value; tests/infra/test_stack_faults.py checks they agree)
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    health: str  # URL that answers 200 when the service is ready
    command: list[str]
    env: dict[str, str]
    timeout: float = 90.0
    also_ready: tuple[str, ...] = ()  # more URLs that must answer before it counts as ready
    stage: int = 0  # started once every service of a lower stage is ready and set up
    ready_command: tuple[str, ...] = ()  # exits 0 when ready (a server that speaks no HTTP)
    user: tuple[int, int] | None = None  # uid and gid to run as (PostgreSQL refuses root)
    stop_signal: int = signal.SIGTERM
    prepare: Callable[[], object] | None = None  # before it starts (PostgreSQL's initdb)
    setup: Callable[[], object] | None = None  # once it is ready (databases, the bucket)

    @property
    def pid_file(self) -> Path:
        return STACK / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return STACK / f"{self.name}.log"


def ports() -> dict[str, int]:
    """The stack's ports: defaults, or ``STACK_<NAME>_PORT`` from the environment."""
    defaults = {
        "ray": 6380,
        "ray_dashboard": 8265,
        "ray_agent": 52365,
        "mlflow": 5000,
        "prefect": 4200,
        # the cluster profile's
        "postgres": 5433,
        "s3": 9000,
        "ray_node2_agent": 52366,
    }
    return {k: int(os.environ.get(f"STACK_{k.upper()}_PORT", v)) for k, v in defaults.items()}


PROFILES = ("local", "cluster")


def services(profile: str = "local") -> list[Service]:
    """The profile's services, in the order they start (by stage) and stop (reversed)."""
    port = ports()
    ray_port, dash, agent = port["ray"], port["ray_dashboard"], port["ray_agent"]
    mlflow_port, prefect_port = port["mlflow"], port["prefect"]
    # the project's environment first on PATH: `python` in a Ray job or a Prefect worker's
    # flow run is the one the project is installed in
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    quiet = {
        "RAY_AUTH_MODE": "disabled",
        **LOOPBACK_ENV,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PATH": path,
        "VIRTUAL_ENV": str(BIN.parent),
    }
    # jobs submitted to this Ray head log to this MLflow server and report to this Prefect
    tracking = {
        "MLFLOW_TRACKING_URI": f"http://{HOST}:{mlflow_port}",
        "PREFECT_API_URL": f"http://{HOST}:{prefect_port}/api",
        # Ray's state API in the head's processes (Ray Train asks it about its runs) asks this
        # head, not whichever Ray instance it would find on the host
        "RAY_API_SERVER_ADDRESS": f"http://{HOST}:{dash}",
    }
    ray = [str(BIN / "ray"), "start", "--head", "--block", f"--node-ip-address={HOST}"]
    ray += [f"--port={ray_port}", f"--dashboard-host={HOST}", f"--dashboard-port={dash}"]
    ray += [f"--dashboard-agent-listen-port={agent}"]
    ray += ["--disable-usage-stats", "--include-dashboard=true"]
    mlflow = [str(BIN / "mlflow"), "server", "--host", HOST, "--port", str(mlflow_port)]
    mlflow += ["--workers", "1"]
    prefect = [str(BIN / "prefect"), "server", "start", "--host", HOST, "--port", str(prefect_port)]
    head = Service(
        name="ray",
        port=dash,
        health=f"http://{HOST}:{dash}/api/version",
        command=ray,
        env={**quiet, **tracking},
        # jobs are run by the head's dashboard agent, which comes up after the dashboard
        also_ready=(f"http://{HOST}:{agent}/api/healthz",),
    )
    if profile == "local":
        mlflow += ["--backend-store-uri", f"sqlite:///{STACK / 'mlflow.db'}"]
        mlflow += ["--artifacts-destination", str(STACK / "mlartifacts")]
        return [
            head,
            Service(
                name="mlflow",
                port=mlflow_port,
                health=f"http://{HOST}:{mlflow_port}/health",
                command=mlflow,
                env=quiet,
            ),
            Service(
                name="prefect",
                port=prefect_port,
                health=f"http://{HOST}:{prefect_port}/api/health",
                command=prefect,
                env={**quiet, "PREFECT_HOME": str(STACK / "prefect")},
            ),
        ]
    if profile != "cluster":
        raise StackError(f"profile {profile!r}: expected one of {', '.join(PROFILES)}")
    return _cluster_services(port, quiet, tracking, head, mlflow, prefect)


def _cluster_services(
    port: dict[str, int],
    quiet: dict[str, str],
    tracking: dict[str, str],
    head: Service,
    mlflow: list[str],
    prefect: list[str],
) -> list[Service]:
    """The cluster profile: PostgreSQL, S3 and the Ray head first; then MLflow and Prefect on
    PostgreSQL and the second Ray node."""
    cp = cluster_profile
    pg, s3 = port["postgres"], port["s3"]
    creds = cp.credentials(STACK)
    password = creds["POSTGRES_PASSWORD"]
    s3_env = cp.s3_env(s3, creds)
    node2_agent = port["ray_node2_agent"]
    node2 = [str(BIN / "python"), str(Path(__file__).resolve().parent / "ray_node.py")]
    node2 += ["--block", f"--address={HOST}:{port['ray']}"]
    node2 += [f"--node-ip-address={HOST}", f"--dashboard-agent-listen-port={node2_agent}"]
    node2 += [f"--temp-dir={STACK / 'ray-node2'}", "--disable-usage-stats"]
    node2 += [f"--min-worker-port={cp.WORKER_NODE_PORTS.start}"]
    node2 += [f"--max-worker-port={cp.WORKER_NODE_PORTS.stop - 1}"]
    node2 += ["--resources", json.dumps({"second_node": 1})]
    cpus = os.environ.get("STACK_RAY_NODE_CPUS")
    if cpus:  # each node's logical CPUs (default: what Ray finds, the host's on both)
        head = dataclasses.replace(head, command=[*head.command, f"--num-cpus={cpus}"])
        node2 += [f"--num-cpus={cpus}"]
    head = dataclasses.replace(head, env={**head.env, **s3_env})
    # the database URL holds the password: in the environment, not on the command line
    mlflow_env = {
        "MLFLOW_BACKEND_STORE_URI": cp.database_url(
            "mlflow", pg, password, driver="postgresql+psycopg2"
        ),
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{cp.bucket()}/mlartifacts",
        **s3_env,
    }
    prefect_env = {
        "PREFECT_HOME": str(STACK / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": cp.database_url(
            "prefect", pg, password, driver="postgresql+asyncpg"
        ),
    }
    return [
        Service(
            name="postgres",
            port=pg,
            health=f"postgresql://{HOST}:{pg}",
            command=cp.postgres_command(STACK, pg),
            env={},
            ready_command=tuple(cp.postgres_ready(pg)),
            user=cp.server_user(),
            stop_signal=signal.SIGINT,  # PostgreSQL's fast shutdown
            prepare=lambda: cp.prepare_postgres(STACK, password),
            setup=lambda: cp.create_databases(pg, password),
        ),
        Service(
            name="s3",
            port=s3,
            health=f"http://{HOST}:{s3}/moto-api/",
            command=cp.s3_command(s3),
            env=quiet,
            setup=lambda: cp.create_bucket(s3, creds),
        ),
        head,
        Service(
            name="mlflow",
            port=port["mlflow"],
            health=f"http://{HOST}:{port['mlflow']}/health",
            command=mlflow,
            env={**quiet, **mlflow_env},
            timeout=180.0,  # its first start migrates an empty database
            stage=1,
        ),
        Service(
            name="prefect",
            port=port["prefect"],
            health=f"http://{HOST}:{port['prefect']}/api/health",
            command=prefect,
            env={**quiet, **prefect_env},
            timeout=180.0,
            stage=1,
        ),
        Service(
            name="ray-node2",
            port=node2_agent,
            health=f"http://{HOST}:{node2_agent}/api/healthz",
            command=node2,
            env={**quiet, **tracking, **s3_env},  # ray_node.py says why it is not `ray start`
            stage=1,
        ),
    ]


def environment(profile: str = "local") -> dict[str, str]:
    """What points the product (and the CLIs) at the stack."""
    port = ports()
    env = {
        # the head's GCS address: `ray.init()` in a flow run joins the head with it, and
        # `ray job submit` finds the head's dashboard (127.0.0.1:8265) through it
        "RAY_ADDRESS": f"{HOST}:{port['ray']}",
        "RAY_AUTH_MODE": "disabled",
        **LOOPBACK_ENV,  # a driver's node address: the head's 127.0.0.1, not the host's
        "MLFLOW_TRACKING_URI": f"http://{HOST}:{port['mlflow']}",
        "PREFECT_API_URL": f"http://{HOST}:{port['prefect']}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if profile == "cluster":  # fsspec's s3:// (s3fs) and boto3 read these
        env.update(cluster_profile.s3_env(port["s3"], cluster_profile.credentials(STACK)))
        env["S3_BUCKET"] = cluster_profile.bucket()
    return env


def recorded_profile() -> str:
    """The profile the last ``up`` started (``local`` when none is recorded)."""
    path = STACK / "profile"
    return path.read_text().strip() if path.is_file() else "local"


def _pid(service: Service) -> int | None:
    """The recorded pid of a service that is still alive, else None (a stale file goes)."""
    try:
        pid = int(service.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        service.pid_file.unlink(missing_ok=True)
        return None
    except PermissionError:
        pass
    if _zombie(pid):  # dead, not yet reaped by whoever adopted it
        service.pid_file.unlink(missing_ok=True)
        return None
    return pid


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (state Z in /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def _healthy(service: Service) -> bool:
    if service.ready_command:
        done = subprocess.run(service.ready_command, capture_output=True, check=False)
        return done.returncode == 0
    return all(_answers(url) for url in (service.health, *service.also_ready))


class StackError(RuntimeError):
    pass


# Ray starts its workers on ports from this range (``ray start``'s --min-worker-port and
# --max-worker-port defaults): a stack port inside it can be taken by a worker at any time
RAY_WORKER_PORTS = range(10002, 20000)


def _check_ports(profile: str) -> None:
    ranges = [RAY_WORKER_PORTS]
    if profile == "cluster":
        ranges.append(cluster_profile.WORKER_NODE_PORTS)
    inside = [
        f"STACK_{k.upper()}_PORT={v}" for k, v in ports().items() if any(v in r for r in ranges)
    ]
    if inside:
        spans = " and ".join(f"{r.start}-{r.stop - 1}" for r in ranges)
        raise StackError(
            f"{', '.join(inside)}: inside Ray's worker port range {spans}, where a Ray worker "
            "can take it; choose a port outside it"
        )


def _signal_group(service: Service, pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _stop_group(service: Service, pgid: int, grace: float) -> None:
    """The service's own stop signal, then SIGKILL to the group after ``grace`` seconds."""
    _signal_group(service, pgid, service.stop_signal)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.3)
    if _group_alive(pgid):
        _signal_group(service, pgid, signal.SIGKILL)


def _stop(started: dict[str, tuple[Service, subprocess.Popen]], grace: float = 10.0) -> None:
    """Stop the process groups this ``up`` started (after one of them failed), last first."""
    for name, (service, proc) in reversed(list(started.items())):
        _stop_group(service, proc.pid, grace)
        proc.poll()  # reap it
        service.pid_file.unlink(missing_ok=True)
        print(f"{name}: stopped (up failed)")


def up(profile: str = "local") -> None:
    _check_ports(profile)
    STACK.mkdir(parents=True, exist_ok=True)
    other = recorded_profile()
    if other != profile and any(_pid(s) is not None for s in services(other)):
        raise StackError(
            f"the {other} profile is up in {STACK}: `make down` before `make up PROFILE={profile}`"
        )
    todo = [s for s in services(profile) if _pid(s) is None]
    taken = [s for s in todo if _port_taken(s.port)]
    if taken:
        raise StackError(
            "; ".join(
                f"port {s.port} on {HOST} (for {s.name}) is taken by another process" for s in taken
            )
            + ": stop it or choose another port ("
            + ", ".join(f"STACK_{k.upper()}_PORT" for k in ports())
            + ")"
        )
    (STACK / "profile").write_text(profile + "\n")
    started: dict[str, tuple[Service, subprocess.Popen]] = {}
    try:
        for stage in sorted({s.stage for s in services(profile)}):
            ready = [s for s in services(profile) if s.stage == stage]
            _start_and_wait([s for s in todo if s.stage == stage], ready, started)
    except (StackError, cluster_profile.ProfileError, KeyboardInterrupt) as exc:
        _stop(started)
        if isinstance(exc, cluster_profile.ProfileError):
            raise StackError(str(exc)) from exc
        raise
    if CURRENT_CLUSTER.is_file():  # what `ray start` recorded as "the" local cluster
        (STACK / "ray_current_cluster").write_text(CURRENT_CLUSTER.read_text())
    (STACK / "env.json").write_text(json.dumps(environment(profile), indent=1) + "\n")
    print(_exports(profile))


def _start_and_wait(
    todo: list[Service],
    stage: list[Service],
    started: dict[str, tuple[Service, subprocess.Popen]],
) -> None:
    """Start ``todo`` (recorded in ``started``), wait until every service of the ``stage``
    answers, then set each up (idempotent: databases, the bucket); a service that exits while
    starting is reported as such, with its exit status."""
    for s in todo:
        if s.prepare is not None:
            s.prepare()
        with open(s.log_file, "ab") as log:
            if s.user is not None:  # the log is ours; the server writes to the descriptor
                os.chown(s.log_file, *s.user)
            proc = subprocess.Popen(
                s.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **s.env},
                cwd=STACK,
                start_new_session=True,
                user=s.user[0] if s.user else None,
                group=s.user[1] if s.user else None,
                extra_groups=[] if s.user else None,
            )
        started[s.name] = (s, proc)
        s.pid_file.write_text(f"{proc.pid}\n")
        print(f"{s.name}: started (pid {proc.pid}, log {s.log_file})")
    for s in stage:
        deadline = time.monotonic() + s.timeout
        proc = started[s.name][1] if s.name in started else None
        while not _healthy(s):
            # our own child that exited is a zombie until reaped: poll, not kill(pid, 0)
            code = proc.poll() if proc is not None else None
            if code is not None or _pid(s) is None:
                status = f" with status {code}" if code is not None else ""
                raise StackError(f"{s.name} exited while starting{status}; see {s.log_file}")
            if time.monotonic() > deadline:
                raise StackError(
                    f"{s.name} did not answer {s.health} in {s.timeout:g} s; see {s.log_file}"
                )
            time.sleep(0.5)
        if s.setup is not None:
            s.setup()
        print(f"{s.name}: ready at {s.health}")


def down(grace: float = 20.0) -> None:
    profile = recorded_profile()
    for s in reversed(services(profile)):
        pid = _pid(s)
        if pid is None:
            print(f"{s.name}: not running")
            continue
        _stop_group(s, pid, grace)
        s.pid_file.unlink(missing_ok=True)
        print(f"{s.name}: stopped (process group {pid})")
    _forget_ray_head()


def _forget_ray_head() -> None:
    """Remove Ray's pointer to the head this stack ran, if it still points there: else a
    later plain ``ray.init()`` on this machine tries to join the stopped head."""
    ours = STACK / "ray_current_cluster"
    if not ours.is_file():
        return
    if CURRENT_CLUSTER.is_file() and CURRENT_CLUSTER.read_text() == ours.read_text():
        CURRENT_CLUSTER.unlink(missing_ok=True)
    ours.unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies of the group leader count as gone
    out = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True)
    return any(not line.strip().startswith("Z") for line in out.stdout.splitlines())


def status() -> int:
    """What runs and answers, where the stack's processes listen (all on 127.0.0.1, or the
    sockets that are not), and the exports; 0 when every service runs."""
    profile = recorded_profile()
    print(f"profile: {profile}")
    running: list[int] = []
    every = services(profile)
    for s in every:
        pid = _pid(s)
        state = "down" if pid is None else ("ready" if _healthy(s) else "starting/unhealthy")
        running += [pid] if pid is not None else []
        print(f"{s.name:<9} {state:<18} pid {pid or '-':<8} {s.health}")
    if running:
        from pipelines.listeners import exposed, listeners  # the project's environment runs it

        found = listeners(running)
        beyond = exposed(found)
        if beyond:
            print(f"warning: {len(beyond)} of {len(found)} listening sockets are not on loopback:")
            for sock in beyond:
                print(f"  {sock}")
        else:
            print(f"listening: {len(found)} sockets, all on loopback")
        print(_exports(profile))
    return 0 if len(running) == len(every) else 1


def _exports(profile: str) -> str:
    return "\n".join(f"export {k}={v}" for k, v in environment(profile).items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="local",
        help="what `up` starts (down and status act on the profile that is up)",
    )
    args = parser.parse_args()
    try:
        if args.action == "up":
            up(args.profile)
        elif args.action == "down":
            down()
        else:
            sys.exit(status())
    except (StackError, cluster_profile.ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

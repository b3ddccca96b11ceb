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
"""

from __future__ import annotations

import argparse
import contextlib
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
from dataclasses import dataclass
from pathlib import Path

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
    }
    return {k: int(os.environ.get(f"STACK_{k.upper()}_PORT", v)) for k, v in defaults.items()}


def services() -> list[Service]:
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
    mlflow += ["--backend-store-uri", f"sqlite:///{STACK / 'mlflow.db'}"]
    mlflow += ["--artifacts-destination", str(STACK / "mlartifacts"), "--workers", "1"]
    prefect = [str(BIN / "prefect"), "server", "start", "--host", HOST, "--port", str(prefect_port)]
    return [
        Service(
            name="ray",
            port=dash,
            health=f"http://{HOST}:{dash}/api/version",
            command=ray,
            env={**quiet, **tracking},
            # jobs are run by the head's dashboard agent, which comes up after the dashboard
            also_ready=(f"http://{HOST}:{agent}/api/healthz",),
        ),
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


def environment() -> dict[str, str]:
    """What points the product (and the CLIs) at the stack."""
    port = ports()
    return {
        # the head's GCS address: `ray.init()` in a flow run joins the head with it, and
        # `ray job submit` finds the head's dashboard (127.0.0.1:8265) through it
        "RAY_ADDRESS": f"{HOST}:{port['ray']}",
        "RAY_AUTH_MODE": "disabled",
        **LOOPBACK_ENV,  # a driver's node address: the head's 127.0.0.1, not the host's
        "MLFLOW_TRACKING_URI": f"http://{HOST}:{port['mlflow']}",
        "PREFECT_API_URL": f"http://{HOST}:{port['prefect']}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


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
    return pid


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
    return all(_answers(url) for url in (service.health, *service.also_ready))


class StackError(RuntimeError):
    pass


# Ray starts its workers on ports from this range (``ray start``'s --min-worker-port and
# --max-worker-port defaults): a stack port inside it can be taken by a worker at any time
RAY_WORKER_PORTS = range(10002, 20000)


def _check_ports() -> None:
    inside = [f"STACK_{k.upper()}_PORT={v}" for k, v in ports().items() if v in RAY_WORKER_PORTS]
    if inside:
        raise StackError(
            f"{', '.join(inside)}: inside Ray's worker port range "
            f"{RAY_WORKER_PORTS.start}-{RAY_WORKER_PORTS.stop - 1}, where a Ray worker can take "
            "it; choose a port outside it"
        )


def _stop(started: dict[str, subprocess.Popen], grace: float = 10.0) -> None:
    """Stop the process groups this ``up`` started (after one of them failed)."""
    for name, proc in started.items():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.3)
        if _group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.poll()  # reap it
        (STACK / f"{name}.pid").unlink(missing_ok=True)
        print(f"{name}: stopped (up failed)")


def up() -> None:
    _check_ports()
    STACK.mkdir(parents=True, exist_ok=True)
    todo = [s for s in services() if _pid(s) is None]
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
    started: dict[str, subprocess.Popen] = {}
    try:
        _start_and_wait(todo, started)
    except (StackError, KeyboardInterrupt):
        _stop(started)
        raise
    if CURRENT_CLUSTER.is_file():  # what `ray start` recorded as "the" local cluster
        (STACK / "ray_current_cluster").write_text(CURRENT_CLUSTER.read_text())
    (STACK / "env.json").write_text(json.dumps(environment(), indent=1) + "\n")
    print(_exports())


def _start_and_wait(todo: list[Service], started: dict[str, subprocess.Popen]) -> None:
    """Start ``todo`` (recorded in ``started``) and wait until every service answers; a
    service that exits while starting is reported as such, with its exit status."""
    for s in todo:
        with open(s.log_file, "ab") as log:
            proc = subprocess.Popen(
                s.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **s.env},
                cwd=STACK,
                start_new_session=True,
            )
        started[s.name] = proc
        s.pid_file.write_text(f"{proc.pid}\n")
        print(f"{s.name}: started (pid {proc.pid}, log {s.log_file})")
    for s in services():
        deadline = time.monotonic() + s.timeout
        proc = started.get(s.name)
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
        print(f"{s.name}: ready at {s.health}")


def down(grace: float = 20.0) -> None:
    for s in reversed(services()):
        pid = _pid(s)
        if pid is None:
            print(f"{s.name}: not running")
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.3)
        if _group_alive(pid):
            os.killpg(pid, signal.SIGKILL)
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
    running: list[int] = []
    for s in services():
        pid = _pid(s)
        state = "down" if pid is None else ("ready" if _healthy(s) else "starting/unhealthy")
        running += [pid] if pid is not None else []
        print(f"{s.name:<8} {state:<18} pid {pid or '-':<8} {s.health}")
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
        print(_exports())
    return 0 if len(running) == len(services()) else 1


def _exports() -> str:
    return "\n".join(f"export {k}={v}" for k, v in environment().items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args()
    try:
        if args.action == "up":
            up()
        elif args.action == "down":
            down()
        else:
            sys.exit(status())
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

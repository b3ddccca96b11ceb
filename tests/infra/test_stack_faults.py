"""`stack.py up` when a server fails: it says which one exited (not "did not answer"), stops
what it started, and refuses ports in Ray's worker range. Stand-in servers (shell scripts in
a folder that plays the environment's bin/) keep this fast: stack.py uses only the standard
library, so it runs under the base interpreter linked there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "infra" / "local" / "stack.py"


def _bin(tmp_path: Path, ray_exit: int) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python").symlink_to(Path(sys.base_prefix) / "bin" / "python3")
    scripts = {
        "ray": f"#!/bin/sh\necho ray failing\nexit {ray_exit}\n",
        "mlflow": '#!/bin/sh\necho $$ > "$STACK_DIR/mlflow.child"\nexec sleep 300\n',
        "prefect": "#!/bin/sh\nexec sleep 300\n",
    }
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def _env(tmp_path: Path, **ports: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACK_")}
    env["STACK_DIR"] = str(tmp_path / "stack")
    # free ports unlikely to be taken, outside Ray's worker range
    defaults = {"ray": 46380, "ray_dashboard": 48265, "ray_agent": 52399, "mlflow": 45000}
    for name, port in {**defaults, "prefect": 44200, **ports}.items():
        env[f"STACK_{name.upper()}_PORT"] = str(port)
    return env


def test_a_server_that_exits_while_starting_is_named_and_the_rest_stopped(tmp_path):
    folder = _bin(tmp_path, ray_exit=3)
    env = _env(tmp_path)
    start = time.monotonic()
    done = subprocess.run(
        [str(folder / "python"), str(STACK), "up"], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - start < 30  # not the 90 s wait for an answer
    error = done.stderr.strip().splitlines()[-1]
    assert error == (
        f"error: ray exited while starting with status 3; see {tmp_path / 'stack' / 'ray.log'}"
    )
    assert "mlflow: stopped (up failed)" in done.stdout
    assert "prefect: stopped (up failed)" in done.stdout
    child = int((tmp_path / "stack" / "mlflow.child").read_text())
    gone = subprocess.run(["ps", "-o", "stat=", "-p", str(child)], capture_output=True, text=True)
    assert gone.stdout.strip() in ("", "Z"), gone.stdout  # nothing left running
    assert not list((tmp_path / "stack").glob("*.pid"))


def test_ports_inside_rays_worker_range_are_refused(tmp_path):
    folder = _bin(tmp_path, ray_exit=0)
    env = _env(tmp_path, mlflow=15000)
    done = subprocess.run(
        [str(folder / "python"), str(STACK), "up"], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: STACK_MLFLOW_PORT=15000: inside Ray's worker port range 10002-19999, where a Ray "
        "worker can take it; choose a port outside it"
    )
    assert not (tmp_path / "stack" / "mlflow.child").exists()  # nothing started


def test_the_stack_keeps_ray_on_loopback_as_the_product_does():
    """stack.py repeats pipelines/ray_env.py's loopback switch (it uses only the standard
    library): the head's environment and the exports carry the same value."""
    import importlib.util

    from pipelines.ray_env import LOOPBACK_ENV

    spec = importlib.util.spec_from_file_location("stack", STACK)
    stack = importlib.util.module_from_spec(spec)
    sys.modules["stack"] = stack  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(stack)
    finally:
        del sys.modules["stack"]
    assert stack.LOOPBACK_ENV == LOOPBACK_ENV
    head = next(s for s in stack.services() if s.name == "ray")
    assert LOOPBACK_ENV.items() <= head.env.items()
    # Ray's state API in the head's processes asks this head's dashboard
    assert (
        head.env["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{stack.ports()['ray_dashboard']}"
    )
    assert LOOPBACK_ENV.items() <= stack.environment().items()

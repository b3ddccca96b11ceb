"""Helpers of the stack tests: a Prefect process worker started and stopped as a user would,
and waiting on a condition with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """``predicate()``'s first truthy value within ``timeout`` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def start_worker(pool: str, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """`prefect worker start --pool POOL` in its own session, its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(worker: subprocess.Popen) -> None:
    """A Prefect worker stops on SIGINT; after it ran flows it can need a second one (which
    makes it kill itself)."""
    for _ in range(2):
        if worker.poll() is not None:
            return
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

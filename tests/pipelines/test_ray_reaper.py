"""kill -9 of a driver that started its own local Ray leaves no process behind: the agents
Ray reparents to init are stopped by the driver's watcher (pipelines/ray_reaper.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.slow  # a real local Ray instance in a fresh process

DRIVER = """
import json, time, psutil, ray
from pipelines.ray_env import init_ray
init_ray(log_to_driver=False)
ray.get(ray.remote(lambda: 1).remote())
time.sleep(4)  # the agents are up, and the watcher has seen them
me = psutil.Process()
kids = [(p.pid, p.name(), " ".join(p.cmdline())[:60]) for p in me.children(recursive=True)]
print(json.dumps(kids), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_of_the_driver_leaves_no_ray_process(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER], env=env, stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        line = proc.stdout.readline()
        assert line, "the driver did not start Ray"
        kids = json.loads(line)
        titles = " ".join(f"{name} {cmd}" for _, name, cmd in kids)
        assert "DashboardAgent" in titles and "raylet" in titles, titles  # the case at issue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(pid) for pid, _, _ in kids):
            time.sleep(0.5)
        left = [(pid, name) for pid, name, _ in kids if _alive(pid)]
        assert not left, f"still running after kill -9 of the driver: {left}"
    finally:
        for pid, _, _ in kids if "kids" in locals() else []:
            with __import__("contextlib").suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        if proc.poll() is None:
            proc.kill()

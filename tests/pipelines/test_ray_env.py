"""A local Ray instance started by the product (pipelines/ray_env.py) listens on 127.0.0.1 only:
the listening sockets of every process it starts (GCS, raylet, agents, workers, an actor) are
listed with psutil, whether ray was imported before ``init_ray`` or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a real local Ray instance in a fresh process

DRIVER = """
import json, os, sys, time
if sys.argv[1] == "imported-first":
    import ray  # reads Ray's switches before init_ray can set them
from pipelines.listeners import listeners
from pipelines.ray_env import init_ray
import ray
init_ray(log_to_driver=False)

@ray.remote
class Counter:
    def add(self, x):
        return x + 1

counter = Counter.remote()
assert ray.get(counter.add.remote(1)) == 2
assert ray.get(ray.remote(lambda: os.getpid()).remote()) > 0
time.sleep(3)  # the agents are up
found = listeners([os.getpid()])
print(json.dumps([[s.address, s.port, s.process] for s in found]), flush=True)
ray.shutdown()
"""


@pytest.mark.parametrize("order", ["imported-first", "init-first"])
def test_a_local_ray_instance_listens_on_loopback_only(order, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, order],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    names = " ".join(name for _, _, name in found)
    # the servers at issue were seen (else the check below proves nothing)
    for server in ("gcs_server", "raylet", "DashboardAgent", "RuntimeEnvAgent"):
        assert server in names, names
    from pipelines.listeners import is_loopback

    beyond = [(addr, port, name) for addr, port, name in found if not is_loopback(addr)]
    assert not beyond, f"listening beyond loopback: {beyond}"

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


OTHER = """
import time
from pipelines.ray_env import init_ray
init_ray(log_to_driver=False)
print("up", flush=True)
time.sleep(600)
"""

TRAIN = """
import time
import ray.train
from ray.train.torch import TorchTrainer
from pipelines.ray_env import init_ray
init_ray()

def loop():
    time.sleep(12)  # Ray Train's placement-group cleaner asks the state API every few seconds
    ray.train.report({"x": 1})

TorchTrainer(loop, scaling_config=ray.train.ScalingConfig(num_workers=1)).fit()
print("fit done", flush=True)
"""


def test_a_ray_train_run_beside_another_ray_instance_asks_its_own(tmp_path):
    """With another Ray instance on the host, Ray's state API in our run's processes found two
    and Ray Train's placement-group cleaner died with a 30-line traceback ("Found multiple
    active Ray instances"); init_ray names our instance's API server to its processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline().strip() == "up"
        run = subprocess.run(
            [sys.executable, "-c", TRAIN],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        other.kill()  # its watcher (pipelines/ray_reaper.py) stops the rest
        other.wait()
    output = run.stdout + run.stderr
    assert run.returncode == 0 and "fit done" in run.stdout, output[-3000:]
    assert "PlacementGroupCleaner" not in output and "multiple active Ray" not in output, output

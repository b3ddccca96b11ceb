"""Connecting to Ray: the cluster named by ``RAY_ADDRESS`` (what ``ray job submit`` sets), else
a local instance started in this process, listening on 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import sys

# Ray's servers (GCS, raylet, workers, agents) bind to the node's IP, and on Linux Ray takes
# the host's address as the node IP even when given 127.0.0.1 (it "resolves" loopback to a
# reachable address) unless told that this machine runs no multi-node cluster: this switch,
# meant for Windows and macOS, says exactly that, and Ray then keeps every server on
# 127.0.0.1. Read when ray is imported; the processes Ray starts inherit it. Checked on
# Ray 2.60 (tests/pipelines/test_ray_env.py lists the listening sockets).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def keep_ray_on_loopback() -> None:
    """Make a Ray instance that this process starts (``ray.init(address="local")`` or
    ``ray start --head`` run with this environment) bind its servers to 127.0.0.1 only."""
    os.environ.update(LOOPBACK_ENV)
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # ray was imported already and read the switch then
        constants.ENABLE_RAY_CLUSTER = False


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def init_ray(log_to_driver: bool = True, dashboard: bool = True) -> None:
    """Start or join Ray once per process (a no-op when it is already initialised).

    A local instance listens on 127.0.0.1 only (``keep_ray_on_loopback``), with Ray's token
    authentication as Ray sets it up, and gets the dashboard unless ``dashboard`` is False:
    Ray Train asks its state API about the run (without it, a warning every few seconds)."""
    if os.environ.get("RAY_ADDRESS"):
        import ray

        if not ray.is_initialized():
            ray.init()  # a cluster: no resource arguments (`ray job submit` needs that)
        return
    keep_ray_on_loopback()
    import ray

    if ray.is_initialized():
        return
    options: dict[str, object] = {}
    if dashboard:
        # Ray's state API, which Ray Train's placement-group cleaner asks every few seconds
        # whether the run's controller lives, finds "the" cluster by RAY_ADDRESS or by looking
        # for GCS processes on the host: with another Ray instance running it finds two and
        # logs a traceback each time (or asks the other one). Name ours to the job's processes.
        port = _free_loopback_port()
        api = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
        options = {"dashboard_port": port, "runtime_env": {"env_vars": api}}
    ray.init(
        address="local",  # a new instance here, whatever `ray start` left in /tmp/ray
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        log_to_driver=log_to_driver,
        configure_logging=False,
        **options,  # type: ignore[arg-type]
    )
    # this process owns the instance: if it dies without shutting Ray down (kill -9),
    # the watcher stops the agents Ray would leave running
    from pipelines.ray_reaper import start_watcher

    start_watcher()

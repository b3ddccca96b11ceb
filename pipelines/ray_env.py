"""Connecting to Ray: the cluster named by ``RAY_ADDRESS`` (what ``ray job submit`` sets), else
a local instance started in this process."""

from __future__ import annotations

import os


def init_ray(log_to_driver: bool = True, dashboard: bool = True) -> None:
    """Start or join Ray once per process (a no-op when it is already initialised).

    A local instance gets the dashboard on 127.0.0.1 unless ``dashboard`` is False: Ray Train
    asks its state API about the run (without it, a warning every few seconds)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()  # a cluster: no resource arguments (`ray job submit` needs that)
    else:
        ray.init(
            address="local",  # a new instance here, whatever `ray start` left in /tmp/ray
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            log_to_driver=log_to_driver,
            configure_logging=False,
        )
        # this process owns the instance: if it dies without shutting Ray down (kill -9),
        # the watcher stops the agents Ray would leave running
        from pipelines.ray_reaper import start_watcher

        start_watcher()

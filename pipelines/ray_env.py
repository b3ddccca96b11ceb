"""Connecting to Ray: the cluster named by ``RAY_ADDRESS`` (what ``ray job submit`` sets), else
a local instance started in this process."""

from __future__ import annotations

import os


def init_ray(log_to_driver: bool = True) -> None:
    """Start or join Ray once per process (a no-op when it is already initialised)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()  # a cluster: no resource arguments (`ray job submit` needs that)
    else:
        ray.init(include_dashboard=False, log_to_driver=log_to_driver, configure_logging=False)

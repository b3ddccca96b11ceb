"""Stop what a driver's own local Ray instance leaves running when the driver dies without
shutting Ray down (kill -9, OOM killer).

Ray's GCS, raylet and workers go when their driver dies, but the DashboardAgent and
RuntimeEnvAgent are reparented to init and keep listening (and ignore SIGTERM for over 40 s).
``init_ray`` starts this watcher once per driver that starts a local instance: it notes the
driver's descendants every second and, once the driver is gone, kills those still running
(matched by pid and start time, so a reused pid is never hit).

    python -m pipelines.ray_reaper DRIVER_PID
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

POLL_S = 1.0


def watch(driver_pid: int, poll: float = POLL_S) -> int:
    """Block until ``driver_pid`` exits, then kill what it left; returns how many."""
    import psutil

    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return 0
    seen: dict[int, float] = {}
    while True:
        try:
            if driver.status() == psutil.STATUS_ZOMBIE:
                break
            for child in driver.children(recursive=True):
                if child.pid != os.getpid():
                    seen.setdefault(child.pid, child.create_time())
        except psutil.NoSuchProcess:
            break
        time.sleep(poll)
    left = []
    for pid, created in seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.NoSuchProcess:
            continue
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return len(left)


def start_watcher() -> None:
    """Start the watcher for this process (a no-op after the first call)."""
    import subprocess

    global _started
    if _started:
        return
    subprocess.Popen(
        [sys.executable, "-m", "pipelines.ray_reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the driver's process group: a ^C does not stop it
        close_fds=True,
    )
    _started = True


_started = False

if __name__ == "__main__":
    watch(int(sys.argv[1]))

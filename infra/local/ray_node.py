"""``ray start`` for a second Ray node on this machine's loopback (the cluster profile).

    python infra/local/ray_node.py --address=127.0.0.1:6380 [ray start's other flags]

Ray cannot do this as it ships: with the loopback switch on (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
which keeps the head's servers on 127.0.0.1, see ``pipelines/ray_env.py``) ``ray start
--address`` refuses to start a non-head node, and with it off Ray "resolves" 127.0.0.1 to the
host's address, where the head does not listen. This runs ``ray start`` with the switch on
for everything the node and its processes do, and only the refusal lifted; the node's address
is the loopback one. Checked on Ray 2.60 (``tests/infra/test_cluster_stack.py``).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # inherited by the node's processes
    import ray._private.ray_constants as constants
    import ray._private.services as services
    from ray.scripts.scripts import main as ray_main

    constants.ENABLE_RAY_CLUSTER = True  # lifts `ray start`'s refusal of a non-head node ...
    # ... which would otherwise also make the node's address the host's
    services.get_node_ip_address = lambda address=None: services.get_localhost_ip()
    sys.argv = ["ray", "start", *sys.argv[1:]]
    ray_main()


if __name__ == "__main__":
    main()

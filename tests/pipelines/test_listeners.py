"""pipelines/listeners.py: which listening sockets are reachable beyond loopback."""

from __future__ import annotations

import os
import socket

import pytest

from pipelines.listeners import Listener, exposed, is_loopback, listeners


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # a dual-stack socket bound to 127.0.0.1
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.2", False),
        ("::ffff:192.0.2.2", False),
        ("fe80::1%eth0", False),
    ],
)
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_a_wildcard_listener_of_this_process_is_reported_and_a_loopback_one_is_not():
    with socket.socket() as local, socket.socket() as everywhere:
        local.bind(("127.0.0.1", 0))
        everywhere.bind(("0.0.0.0", 0))
        local.listen()
        everywhere.listen()
        found = listeners([os.getpid()])
        ports = {s.port: s.address for s in found}
        assert ports[local.getsockname()[1]] == "127.0.0.1"
        assert ports[everywhere.getsockname()[1]] == "0.0.0.0"
        beyond = exposed(found)
        assert [s.port for s in beyond] == [everywhere.getsockname()[1]]
        assert "0.0.0.0:" in str(beyond[0]) and f"pid {os.getpid()}" in str(beyond[0])


def test_a_gone_process_has_no_listeners():
    assert listeners([2**22 + 7]) == []
    assert str(Listener("::", 80, 1, "x")) == "[::]:80 (x, pid 1)"

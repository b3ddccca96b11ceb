"""The listening sockets of a process tree, and which of them are reachable from other hosts:
what ``stack.py status`` reports and the tests check (servers listen on 127.0.0.1 only)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket: its address and port, and the process holding it."""

    address: str
    port: int
    pid: int
    process: str

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port} ({self.process}, pid {self.pid})"


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``, what a
    dual-stack socket bound to 127.0.0.1 shows); False for wildcards and any other address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _tree(roots: Iterable[int]) -> list[psutil.Process]:
    seen: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                seen.setdefault(proc.pid, proc)
        except psutil.NoSuchProcess:
            continue
    return list(seen.values())


def listeners(roots: Iterable[int]) -> list[Listener]:
    """The listening TCP sockets of the processes ``roots`` and all their descendants."""
    found: set[Listener] = set()
    for proc in _tree(roots):
        try:
            name = proc.name()
            sockets = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for sock in sockets:
            if sock.status == psutil.CONN_LISTEN and sock.laddr:
                found.add(Listener(sock.laddr.ip, sock.laddr.port, proc.pid, name))
    return sorted(found, key=lambda s: (s.process, s.port, s.address))


def exposed(found: Iterable[Listener]) -> list[Listener]:
    """The sockets of ``found`` that listen beyond loopback (a wildcard or a host address)."""
    return [s for s in found if not is_loopback(s.address)]

"""Who a process is, as the lease table records it, and whether a recorded process is
certainly gone (the *same-host fast path* of a takeover, I7).

Pure reads of ``/proc`` on the caller's thread (the lease keeper's, at takeover); no
exception escapes: what cannot be read means "cannot tell" (no fast path).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessIdentity", "process_gone"]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat``: when the process started (clock ticks after boot)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # comm may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_token(pid: int) -> str:
    """``<boot id>|<pid namespace>|<pid>|<start ticks>`` of a process of this kernel and
    namespace, or ``""`` when any part cannot be read (no fast path then)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    ns = _pid_namespace()
    start = _start_ticks(pid)
    if not boot or not ns or not start:
        return ""
    return f"{boot}|{ns}|{pid}|{start}"


def process_gone(token: str | None) -> bool:
    """True only when the process ``token`` names (:attr:`ProcessIdentity.token`) is certainly
    not running: it ran on this kernel since its last boot and in this PID namespace, and no
    process with its pid and start time exists now. False whenever that cannot be told (another
    host, container or boot, an unreadable ``/proc``, an empty token)."""
    if not token:
        return False
    parts = token.split("|")
    if len(parts) != 4 or not parts[2].isdigit():
        return False
    boot, ns, pid, start = parts
    if boot != _read("/proc/sys/kernel/random/boot_id") or ns != _pid_namespace():
        return False
    return _start_ticks(int(pid)) != start


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who a process is, as the lease table records it. ``id`` is drawn at start: a
    restarted process is another owner (it takes its predecessor's accounts like any
    standby). ``token``: see :func:`process_gone`."""

    id: uuid.UUID
    host: str
    pid: int
    token: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(uuid.uuid4(), socket.gethostname()[:255], pid, _process_token(pid))

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"

"""Who listens on a local TCP port: the kernel's socket tables and each process's fds.

The local backend uses it to make sure the process answering an instance's health URL is
the instance itself: a port found free can be taken by another program before the instance
binds it, and a health check answered by that program would be believed (Linux ``/proc``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["group_listens", "listening_inodes"]

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"


def listening_inodes(port: int, tables: tuple[str, ...] = _TABLES) -> set[int]:
    """The inodes of the sockets listening on ``port`` (any local address, IPv4 or IPv6)."""
    inodes: set[int] = set()
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def _group_of(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # After the command name: state, ppid, pgrp.
    return int(stat[stat.rindex(")") + 2 :].split()[2])


def _holds(pid: str, sockets: set[str]) -> bool:
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                    return True
    return False


def group_listens(pgid: int, port: int) -> bool | None:
    """True when a process of group ``pgid`` holds a socket listening on ``port``; False when
    only others do (or nobody); None when this machine cannot tell (no socket tables)."""
    if not any(Path(table).exists() for table in _TABLES):
        return None
    inodes = listening_inodes(port)
    if not inodes:
        return False
    sockets = {f"socket:[{inode}]" for inode in inodes}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _group_of(entry) == pgid and _holds(entry, sockets):
            return True
    return False

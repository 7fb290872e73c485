"""Who listens on a local TCP port: the kernel's socket tables and each process's fds.

The local backend uses it to make sure the process answering an instance's health URL is
the instance itself: a port found free can be taken by another program before the instance
binds it, and a health check answered by that program would be believed (Linux ``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from pathlib import Path

from harness._runstate import proc_stat

__all__ = ["group_listens", "listening_inodes"]

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"


def listening_inodes(port: int) -> set[int] | None:
    """The inodes of the sockets listening on ``port`` (any local address, IPv4 or IPv6);
    None when this machine cannot tell.

    Asked of the kernel over netlink (sock_diag, listening sockets only: cheap however many
    connections the machine has); from the ``/proc/net/tcp`` tables where netlink is not
    available (reading those walks every socket: 20 ms with a few thousand in TIME_WAIT).
    """
    try:
        return _netlink_listening_inodes(port)
    except OSError:
        if not any(Path(table).exists() for table in _TABLES):
            return None
        return _proc_listening_inodes(port)


def _proc_listening_inodes(port: int, tables: tuple[str, ...] = _TABLES) -> set[int]:
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


# sock_diag (linux/sock_diag.h, linux/inet_diag.h, linux/netlink.h)
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_LISTEN = 10
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_REQUEST = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, id
_SPORT_AT = 4  # inet_diag_msg: family, state, timer, retrans, then the id (sport first)
_INODE_AT = 4 + 48 + 16  # ... the id (48 bytes), expires, rqueue, wqueue, uid, then inode


def _netlink_listening_inodes(port: int) -> set[int]:
    inodes: set[int] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as link:
        link.settimeout(2.0)
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN)
            flags = _NLM_F_REQUEST | _NLM_F_DUMP
            header = _HEADER.pack(_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, flags, seq, 0)
            link.send(header + body)
            done = False
            while not done:
                data = link.recv(1 << 16)
                if not data:
                    raise OSError("sock_diag: empty answer")
                offset = 0
                while offset + _HEADER.size <= len(data):
                    length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
                    if kind == _NLMSG_DONE:
                        done = True
                        break
                    if kind == _NLMSG_ERROR or length < _HEADER.size:
                        raise OSError("sock_diag: the kernel refused the request")
                    start = offset + _HEADER.size
                    (sport,) = struct.unpack_from("!H", data, start + _SPORT_AT)
                    if sport == port:
                        inodes.add(struct.unpack_from("=I", data, start + _INODE_AT)[0])
                    offset += (length + 3) & ~3
    return inodes


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
    inodes = listening_inodes(port)
    if inodes is None or not os.path.isdir("/proc/self/fd"):
        return None
    if not inodes:
        return False
    sockets = {f"socket:[{inode}]" for inode in inodes}
    if _holds(str(pgid), sockets):  # the group's leader, nearly always the one listening
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat(entry)
        if fields is not None and int(fields[2]) == pgid and _holds(entry, sockets):
            return True
    return False

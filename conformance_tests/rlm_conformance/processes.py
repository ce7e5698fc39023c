"""Host-process probes for tests of backends that run guest processes (Linux ``/proc``).

A backend's own tests check that what it started is gone after a close, a kill or a dying host;
these helpers say which processes sit below a host process and whether one still runs, so every
test package asks the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["descendants", "guest_processes", "running", "wait_until"]

_GUEST_MARK = b"rlm-guest"
"""In the command line of every guest loader (``python -c ... '<rlm-guest>' ...``)."""


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """Every process below ``root``, as host pids."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        fields = _stat_fields(entry) if entry.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie has stopped for good)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != b"Z"


def guest_processes(root: int) -> list[int]:
    """Processes below ``root`` running the guest loader (wrappers that carry its command too)."""
    found = []
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if _GUEST_MARK in handle.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def wait_until(predicate: Callable[[], bool], seconds: float) -> bool:
    """Poll ``predicate`` until it holds or ``seconds`` pass; return whether it held.

    Polling, because the kernel gives no event for the death of a process that is not our child.
    """
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True

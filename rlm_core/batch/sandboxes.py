"""A batch's sandboxes by default: as many as memory allows; on Deno, sharing processes.

Figures are the resident memory of one idle session plus a model run's working set, measured on
the 2-core benchmark machine (see ``docs/batch.md``); backends that run their sandboxes
elsewhere (E2B, Modal) are bounded by the provider's quota instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from rlm_core.registry import parse_spec

__all__ = ["SESSION_MEMORY_MB", "batch_interpreter", "default_concurrency"]

SESSION_MEMORY_MB = {"deno": 110, "docker": 80, "subprocess": 40, "mock": 10}
"""Host memory one session of each local backend takes, in MB."""

SHARED_DENO_SESSION_MB = 75
"""One Deno session when sessions share processes (``deno://?sessions_per_process=16``)."""

BATCH_DENO_SESSIONS_PER_PROCESS = 16
"""Deno sessions per process in a batch whose interpreter spec does not say."""

REMOTE_DEFAULT = 16
"""Default for backends whose sandboxes do not use this machine's memory."""

MEMORY_SHARE = 0.5
"""Fraction of the available memory a batch's sandboxes may take by default."""

MAX_DEFAULT = 256


def available_memory_mb() -> float | None:
    """Memory available to new processes (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return None


def batch_interpreter(interpreter: str, configured: Mapping[str, object] | None = None) -> str:
    """The spec a batch's rows run on: Deno rows share processes unless told otherwise.

    ``configured`` are the backend's options from the configuration (``[interpreters.deno]``,
    ``RLM_DENO_*``); a ``sessions_per_process`` there or in the spec is kept.

    Rows of one batch are one job's runs, so the weaker separation between sessions of one
    process (WebAssembly, not the kernel) is a fair price for a third less memory per row and
    a runtime started once per 16 rows; ``deno://?sessions_per_process=1`` opts out.
    """
    name, _, options = parse_spec(interpreter)
    if name != "deno" or "sessions_per_process" in {**(configured or {}), **options}:
        return interpreter
    joiner = "&" if "?" in interpreter else "?" if "://" in interpreter else "://?"
    return f"{interpreter}{joiner}sessions_per_process={BATCH_DENO_SESSIONS_PER_PROCESS}"


def default_concurrency(interpreter: str, memory_mb: float | None = None) -> int:
    """How many rows (each with its sandbox) to run at once on this machine.

    Args:
        interpreter: The backend name or spec.
        memory_mb: Available memory; read from the system when None.
    """
    name, _, options = parse_spec(interpreter)
    per_session = SESSION_MEMORY_MB.get(name)
    if name == "deno" and options.get("sessions_per_process", "1").strip() not in ("", "1"):
        per_session = SHARED_DENO_SESSION_MB
    if per_session is None:
        return REMOTE_DEFAULT
    memory = available_memory_mb() if memory_mb is None else memory_mb
    if memory is None:
        return 4
    return max(1, min(MAX_DEFAULT, int(memory * MEMORY_SHARE / per_session)))

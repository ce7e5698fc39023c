"""Fault injection for a backend's own tests: a sandbox that goes away while a cell runs.

Cloud backends (and their stand-ins) must turn a sandbox that vanishes mid-cell into a prompt
:class:`~rlm_core.errors.SessionLostError`, not a cell that waits out its timeout; this runs
that scenario the same way for each of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest

from rlm_core.errors import SessionLostError
from rlm_core.interpreter import Interpreter

__all__ = ["lose_sandbox_mid_cell"]


async def lose_sandbox_mid_cell(
    interp: Interpreter,
    vanish: Callable[[], object],
    *,
    cell_timeout_s: float,
    after_s: float = 0.5,
) -> tuple[SessionLostError, float]:
    """Run a cell that sleeps 60 s and call ``vanish`` (in a worker thread) ``after_s`` into it.

    Returns the :class:`SessionLostError` the cell raised and the seconds it took; fails the
    test if the cell raised anything else or nothing.
    """

    async def vanish_soon() -> None:
        await anyio.sleep(after_s)
        await anyio.to_thread.run_sync(vanish)

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        group.start_soon(vanish_soon)
        with pytest.raises(SessionLostError) as caught:
            await interp.execute("import time; time.sleep(60)", timeout=cell_timeout_s)
    return caught.value, time.perf_counter() - started

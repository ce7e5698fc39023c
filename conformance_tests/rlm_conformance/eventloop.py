"""Event-loop probes: whether the host's event loop kept running while an interpreter worked.

A backend must never block the loop it runs on (a blocking SDK call, a synchronous tool run
inline); these helpers let the suite and every backend's tests measure that the same way.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

__all__ = ["loop_gaps"]


@asynccontextmanager
async def loop_gaps(interval: float = 0.01) -> AsyncIterator[list[float]]:
    """Yield the seconds between ticks of a task sleeping ``interval`` at a time, as they come.

    The list fills while the block runs: a blocked loop shows as a long gap and few ticks.
    """
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await anyio.sleep(interval)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        yield gaps
        group.cancel_scope.cancel()

"""The warm pool: interpreters start from runners that already booted Pyodide, on any event
loop, and the pool refills itself; closing it stops the idle runners."""

from __future__ import annotations

import asyncio
import gc
import time

from rlm_conformance.processes import running
from rlm_core.registry import create
from rlm_deno import DenoInterpreter, DenoPool
from rlm_deno._channel import DenoProcess


def _wait_ready(pool: DenoPool, count: int) -> None:
    deadline = time.monotonic() + 120
    while pool.ready_count() < count:
        assert pool.last_error is None, pool.last_error
        assert time.monotonic() < deadline, "the pool never filled"
        time.sleep(0.05)


def test_pooled_interpreters_take_booted_runners_across_event_loops() -> None:
    with DenoPool(size=1) as pool:
        _wait_ready(pool, 1)

        async def session(value: int) -> tuple[str | None, int]:
            interp = pool.interpreter()
            assert interp.pool is pool
            async with interp:
                channel = interp._channel
                assert isinstance(channel, DenoProcess)
                result = await interp.execute(f"x = {value}\nx * 2")
                return result.value, channel.pid

        # Each asyncio.run is a new event loop, as in a test suite or a sync caller.
        first, first_pid = asyncio.run(session(1))
        _wait_ready(pool, 1)
        second, second_pid = asyncio.run(session(2))
        assert (first, second) == ("2", "4")
        assert first_pid != second_pid
        assert not running(first_pid)
        assert not running(second_pid)
        _wait_ready(pool, 1)
        idle = pool._ready[0].pid
    assert not running(idle), "closing the pool must stop its idle runners"


def test_an_empty_pool_falls_back_to_a_normal_start() -> None:
    pool = DenoPool(size=1)
    pool.close()

    async def run() -> str | None:
        async with pool.interpreter() as interp:
            return (await interp.execute("'cold'")).value

    assert asyncio.run(run()) == "'cold'"


def test_warm_pool_option_shares_one_pool_per_settings() -> None:
    first = create("deno://?warm_pool=1")
    second = DenoInterpreter(warm_pool=1)
    other = DenoInterpreter(warm_pool=1, env={"A": "1"})
    assert isinstance(first, DenoInterpreter)
    assert first.pool is not None
    assert first.pool is second.pool
    assert other.pool is not first.pool
    for pool in (first.pool, other.pool):
        assert pool is not None
        pool.close()


def test_a_pool_dropped_without_close_stops_its_runners() -> None:
    # No leaked process, and no unclosed-file warning (warnings are errors in this suite).
    pool = DenoPool(size=1)
    _wait_ready(pool, 1)
    pid = pool.take().pid  # type: ignore[union-attr]
    del pool
    gc.collect()
    assert not running(pid)

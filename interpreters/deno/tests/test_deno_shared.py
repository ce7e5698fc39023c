"""Sessions sharing a Deno process stay apart: own state, own end, and a lost process is
reported to every session it held."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from rlm_conformance._timeouts import _STUBBORN_LOOP as STUBBORN_LOOP
from rlm_conformance.processes import running, wait_until
from rlm_core.errors import SessionLostError
from rlm_deno import DenoInterpreter

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def sessions(count: int, per_process: int = 2) -> AsyncIterator[list[DenoInterpreter]]:
    async with AsyncExitStack() as stack:
        started = []
        for _ in range(count):
            interp = DenoInterpreter(sessions_per_process=per_process, interrupt_grace_s=0.5)
            await stack.enter_async_context(interp)
            started.append(interp)
        yield started


def runner_pid(interp: DenoInterpreter) -> int:
    channel = interp._channel
    assert channel is not None
    return int(channel.pid)  # type: ignore[attr-defined]


async def test_sessions_fill_a_process_then_start_another() -> None:
    async with sessions(3) as (a, b, c):
        assert runner_pid(a) == runner_pid(b) != runner_pid(c)
        await a.set_variables({"secret": "only in a"})
        missing = await b.execute("secret")
        assert missing.error is not None
        assert missing.error.type == "NameError"
        assert (await a.execute("secret")).value == "'only in a'"


async def test_a_neighbour_killed_for_its_timeout_leaves_the_other_running() -> None:
    async with sessions(2) as (stuck, neighbour):
        assert runner_pid(stuck) == runner_pid(neighbour)
        await neighbour.set_variables({"kept": 41})
        with pytest.raises(SessionLostError):
            await stuck.execute(STUBBORN_LOOP, timeout=0.5)
        assert (await neighbour.execute("kept + 1")).value == "42"


async def test_a_lost_process_is_reported_to_each_of_its_sessions() -> None:
    async with sessions(2) as (a, b):
        os.kill(runner_pid(a), signal.SIGKILL)
        for interp in (a, b):
            with pytest.raises(SessionLostError, match="shared Deno process ended"):
                await interp.execute("1 + 1")
    async with sessions(1) as (fresh,):
        assert (await fresh.execute("1 + 1")).value == "2"


async def test_the_process_ends_with_its_last_session() -> None:
    async with sessions(2) as (a, b):
        pid = runner_pid(a)
        await a.aclose()
        assert running(pid)  # b still lives there
        assert (await b.execute("1 + 1")).value == "2"
    assert wait_until(lambda: not running(pid), 10)


@pytest.mark.parametrize(
    "attempt",
    [
        "open({path!r}, 'wb').write(b'x')",
        "from pyodide.code import run_js\nrun_js('Deno.openSync({path!r}, {{write: true}})')",
        "import js\njs.Deno.openSync({path!r}, {{'write': True}})",
    ],
)
async def test_a_guest_cannot_open_another_sessions_pipes(attempt: str) -> None:
    async with sessions(2) as (a, b):
        channel = b._channel
        assert channel is not None
        theirs = channel.paths[0]  # type: ignore[attr-defined]
        result = await a.execute(attempt.format(path=theirs))
        assert result.error is not None, attempt
        assert (await b.execute("'still fine'")).value == "'still fine'"

"""Concurrency: sessions are independent, and one session never interleaves two cells.

If this group fails, look for state shared between instances (a class-level namespace, a module
global, a reused sandbox or process) and at the per-session lock around ``execute``.
"""

from __future__ import annotations

import anyio

from rlm_conformance._base import ConformanceBase, StartInterpreter
from rlm_core.interpreter import ExecutionResult, Interpreter


class ConcurrencyTests(ConformanceBase):
    """Independent sessions; concurrent calls."""

    async def test_sessions_share_nothing(self, start_interpreter: StartInterpreter) -> None:
        """Globals, variables and tools of one session are invisible in another."""
        first = await start_interpreter()
        second = await start_interpreter()
        await first.set_variables({"bound_in_first": 1})
        await first.register({"tool_in_first": len})
        await self.ok(first, "made_in_first = 2\nimport json")
        names = await self.value(
            second,
            "sorted(n for n in ('bound_in_first', 'tool_in_first', 'made_in_first', 'json') "
            "if n in globals())",
        )
        assert names == "[]"

    async def test_concurrent_execute_on_two_sessions(
        self, start_interpreter: StartInterpreter
    ) -> None:
        """Cells running at the same time in two sessions each see only their own state."""
        sessions = [await start_interpreter(), await start_interpreter()]
        for i, interp in enumerate(sessions):
            await interp.set_variables({"who": f"session-{i}"})
        results: dict[int, ExecutionResult] = {}

        async def work(i: int, interp: Interpreter) -> None:
            code = (
                "import time\nacc = []\n"
                "for _ in range(5):\n    acc.append(who)\n    time.sleep(0.02)\nacc"
            )
            results[i] = await self.ok(interp, code)

        async with anyio.create_task_group() as tg:
            for i, interp in enumerate(sessions):
                tg.start_soon(work, i, interp)
        for i in range(2):
            assert results[i].value == repr([f"session-{i}"] * 5)

    async def test_concurrent_tool_calls_reach_their_own_session(
        self, start_interpreter: StartInterpreter
    ) -> None:
        """Two sessions calling tools at once each reach the tools they registered."""
        sessions = [await start_interpreter(), await start_interpreter()]
        for i, interp in enumerate(sessions):
            await interp.register({"ident": lambda i=i: i})
        values: dict[int, str | None] = {}

        async def work(i: int, interp: Interpreter) -> None:
            values[i] = (await self.ok(interp, "[ident() for _ in range(50)]")).value

        async with anyio.create_task_group() as tg:
            for i, interp in enumerate(sessions):
                tg.start_soon(work, i, interp)
        assert values == {0: repr([0] * 50), 1: repr([1] * 50)}

    async def test_one_session_runs_cells_one_at_a_time(self, interpreter: Interpreter) -> None:
        """Concurrent execute calls on one session are serialized, never interleaved."""
        results: list[ExecutionResult] = []

        async def work(tag: int) -> None:
            code = f"mine = {tag}\nimport time\ntime.sleep(0.05)\nprint(mine)\nmine"
            results.append(await self.ok(interpreter, code))

        async with anyio.create_task_group() as tg:
            for tag in range(3):
                tg.start_soon(work, tag)
        assert len(results) == 3
        for result in results:
            assert result.stdout == f"{result.value}\n"

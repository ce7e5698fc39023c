"""Timeouts: a cell that outruns ``timeout=`` ends, and the session does what capabilities say.

If this group fails, look at the interrupt path: after ``timeout`` the host must interrupt the
cell (a signal, an interrupt buffer, an async exception) and, with ``survives_timeout=True``,
return ``timed_out=True`` and a ``TimeoutError`` code error with globals intact; if the cell
ignores the interrupt, or the backend declares ``survives_timeout=False``, the session must end
with ``SessionLostError`` within the grace period and stay unusable, never hang.
"""

from __future__ import annotations

import anyio
import pytest

from rlm_conformance._base import ConformanceBase
from rlm_conformance._requires import requires
from rlm_core.errors import SessionError, SessionLostError
from rlm_core.interpreter import ExecutionResult, Interpreter

_STUBBORN_LOOP = """
while True:
    try:
        while True:
            pass
    except BaseException:
        pass
"""


class TimeoutTests(ConformanceBase):
    """Infinite loops, stubborn loops, slow tools."""

    async def _expect_timeout(self, interp: Interpreter, code: str) -> ExecutionResult | None:
        """Run ``code`` with the probe timeout; the result, or None if the session was lost."""
        try:
            return await self.run(interp, code, timeout=self.timeout_probe_s)
        except SessionLostError:
            return None

    def _assert_timed_out(self, result: ExecutionResult | None) -> ExecutionResult:
        assert result is not None, "a survives_timeout backend lost the session on a plain loop"
        assert result.timed_out
        assert result.error is not None
        assert result.error.type == "TimeoutError"
        return result

    @requires(survives_timeout=True)
    async def test_infinite_loop_is_interrupted(self, interpreter: Interpreter) -> None:
        """``while True: pass`` ends with ``timed_out`` and a TimeoutError code error."""
        self._assert_timed_out(await self._expect_timeout(interpreter, "while True:\n    pass"))

    @requires(survives_timeout=True)
    async def test_session_survives_timeout(self, interpreter: Interpreter) -> None:
        """After a timed-out cell, variables from earlier cells are intact and new cells run."""
        await interpreter.set_variables({"bound": "input"})
        await self.ok(interpreter, "made = [1, 2, 3]")
        self._assert_timed_out(
            await self._expect_timeout(interpreter, "made.append(4)\nwhile True:\n    pass")
        )
        assert await self.value(interpreter, "(bound, made)") == "('input', [1, 2, 3, 4])"
        assert not (await self.ok(interpreter, "1")).timed_out

    @requires(survives_timeout=True)
    async def test_output_before_timeout_is_kept(self, interpreter: Interpreter) -> None:
        """What the cell printed before it was interrupted comes back with the timeout."""
        code = "print('progress')\nwhile True:\n    pass"
        result = self._assert_timed_out(await self._expect_timeout(interpreter, code))
        assert result.stdout == "progress\n"

    # In-process backends interrupt with an async exception, which cannot reach a thread
    # blocked in C code; a separate guest process (or worker) can be signalled.
    @requires(survives_timeout=True, isolation_at_least="process")
    async def test_timeout_in_sleep_is_interrupted(self, interpreter: Interpreter) -> None:
        """A cell blocked in ``time.sleep`` is interrupted like a busy loop."""
        result = await self._expect_timeout(interpreter, "import time\ntime.sleep(3600)")
        self._assert_timed_out(result)

    @requires(survives_timeout=False)
    async def test_timeout_loses_the_session(self, interpreter: Interpreter) -> None:
        """Without ``survives_timeout``, a timed-out cell raises SessionLostError."""
        await self.ok(interpreter, "made = 1")
        with pytest.raises(SessionLostError):
            await self.run(interpreter, "while True:\n    pass", timeout=self.timeout_probe_s)
        with pytest.raises(SessionError):
            await self.run(interpreter, "made")

    async def test_stubborn_loop_ends_one_way_or_another(self, interpreter: Interpreter) -> None:
        """A loop that swallows every interrupt still ends: as a timeout, or SessionLostError."""
        result = await self._expect_timeout(interpreter, _STUBBORN_LOOP)
        if result is None:
            with pytest.raises(SessionError):
                await self.run(interpreter, "1")
        else:
            assert result.timed_out
            assert await self.value(interpreter, "'alive'") == "'alive'"

    async def test_timeout_while_waiting_for_a_tool(self, interpreter: Interpreter) -> None:
        """A cell stuck in a slow host tool ends at its timeout (timed out, or SessionLostError)."""
        release = anyio.Event()

        async def wait_forever() -> str:
            await release.wait()
            return "released"

        await interpreter.register({"wait_forever": wait_forever})
        try:
            result = await self._expect_timeout(interpreter, "wait_forever()")
        finally:
            release.set()
        if result is None:
            with pytest.raises(SessionError):
                await self.run(interpreter, "1")
        else:
            assert result.timed_out
            assert await self.value(interpreter, "'alive'") == "'alive'"

    async def test_fast_cell_with_timeout_is_not_timed_out(self, interpreter: Interpreter) -> None:
        """A cell that finishes within its timeout reports ``timed_out`` False."""
        result = await self.run(interpreter, "sum(range(1000))", timeout=10.0)
        assert not result.timed_out
        assert result.value == str(sum(range(1000)))

    async def test_no_timeout_means_no_limit(self, interpreter: Interpreter) -> None:
        """``timeout=None`` lets a cell run as long as it needs."""
        with anyio.fail_after(self.hang_limit_s):
            result = await interpreter.execute(
                "import time\ntime.sleep(0.2)\n'slept'", timeout=None
            )
        assert result.value == "'slept'"

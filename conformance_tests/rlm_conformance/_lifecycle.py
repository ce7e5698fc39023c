"""Lifecycle: construct, start, use, close, in every order a caller might get wrong.

If this group fails, look at the state checks at the top of each method: calls before
``start()`` must raise ``InterpreterNotStartedError``, calls after ``aclose()`` must raise
``InterpreterClosedError``, and ``start()``/``aclose()`` must both be safe to repeat.
"""

from __future__ import annotations

import pytest

from rlm_conformance._base import ConformanceBase, InterpreterFactory, StartInterpreter
from rlm_conformance._requires import ISOLATION_ORDER
from rlm_core.errors import InterpreterClosedError, InterpreterNotStartedError
from rlm_core.interpreter import Capabilities, Interpreter


class LifecycleTests(ConformanceBase):
    """Start, repeat, close, misuse."""

    def test_capabilities_readable_before_start(self, make_interpreter: InterpreterFactory) -> None:
        """``capabilities`` is a Capabilities value readable before start() (no I/O needed)."""
        caps = make_interpreter().capabilities
        assert isinstance(caps, Capabilities)
        assert caps.isolation in ISOLATION_ORDER
        assert caps.max_variable_bytes is None or caps.max_variable_bytes > 0

    async def test_implements_the_interpreter_protocol(self, interpreter: Interpreter) -> None:
        """A backend is an ``rlm_core.interpreter.Interpreter`` (runtime-checkable protocol)."""
        assert isinstance(interpreter, Interpreter)

    async def test_execute_before_start_raises_not_started(
        self, make_interpreter: InterpreterFactory
    ) -> None:
        """execute() before start() raises InterpreterNotStartedError; nothing starts lazily."""
        interp = make_interpreter()
        try:
            with pytest.raises(InterpreterNotStartedError):
                await interp.execute("1")
        finally:
            await interp.aclose()

    async def test_register_and_set_variables_before_start_raise_not_started(
        self, make_interpreter: InterpreterFactory
    ) -> None:
        """register() and set_variables() before start() raise InterpreterNotStartedError."""
        interp = make_interpreter()
        try:
            with pytest.raises(InterpreterNotStartedError):
                await interp.register({"f": len})
            with pytest.raises(InterpreterNotStartedError):
                await interp.set_variables({"x": 1})
        finally:
            await interp.aclose()

    async def test_start_twice_keeps_the_session(self, interpreter: Interpreter) -> None:
        """A second start() on a started interpreter does nothing: globals survive it."""
        await self.ok(interpreter, "kept = 41")
        await interpreter.start()
        assert await self.value(interpreter, "kept + 1") == "42"

    async def test_aclose_is_idempotent(self, interpreter: Interpreter) -> None:
        """aclose() may be called any number of times without raising."""
        await interpreter.aclose()
        await interpreter.aclose()

    async def test_aclose_without_start(self, make_interpreter: InterpreterFactory) -> None:
        """aclose() on an interpreter that never started succeeds, twice."""
        interp = make_interpreter()
        await interp.aclose()
        await interp.aclose()

    async def test_execute_after_close_raises_closed(self, interpreter: Interpreter) -> None:
        """execute() after aclose() raises InterpreterClosedError."""
        await self.ok(interpreter, "x = 1")
        await interpreter.aclose()
        with pytest.raises(InterpreterClosedError):
            await interpreter.execute("x")

    async def test_register_and_set_variables_after_close_raise_closed(
        self, interpreter: Interpreter
    ) -> None:
        """register() and set_variables() after aclose() raise InterpreterClosedError."""
        await interpreter.aclose()
        with pytest.raises(InterpreterClosedError):
            await interpreter.register({"f": len})
        with pytest.raises(InterpreterClosedError):
            await interpreter.set_variables({"x": 1})

    async def test_start_after_close_raises_closed(self, interpreter: Interpreter) -> None:
        """start() after aclose() raises InterpreterClosedError: instances are single-session."""
        await interpreter.aclose()
        with pytest.raises(InterpreterClosedError):
            await interpreter.start()

    async def test_many_sessions_open_and_close(self, start_interpreter: StartInterpreter) -> None:
        """Sessions can be opened and closed one after another; each one works."""
        for i in range(3):
            interp = await start_interpreter()
            assert await self.value(interp, f"{i} * 2") == repr(i * 2)
            await interp.aclose()

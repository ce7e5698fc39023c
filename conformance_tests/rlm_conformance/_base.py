"""The fixtures, tuning attributes and helpers every conformance group shares.

Subclasses provide one fixture, ``make_interpreter``; the suite starts a fresh session per test
(``interpreter``), closes it whatever happens, skips tests whose ``@requires`` marker the
backend's capabilities do not meet, and turns unavailability into a skip or a strict failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import anyio
import pytest

from rlm_conformance._availability import backend_name_of, report_unavailable
from rlm_conformance._requires import MARKER, unmet_requirements
from rlm_core.errors import InterpreterUnavailableError
from rlm_core.interpreter import DEFAULT_MAX_OUTPUT_CHARS, ExecutionResult, Interpreter

__all__ = ["ConformanceBase", "InterpreterFactory", "StartInterpreter"]

InterpreterFactory = Callable[[], Interpreter]
"""What ``make_interpreter`` returns: builds a fresh, unstarted interpreter on each call."""

StartInterpreter = Callable[[], Awaitable[Interpreter]]
"""What ``start_interpreter`` returns: builds and starts one more session for this test."""


@pytest.mark.anyio
class ConformanceBase:
    """Shared machinery of the conformance groups; subclass InterpreterConformance instead."""

    cell_timeout: ClassVar[float] = 30.0
    """The ``timeout=`` every ordinary cell runs with (raise it for slow cloud sandboxes)."""
    timeout_probe_s: ClassVar[float] = 0.5
    """The timeout given to cells that never finish, in the timeout tests."""
    hang_limit_s: ClassVar[float] = 120.0
    """How long any single interpreter call may take before the suite calls it a hang."""
    large_variable_bytes: ClassVar[int] = 10_000_000
    """The size of the "large" variable that every backend must accept."""
    huge_variable_bytes: ClassVar[int] = 100_000_000
    """The size of the "huge" variable, tried when ``max_variable_bytes`` allows it."""
    huge_output_chars: ClassVar[int] = 200_000_000
    """How many characters the huge-print test writes (none of them may cross the channel)."""
    tool_loop_calls: ClassVar[int] = 1_000
    """How many host tool calls the tool-loop test makes from one cell."""
    backend_name: ClassVar[str | None] = None
    """The name ``RLM_REQUIRED_BACKENDS`` knows this backend by; default: its entry point."""

    # ---- fixtures ----------------------------------------------------------------------

    @pytest.fixture
    def anyio_backend(self) -> str:
        """Run the suite on asyncio; consumers configure nothing."""
        return "asyncio"

    @pytest.fixture
    def make_interpreter(self) -> InterpreterFactory:
        """Required: return a zero-argument callable building a fresh, unstarted interpreter."""
        pytest.fail(
            f"{type(self).__name__} must define the fixture `make_interpreter`, returning a "
            "zero-argument callable that builds a fresh, unstarted interpreter",
            pytrace=False,
        )

    @pytest.fixture(autouse=True)
    def _rlm_capability_gate(
        self, request: pytest.FixtureRequest, make_interpreter: InterpreterFactory
    ) -> None:
        """Skip a test whose ``@requires`` marker the backend's capabilities do not meet."""
        markers = list(request.node.iter_markers(MARKER))
        if not markers:
            return
        # Capabilities are readable before start() and construction does no I/O, so a skipped
        # test never boots a sandbox.
        caps = make_interpreter().capabilities
        unmet: list[str] = []
        for marker in markers:
            unmet.extend(unmet_requirements(dict(marker.kwargs), caps))
        if unmet:
            pytest.skip("capabilities: " + "; ".join(unmet))

    @pytest.fixture
    async def start_interpreter(
        self, request: pytest.FixtureRequest, make_interpreter: InterpreterFactory
    ) -> AsyncIterator[StartInterpreter]:
        """An async factory of started sessions, each closed when the test ends."""
        opened: list[Interpreter] = []

        async def start() -> Interpreter:
            interp = make_interpreter()
            opened.append(interp)
            try:
                with anyio.fail_after(self.hang_limit_s):
                    await interp.start()
            except InterpreterUnavailableError as exc:
                name = self.backend_name or backend_name_of(interp)
                report_unavailable(request.config, name, exc)
            return interp

        try:
            yield start
        finally:
            for interp in reversed(opened):
                with anyio.move_on_after(self.hang_limit_s, shield=True):
                    await interp.aclose()

    @pytest.fixture
    async def interpreter(self, start_interpreter: StartInterpreter) -> Interpreter:
        """A started session, fresh for this test and closed after it."""
        return await start_interpreter()

    # ---- helpers -----------------------------------------------------------------------

    async def run(
        self,
        interp: Interpreter,
        code: str,
        *,
        timeout: float | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> ExecutionResult:
        """Execute ``code`` with the suite's cell timeout, failing loudly on a hang."""
        with anyio.fail_after(self.hang_limit_s):
            return await interp.execute(
                code,
                timeout=self.cell_timeout if timeout is None else timeout,
                max_output_chars=max_output_chars,
            )

    async def ok(
        self, interp: Interpreter, code: str, *, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    ) -> ExecutionResult:
        """Execute ``code`` and assert it raised nothing."""
        result = await self.run(interp, code, max_output_chars=max_output_chars)
        assert result.error is None, f"the cell failed unexpectedly:\n{result.error}"
        return result

    async def value(self, interp: Interpreter, expression: str) -> str | None:
        """The ``repr`` the guest reports for ``expression``."""
        return (await self.ok(interp, expression)).value

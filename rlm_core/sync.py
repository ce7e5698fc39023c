"""BlockingInterpreter: the one blocking facade over the async interpreter contract.

For scripts, notebooks and DSPy. It runs an event loop on a private thread (an anyio blocking
portal) that owns the interpreter, so the interpreter's subprocesses and sockets always live
on one loop, whichever thread calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from rlm_core.interpreter import (
    DEFAULT_MAX_OUTPUT_CHARS,
    Capabilities,
    ExecutionResult,
    HostTool,
    Interpreter,
    SubmitField,
    VariableValue,
)
from rlm_core.lifecycle import StartCloseContext
from rlm_core.registry import InterpreterSpec, create

__all__ = ["BlockingInterpreter"]


class BlockingInterpreter(StartCloseContext):
    """Blocking methods over any interpreter; use as a context manager.

    Args:
        interpreter: An interpreter instance, or anything :func:`rlm_core.registry.create`
            accepts (``"subprocess"``, ``"docker://IMAGE"``, a class).
        **options: Options passed to ``create``.

    Example::

        with BlockingInterpreter("subprocess") as repl:
            print(repl.execute("1 + 1").value)
    """

    def __init__(self, interpreter: InterpreterSpec, **options: Any) -> None:
        self._interpreter = create(interpreter, **options)
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None

    @property
    def interpreter(self) -> Interpreter:
        """The wrapped async interpreter."""
        return self._interpreter

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped interpreter's capabilities."""
        return self._interpreter.capabilities

    def _run_portal(self) -> BlockingPortal:
        if self._portal is None:
            self._portal_cm = start_blocking_portal()
            self._portal = self._portal_cm.__enter__()
        return self._portal

    def start(self) -> None:
        """Boot the sandbox."""
        self._run_portal().call(self._interpreter.start)

    def register(
        self,
        tools: Mapping[str, HostTool] | None = None,
        outputs: Sequence[SubmitField] | None = None,
    ) -> None:
        """See :meth:`rlm_core.interpreter.Interpreter.register`."""
        self._run_portal().call(self._interpreter.register, tools, outputs)

    def set_variables(self, values: Mapping[str, VariableValue]) -> None:
        """See :meth:`rlm_core.interpreter.Interpreter.set_variables`."""
        self._run_portal().call(self._interpreter.set_variables, values)

    def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> ExecutionResult:
        """See :meth:`rlm_core.interpreter.Interpreter.execute`."""

        async def run() -> ExecutionResult:
            return await self._interpreter.execute(
                code, timeout=timeout, max_output_chars=max_output_chars
            )

        return self._run_portal().call(run)

    def close(self) -> None:
        """Close the interpreter and stop the private event loop; idempotent."""
        if self._portal is None:
            return
        try:
            self._portal.call(self._interpreter.aclose)
        finally:
            assert self._portal_cm is not None
            self._portal_cm.__exit__(None, None, None)
            self._portal = None
            self._portal_cm = None

"""ScriptedInterpreter: replays scripted results and records what it was asked to do."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Self

from rlm_core.errors import InterpreterClosedError, InterpreterNotStartedError
from rlm_core.interpreter import (
    DEFAULT_MAX_OUTPUT_CHARS,
    Capabilities,
    ExecutionResult,
    HostTool,
    SubmitField,
    VariableValue,
)

Script = Iterable[ExecutionResult | str] | Callable[[str], ExecutionResult | str]


class ScriptedInterpreter:
    """An interpreter double that runs nothing.

    Each ``execute`` returns the next scripted item (a string is shown as stdout), or what a
    callable script returns for the code. Everything the caller did is recorded in
    :attr:`executed`, :attr:`variables`, :attr:`tools` and :attr:`outputs`, so a unit test can
    assert on it. Running out of script raises AssertionError naming the unexpected cell.

    Args:
        script: Results in order, or a function from code to result.
        capabilities: What to report; defaults to an isolated, timeout-surviving sandbox.
    """

    def __init__(self, script: Script = (), *, capabilities: Capabilities | None = None) -> None:
        self._script: Callable[[str], ExecutionResult | str]
        if callable(script):
            self._script = script
        else:
            items = iter(list(script))

            def replay(code: str) -> ExecutionResult | str:
                try:
                    return next(items)
                except StopIteration:
                    raise AssertionError(f"no scripted result left for cell:\n{code}") from None

            self._script = replay
        self._capabilities = capabilities or Capabilities(
            isolation="wasm",
            network=False,
            writable_filesystem=False,
            survives_timeout=True,
            max_variable_bytes=None,
        )
        self.executed: list[str] = []
        self.variables: dict[str, VariableValue] = {}
        self.tools: dict[str, HostTool] = {}
        self.outputs: list[SubmitField] | None = None
        self.started = False
        self.closed = False

    @property
    def capabilities(self) -> Capabilities:
        """The scripted capabilities."""
        return self._capabilities

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check(self) -> None:
        if self.closed:
            raise InterpreterClosedError("this interpreter was closed; create a new one")
        if not self.started:
            raise InterpreterNotStartedError("call start() (or use `async with`) first")

    async def start(self) -> None:
        """Mark started."""
        if self.closed:
            raise InterpreterClosedError("this interpreter was closed; create a new one")
        self.started = True

    async def register(
        self,
        tools: Mapping[str, HostTool] | None = None,
        outputs: Sequence[SubmitField] | None = None,
    ) -> None:
        """Record the tools and outputs."""
        self._check()
        self.tools = dict(tools or {})
        self.outputs = None if outputs is None else list(outputs)

    async def set_variables(self, values: Mapping[str, VariableValue]) -> None:
        """Record the variables."""
        self._check()
        self.variables.update(values)

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> ExecutionResult:
        """Record the cell and return the next scripted result."""
        self._check()
        self.executed.append(code)
        item = self._script(code)
        if isinstance(item, str):
            return ExecutionResult(stdout=item, stdout_chars=len(item))
        return item

    async def aclose(self) -> None:
        """Mark closed; idempotent."""
        self.closed = True

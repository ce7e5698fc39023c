"""The interpreter contract: what the RLM loop needs from any sandbox, and nothing more.

An interpreter is an async Python REPL living in some sandbox. The host binds input variables
once, registers host tools (which guest code calls like local functions), runs cells, and reads
back a typed :class:`ExecutionResult`. Every backend (mock, subprocess, Deno, Docker, E2B,
Modal, or yours) implements :class:`Interpreter` and proves it with the ``rlmbox-conformance``
suite. Sync callers use :class:`rlm_core.sync.BlockingInterpreter`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from rlm_core.bridge.guest import truncate_output, truncation_marker

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "GUEST_BUILTINS",
    "JSON",
    "Capabilities",
    "CodeError",
    "ExecutionResult",
    "HostTool",
    "Interpreter",
    "Isolation",
    "SubmitField",
    "VariableValue",
    "truncate_output",
    "truncation_marker",
]

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""A value that crosses the host/guest boundary unchanged."""

VariableValue: TypeAlias = JSON | bytes
"""What ``set_variables`` accepts: JSON values, plus ``bytes``; strings and bytes move raw."""

HostTool: TypeAlias = Callable[..., Any] | Callable[..., Awaitable[Any]]
"""A host function exposed to guest code; sync or async, any signature."""

Isolation: TypeAlias = Literal["none", "process", "wasm", "container", "microvm"]
"""How strongly guest code is separated from the host, weakest first."""

DEFAULT_MAX_OUTPUT_CHARS = 10_000
"""Default cap on captured stdout/stderr/value characters returned per cell."""

GUEST_BUILTINS = frozenset({"SUBMIT", "print"})
"""Names every guest defines; tools and variables may not take them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What a backend enforces, readable before ``start()``.

    The loop adapts its prompt to these, and the conformance suite gates its tests on them. A
    backend never claims what it does not enforce.
    """

    isolation: Isolation
    """How guest code is separated from the host."""
    network: bool
    """Whether guest code can open network connections."""
    writable_filesystem: bool
    """Whether guest code can write files (anywhere it can see)."""
    survives_timeout: bool
    """Whether a timed-out cell is interrupted with the session kept (else the session is lost)."""
    max_variable_bytes: int | None
    """The largest single variable ``set_variables`` accepts, in bytes (None: no fixed limit)."""
    python_version: str | None = None
    """The guest's Python version, such as ``"3.11"``, if known before start."""
    packages: tuple[str, ...] = ()
    """Third-party packages importable in the guest beyond the standard library."""
    host_env_visible: bool = False
    """Whether the host process's environment variables are readable from the guest."""
    host_files_visible: bool = False
    """Whether the host's files are readable from the guest."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitField:
    """One parameter of the guest's ``SUBMIT``; the host validates the value's type later."""

    name: str
    type: str = ""
    """The annotation shown to the model, such as ``"int"`` or ``"list[str]"``."""
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeError:
    """An exception raised by guest code, with enough detail for the model to fix it."""

    type: str
    """The exception's class name, such as ``"ZeroDivisionError"``."""
    message: str
    """``str(exception)``; for syntax errors the parser's message."""
    traceback: str = ""
    """The formatted traceback, limited to the cell's own frames."""
    lineno: int | None = None
    """The line in the cell where the error happened, when known."""

    def __str__(self) -> str:
        return self.traceback or f"{self.type}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionResult:
    """What one cell did. User-code failures are here as data, never raised."""

    stdout: str = ""
    """Captured stdout, truncated to ``max_output_chars`` in the head-and-tail form."""
    stderr: str = ""
    """Captured stderr, truncated the same way."""
    value: str | None = None
    """``repr`` of the cell's final expression when it is not None, truncated the same way."""
    error: CodeError | None = None
    """The exception that ended the cell, if any."""
    submitted: dict[str, JSON] | None = None
    """The outputs passed to ``SUBMIT``, if it was called."""
    stdout_chars: int = 0
    """The true length of stdout before truncation."""
    stderr_chars: int = 0
    """The true length of stderr before truncation."""
    truncated: bool = False
    """Whether stdout, stderr or value was cut."""
    timed_out: bool = False
    """Whether the cell was interrupted by its timeout (the session survived)."""
    duration_s: float = 0.0
    """Wall time of the cell as measured by the host."""
    extra: Mapping[str, JSON] = field(default_factory=dict)
    """Diagnostics beyond the contract, e.g. ``guest_duration_s``: the time the guest itself
    spent in the cell, where the backend's guest reports it (``duration_s`` minus it is the
    transport's share)."""

    @property
    def ok(self) -> bool:
        """True when the cell ran to completion or submitted, without an exception."""
        return self.error is None


@runtime_checkable
class Interpreter(Protocol):
    """An async, stateful Python REPL in a sandbox.

    Call order: ``start()``, then any number of ``register``/``set_variables``/``execute`` in
    any order, then ``aclose()``. Globals persist across cells. Instances are single-session:
    after ``aclose()`` (or a :class:`~rlm_core.errors.SessionError`) make a new one.

    Constructing an interpreter does no I/O: no process, connection or file is opened before
    ``start()``, so building one to read its ``capabilities`` (as the loop, the CLI and the
    conformance suite do) costs nothing and needs nothing installed beyond the package.
    """

    @property
    def capabilities(self) -> Capabilities:
        """What this backend enforces; available before ``start()``."""
        ...

    async def start(self) -> None:
        """Boot the sandbox. Calling it again on a started interpreter does nothing.

        Raises:
            InterpreterUnavailableError: A package, daemon, binary, image or credential is
                missing; the message names the fix.
            InterpreterClosedError: The interpreter was closed.
        """
        ...

    async def register(
        self,
        tools: Mapping[str, HostTool] | None = None,
        outputs: Sequence[SubmitField] | None = None,
    ) -> None:
        """Expose host functions to guest code and give ``SUBMIT`` its parameters.

        Each tool becomes a guest function with the host function's real signature. A host
        exception surfaces in the guest as a catchable exception with the same type name and
        message. ``outputs`` makes ``SUBMIT`` take those names (positionally or by keyword);
        ``None`` keeps the default ``SUBMIT(output)``. Registering again replaces the tools.

        Raises:
            ConfigError: A name is not an identifier, or is reserved.
            InterpreterNotStartedError: ``start()`` was not called.
            SessionError: The session is gone.
        """
        ...

    async def set_variables(self, values: Mapping[str, VariableValue]) -> None:
        """Bind guest globals once per session; strings and bytes travel as raw bytes.

        Raises:
            TypeError: A value is not JSON or bytes (nothing is sent).
            ConfigError: A name is not an identifier, is reserved, or a value is larger than
                ``capabilities.max_variable_bytes``.
            InterpreterNotStartedError: ``start()`` was not called.
            SessionError: The session is gone.
        """
        ...

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> ExecutionResult:
        """Run one cell and report what it did.

        Raises:
            InterpreterNotStartedError: ``start()`` was not called.
            InterpreterClosedError: The interpreter was closed.
            SessionLostError: The sandbox died, or a timed-out cell could not be interrupted
                (always, for backends whose capabilities say ``survives_timeout=False``).
            BridgeProtocolError: The guest answered with something invalid.
        """
        ...

    async def aclose(self) -> None:
        """Release the sandbox; idempotent. Later calls raise InterpreterClosedError."""
        ...

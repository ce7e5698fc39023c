"""Every exception the toolkit raises, in one tree.

What model-written code did (an exception, a syntax error, a timed-out cell that the sandbox
survived) is *data* in :class:`~rlm_core.interpreter.ExecutionResult`, never an exception.
Exceptions mean the caller must act: fix a setting, install something, or accept that a
sandbox session is gone::

    RLMError
    ├── ConfigError                       a setting, spec or argument is wrong (also a ValueError)
    ├── InterpreterError                  an interpreter cannot do what was asked
    │   ├── InterpreterUnavailableError   SDK, daemon, binary, image or credentials missing
    │   ├── InterpreterNotStartedError    a call that needs start() came before it
    │   ├── InterpreterClosedError        a call came after aclose()
    │   └── SessionError                  the sandbox session is unusable from now on
    │       ├── SessionLostError          the sandbox died, was killed, or stopped answering
    │       ├── BridgeProtocolError       the guest sent something the host will not accept
    │       └── GuestRefusedError         the guest could not register or bind (its own error)
    └── RunError                          an RLM run gave up (raised by the loop)
        ├── BudgetExceededError           a call, token, cost or time budget ran out
        ├── LMError                       the model call failed (after its retries) or raised
        ├── SessionOpenError              every attempt to open a sandbox session was lost
        ├── OutputValidationError         the outputs could not be validated, even by extract
        └── ReplayError                   a replayed run asked for something not recorded
            └── ReplayMismatchError       a replayed cell's output differs from the recording

Backends wrap SDK exceptions with ``raise SessionLostError(...) from exc`` so the cause stays
reachable through ``__cause__``. Values that cannot cross into a sandbox (a set, an open file)
raise the builtin :class:`TypeError` on the host, before anything is sent.
"""

from __future__ import annotations

__all__ = [
    "BridgeProtocolError",
    "BudgetExceededError",
    "ConfigError",
    "GuestRefusedError",
    "InterpreterClosedError",
    "InterpreterError",
    "InterpreterNotStartedError",
    "InterpreterUnavailableError",
    "LMError",
    "OutputValidationError",
    "RLMError",
    "ReplayError",
    "ReplayMismatchError",
    "RunError",
    "SessionError",
    "SessionLostError",
    "SessionOpenError",
]


class RLMError(Exception):
    """Base class of every error raised by the toolkit."""


class ConfigError(RLMError, ValueError):
    """A setting, interpreter spec or argument is invalid; the message says how to fix it."""


class InterpreterError(RLMError):
    """An interpreter could not do what was asked."""


class InterpreterUnavailableError(InterpreterError):
    """The backend cannot run here: a package, daemon, binary, image or credential is missing.

    The message names the exact fix (the package to install, the variable to set).
    """


class InterpreterNotStartedError(InterpreterError):
    """A method that needs a running sandbox was called before ``start()``."""


class InterpreterClosedError(InterpreterError):
    """The interpreter was closed; create a new one."""


class SessionError(InterpreterError):
    """The sandbox session can no longer be used; its variables are gone."""


class SessionLostError(SessionError):
    """The sandbox process died, was killed after ignoring an interrupt, or stopped answering."""


class BridgeProtocolError(SessionError):
    """The guest sent a malformed, oversized or unexpected message; the session was ended."""


class GuestRefusedError(SessionError):
    """The guest could not carry out ``register`` or ``set_variables`` and said why.

    A ``MemoryError`` binding an input too large for the sandbox is the usual case. The
    guest's exception type and message are kept (``guest_type``, ``guest_message``); the
    session is ended, since what it holds after a half-done request is unknown. Trying again
    in a new session of the same backend fails the same way: bind less, or pick a backend
    with more memory.
    """

    def __init__(self, guest_type: str, guest_message: str, *, request: str) -> None:
        super().__init__(f"the guest could not {request}: {guest_type}: {guest_message}")
        self.guest_type = guest_type
        self.guest_message = guest_message


class RunError(RLMError):
    """An RLM run could not produce its outputs.

    ``trajectory`` holds the steps taken before the run gave up (JSON dicts), when known.
    """

    trajectory: list[dict[str, object]] | None = None


class BudgetExceededError(RunError):
    """A budget shared by the whole recursion tree (calls, tokens, cost, wall time) ran out."""


class LMError(RunError):
    """A language-model call failed after its retries (network, provider or response error).

    Whatever a model object raises (an ``LM`` of yours included) reaches the caller as this
    error, with the original exception as ``__cause__`` and the steps so far as ``trajectory``.
    """


class SessionOpenError(RunError):
    """No sandbox session could be opened within the loop's retries.

    Each attempt (start, register, binding the inputs) lost its session, for example because
    the sandbox was killed; ``__cause__`` is the last loss.
    """


class OutputValidationError(RunError):
    """The run ended without outputs that match the signature (the extract step failed too)."""


class ReplayError(RunError):
    """A replayed run made a model or tool request the cassette does not hold (names the step)."""


class ReplayMismatchError(ReplayError):
    """A replayed run diverged from its recording: the first differing step, with both values."""

    def __init__(
        self, message: str, *, backend: str, run: str, step: int, expected: object, got: object
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.run = run
        """The run's path in the tree (``"0"`` is the root)."""
        self.step = step
        self.expected = expected
        self.got = got

"""The contract's bookkeeping shared by every interpreter built on the guest runtime.

:class:`~rlm_core.bridge.session.ChannelInterpreter` (a guest process over a byte channel) and
the in-process mock differ in how a cell reaches the guest, not in what the contract promises
around it: a closed or lost session refuses every call with the same error, a cell that calls
back into its own interpreter fails at once instead of deadlocking, and ``register`` and
``set_variables`` refuse the same names and values. That is held here, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio

from rlm_core.checks import check_variables
from rlm_core.errors import (
    ConfigError,
    InterpreterClosedError,
    InterpreterNotStartedError,
    SessionLostError,
)
from rlm_core.interpreter import GUEST_BUILTINS, HostTool, SubmitField, VariableValue
from rlm_core.lifecycle import AsyncStartCloseContext
from rlm_core.tools import ToolSpec, check_registration, current_tool_owner

__all__ = ["SessionBookkeeping"]


class SessionBookkeeping(AsyncStartCloseContext):
    """Lifecycle, re-entry and name checks; subclasses run the cells.

    Subclasses implement ``start``, ``aclose`` and the contract's methods, and report
    :attr:`_started`; they call the ``_check_*`` helpers first and record a lost session in
    ``_lost``.
    """

    interrupt_grace_s: float = 2.0
    """After a timeout, how long the guest gets to stop the cell before the session is lost."""

    def __init__(self, *, interrupt_grace_s: float | None = None) -> None:
        if interrupt_grace_s is not None:  # else the class's own default
            self.interrupt_grace_s = interrupt_grace_s
        self._tools: dict[str, HostTool] = {}
        self._variable_names: set[str] = set()
        self._lost: str | None = None
        self._closed = False
        self._lock = anyio.Lock()

    @property
    def _started(self) -> bool:
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise InterpreterClosedError("this interpreter was closed; create a new one")

    def _check_usable(self) -> None:
        self._check_open()
        if self._lost is not None:
            raise SessionLostError(f"the session was lost earlier: {self._lost}")
        if not self._started:
            raise InterpreterNotStartedError("call start() (or use `async with`) first")

    def _check_cell(self, code: object, max_output_chars: int) -> None:
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        if current_tool_owner() is self:
            raise RuntimeError(
                "execute() was called from inside one of this interpreter's own tools; the "
                "guest is waiting for that tool, so this would deadlock. Use another interpreter."
            )
        if max_output_chars < 0:
            raise ConfigError("max_output_chars must be >= 0")

    def _check_registration(
        self, tools: Mapping[str, HostTool], outputs: Sequence[SubmitField] | None
    ) -> tuple[ToolSpec, ...]:
        return check_registration(tools, outputs, bound_variables=self._variable_names)

    def _check_variables(self, values: Mapping[str, VariableValue]) -> None:
        check_variables(values, reserved=GUEST_BUILTINS | self._tools.keys())

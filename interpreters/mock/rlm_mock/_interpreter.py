"""MockInterpreter: the guest runtime's Session, run on a thread of the host process."""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from rlm_core.bridge.base import SessionBookkeeping
from rlm_core.bridge.guest import CellTimeout, Session
from rlm_core.bridge.protocol import decode_result
from rlm_core.errors import (
    SessionLostError,
)
from rlm_core.interpreter import (
    DEFAULT_MAX_OUTPUT_CHARS,
    JSON,
    Capabilities,
    ExecutionResult,
    HostTool,
    SubmitField,
    VariableValue,
)
from rlm_core.tools import call_host_tool


class MockInterpreter(SessionBookkeeping):
    """Executes cells in-process: real Python, no isolation, no start-up cost.

    Guest code shares the host's memory, files, environment and network. A timed-out cell is
    interrupted by raising an exception in its thread, which stops pure-Python loops; a cell
    blocked in C code cannot be stopped, so the session is then reported lost.

    Args:
        interrupt_grace_s: Seconds a timed-out cell gets to stop before the session is lost.
    """

    def __init__(self, *, interrupt_grace_s: float | None = None) -> None:
        super().__init__(interrupt_grace_s=interrupt_grace_s)
        self._session: Session | None = None

    @property
    def capabilities(self) -> Capabilities:
        """No isolation at all: the guest is this process."""
        return Capabilities(
            isolation="none",
            network=True,
            writable_filesystem=True,
            survives_timeout=True,
            max_variable_bytes=None,
            python_version=".".join(map(str, __import__("sys").version_info[:2])),
            host_env_visible=True,
            host_files_visible=True,
        )

    async def start(self) -> None:
        """Create the namespace; cheap and idempotent."""
        self._check_open()
        if self._session is None:
            self._session = Session(call_tool=None, streams="thread")

    async def aclose(self) -> None:
        """Drop the namespace; idempotent."""
        self._closed = True
        self._session = None

    @property
    def _started(self) -> bool:
        return self._session is not None

    def _usable(self) -> Session:
        self._check_usable()
        assert self._session is not None
        return self._session

    async def register(
        self,
        tools: Mapping[str, HostTool] | None = None,
        outputs: Sequence[SubmitField] | None = None,
    ) -> None:
        """Define the tools and SUBMIT in the namespace."""
        tools = dict(tools or {})
        specs = self._check_registration(tools, outputs)
        session = self._usable()
        output_specs = None if outputs is None else [{"name": o.name} for o in outputs]
        session.register([s.to_json() for s in specs], output_specs)
        self._tools = tools

    async def set_variables(self, values: Mapping[str, VariableValue]) -> None:
        """Bind copies of the values, as a sandbox would receive them."""
        self._check_variables(values)
        session = self._usable()
        for name, value in values.items():
            if not isinstance(value, str | bytes):
                value = json.loads(json.dumps(value, allow_nan=False))
            session.namespace[name] = value
        self._variable_names |= values.keys()

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> ExecutionResult:
        """Run the cell on a thread in the caller's context, serving tool calls on the loop."""
        self._check_cell(code, max_output_chars)
        async with self._lock:
            session = self._usable()
            token = anyio.lowlevel.current_token()
            done = anyio.Event()
            box: dict[str, Any] = {}

            def call_tool(name: str, args: list[JSON], kwargs: dict[str, JSON]) -> dict[str, JSON]:
                return anyio.from_thread.run(
                    call_host_tool, self, self._tools, name, args, kwargs, token=token
                )

            def work() -> None:
                box["thread"] = threading.get_ident()
                try:
                    box["result"] = session.execute(code, max_output_chars)
                finally:
                    with contextlib.suppress(RuntimeError):  # the loop is gone; nobody waits
                        anyio.from_thread.run_sync(done.set, token=token)

            session._call_tool = call_tool
            started = time.perf_counter()
            # The cell thread runs in a copy of the caller's context, and anyio carries the
            # thread's context into each tool call, so host tools see the caller's contextvars
            # (e.g. dspy.context(lm=...)) as they do on the process backends.
            caller_context = contextvars.copy_context()
            thread = threading.Thread(
                target=caller_context.run, args=(work,), name="rlm-mock-cell", daemon=True
            )
            thread.start()
            with anyio.move_on_after(timeout):
                await done.wait()
            if not done.is_set():
                session.timeout_requested = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(box["thread"]), ctypes.py_object(CellTimeout)
                )
                with anyio.move_on_after(self.interrupt_grace_s):
                    await done.wait()
                if not done.is_set():
                    self._lost = (
                        f"the cell ran past its {timeout:g} s timeout and could not be "
                        "interrupted (it is blocked outside Python code)"
                    )
                    self._session = None
                    raise SessionLostError(self._lost)
            return decode_result(box["result"], time.perf_counter() - started)

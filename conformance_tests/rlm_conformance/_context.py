"""The caller's context: host tools run with the contextvars of the code that called ``execute``.

Frameworks keep per-request state in contextvars (``dspy.context(lm=...)``, tracing spans,
request ids); a tool that cannot see them talks to the wrong model or loses its trace.

If this group fails, look at where the backend runs host tools: a thread or task started without
a copy of the caller's context (``contextvars.copy_context()``) sees only defaults.
"""

from __future__ import annotations

import contextvars

import anyio.lowlevel

from rlm_conformance._base import ConformanceBase
from rlm_core.interpreter import Interpreter

_REQUEST = contextvars.ContextVar("rlm_conformance_request", default="unset")


def _sync_probe() -> str:
    """Report the caller's context value, from a sync tool."""
    return _REQUEST.get()


async def _async_probe() -> str:
    """Report the caller's context value, from an async tool."""
    await anyio.lowlevel.checkpoint()
    return _REQUEST.get()


class ContextTests(ConformanceBase):
    """Contextvars set by the caller reach host tools."""

    async def test_caller_contextvar_is_visible_in_host_tool(
        self, interpreter: Interpreter
    ) -> None:
        """A contextvar set by the caller around ``execute`` is visible in sync and async tools.

        Each call sees the value current at that ``execute``, not one captured at start.
        """
        await interpreter.register({"sync_probe": _sync_probe, "async_probe": _async_probe})
        for value in ("first request", "second request"):
            token = _REQUEST.set(value)
            try:
                seen = await self.value(interpreter, "[sync_probe(), async_probe()]")
            finally:
                _REQUEST.reset(token)
            assert seen == repr([value, value]), (
                f"host tools saw {seen} while the caller's contextvar was {value!r}; run tools "
                "in a copy of the caller's context"
            )

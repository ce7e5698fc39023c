"""Host tools the suite registers, and values with a known JSON form, shared by the groups."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import anyio.lowlevel
import pydantic

__all__ = [
    "Point",
    "Reading",
    "ToolFailedError",
    "TrackingTools",
    "async_double",
    "echo",
    "host_only_default",
]

_SENTINEL = object()


class ToolFailedError(Exception):
    """A host-defined exception type the guest has never heard of."""


class Reading(pydantic.BaseModel):
    """A pydantic model a tool returns; it must reach the guest as a dict."""

    sensor: str
    values: list[float]


@dataclasses.dataclass
class Point:
    """A dataclass a tool returns; it must reach the guest as a dict."""

    x: int
    y: int


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return the arguments exactly as the host received them."""
    return {"args": list(args), "kwargs": kwargs}


async def async_double(n: int) -> int:
    """An async host tool that yields to the event loop before answering."""
    await anyio.lowlevel.checkpoint()
    return n * 2


def host_only_default(flag: object = _SENTINEL) -> str:
    """Reports whether the guest left the non-JSON default to the host."""
    return "host default" if flag is _SENTINEL else f"got {flag!r}"


class TrackingTools:
    """Tools that record their calls, so tests can see what reached the host."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def lookup(self, key: str, limit: int = 5) -> dict[str, Any]:
        """Positional-or-keyword parameter with a JSON default."""
        self.calls.append(("lookup", (key,), {"limit": limit}))
        return {"key": key, "limit": limit}

    def scale(self, value: float, /, *, factor: float = 2.0) -> float:
        """Positional-only and keyword-only parameters."""
        self.calls.append(("scale", (value,), {"factor": factor}))
        return value * factor

"""Which inputs a session already holds, so DSPy's per-step ``variables`` are sent only on change.

DSPy passes every input to ``execute`` on every step. Re-sending a 10 MB context each step costs
a copy across the sandbox boundary; here an input is sent once and skipped while it is unchanged.
"Unchanged" is decided cheaply: the same immutable object (a ``str`` DSPy hands back each step)
is unchanged without looking at it; another object is compared by a fingerprint (length and the
string's cached hash, or a BLAKE2 digest of a container's JSON), never by a deep comparison with
the previous value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic_core

from rlm_core.interpreter import VariableValue
from rlm_core.tools import to_json

__all__ = ["BoundVariables"]

_IMMUTABLE = (str, bytes, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class _Bound:
    source: Any
    """The host object last sent; kept alive so its identity cannot be reused by another."""
    fingerprint: object


def _fingerprint(value: Any) -> object:
    if isinstance(value, str | bytes):
        # str and bytes cache their hash after the first call, so a repeat costs nothing.
        return (type(value), len(value), hash(value))
    if isinstance(value, _IMMUTABLE):
        return (type(value), value)
    try:  # one pass in Rust over the container; no Python copy of it is built
        encoded = pydantic_core.to_json(value)
    except (pydantic_core.PydanticSerializationError, ValueError):
        return (type(value), id(value), object())  # never equal: to_json() will explain on send
    return (type(value), hashlib.blake2b(encoded, digest_size=16).digest())


class BoundVariables:
    """What a session holds for each input name, and which new values differ from it."""

    def __init__(self) -> None:
        self._bound: dict[str, _Bound] = {}

    def changes(self, values: Mapping[str, Any]) -> dict[str, tuple[Any, VariableValue, object]]:
        """The values that must be (re)sent, each as (source, value to send, fingerprint).

        Raises:
            TypeError: A value has no JSON form (nothing is recorded).
        """
        changed: dict[str, tuple[Any, VariableValue, object]] = {}
        for name, value in values.items():
            bound = self._bound.get(name)
            if bound is not None and bound.source is value and isinstance(value, _IMMUTABLE):
                continue
            fingerprint = _fingerprint(value)
            if bound is not None and bound.fingerprint == fingerprint:
                self._bound[name] = _Bound(value, fingerprint)  # the same value, a new object
                continue
            converted: VariableValue = value if isinstance(value, str | bytes) else to_json(value)
            changed[name] = (value, converted, fingerprint)
        return changed

    def record(self, sent: Mapping[str, tuple[Any, VariableValue, object]]) -> None:
        """Remember values the session now holds (after ``set_variables`` succeeded)."""
        for name, (source, _, fingerprint) in sent.items():
            self._bound[name] = _Bound(source, fingerprint)

    def forget(self) -> None:
        """The session lost its globals: send everything again next time."""
        self._bound.clear()

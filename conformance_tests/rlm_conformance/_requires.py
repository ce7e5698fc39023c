"""Capability markers: ``@requires(...)`` says what a test needs from the capabilities.

One autouse fixture (in :mod:`rlm_conformance._base`) reads the marker and skips with a reason
naming the capability, so no test body repeats an ``if ...: pytest.skip`` line.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Final

import pytest

from rlm_core.interpreter import Capabilities, Isolation

__all__ = ["ISOLATION_ORDER", "MARKER", "requires", "unmet_requirements"]

MARKER: Final = "rlm_requires"
"""The registered marker name; ``requires(...)`` is the spelling tests use."""

ISOLATION_ORDER: Final[tuple[str, ...]] = typing.get_args(Isolation)
"""Isolation levels, weakest first: the order of ``rlm_core.interpreter.Isolation`` itself."""

_BOOL_KEYS: Final = tuple(
    name
    for name, kind in typing.get_type_hints(Capabilities).items()
    if kind is bool and name in {f.name for f in dataclasses.fields(Capabilities)}
)
"""Every yes/no capability of the contract, read from :class:`Capabilities` itself."""
_KEYS: Final = frozenset(
    {*_BOOL_KEYS, "isolation_at_least", "isolation_at_most", "max_variable_bytes"}
)


def requires(
    *,
    isolation_at_least: str | None = None,
    isolation_at_most: str | None = None,
    network: bool | None = None,
    writable_filesystem: bool | None = None,
    survives_timeout: bool | None = None,
    host_env_visible: bool | None = None,
    host_files_visible: bool | None = None,
    max_variable_bytes: int | None = None,
) -> pytest.MarkDecorator:
    """Mark a test as needing these capabilities; unmet ones skip it with a reason.

    Boolean keys must equal the capability; ``isolation_at_least``/``isolation_at_most`` compare
    along :data:`ISOLATION_ORDER`; ``max_variable_bytes=N`` needs a backend that accepts
    variables of at least ``N`` bytes (``None`` in the capabilities means no fixed limit).
    """
    given = {
        "isolation_at_least": isolation_at_least,
        "isolation_at_most": isolation_at_most,
        "network": network,
        "writable_filesystem": writable_filesystem,
        "survives_timeout": survives_timeout,
        "host_env_visible": host_env_visible,
        "host_files_visible": host_files_visible,
        "max_variable_bytes": max_variable_bytes,
    }
    for key in ("isolation_at_least", "isolation_at_most"):
        level = given[key]
        if level is not None and level not in ISOLATION_ORDER:
            raise ValueError(f"{key}={level!r}: choose one of {', '.join(ISOLATION_ORDER)}")
    decorator: pytest.MarkDecorator = getattr(pytest.mark, MARKER)
    return decorator(**{k: v for k, v in given.items() if v is not None})


def unmet_requirements(wanted: dict[str, object], caps: Capabilities) -> list[str]:
    """Describe each requirement in ``wanted`` that ``caps`` does not meet (empty: all met)."""
    unmet: list[str] = []
    for key, value in wanted.items():
        if key not in _KEYS:
            raise ValueError(f"unknown capability requirement {key!r}; known: {sorted(_KEYS)}")
        if key in _BOOL_KEYS:
            actual = getattr(caps, key)
            if actual != value:
                unmet.append(f"needs {key}={value}, backend declares {key}={actual}")
        elif key == "isolation_at_least":
            if ISOLATION_ORDER.index(caps.isolation) < ISOLATION_ORDER.index(str(value)):
                unmet.append(f"needs isolation >= {value}, backend declares {caps.isolation}")
        elif key == "isolation_at_most":
            if ISOLATION_ORDER.index(caps.isolation) > ISOLATION_ORDER.index(str(value)):
                unmet.append(f"needs isolation <= {value}, backend declares {caps.isolation}")
        elif key == "max_variable_bytes":
            limit = caps.max_variable_bytes
            assert isinstance(value, int)
            if limit is not None and limit < value:
                unmet.append(
                    f"needs variables of {value:,} bytes, backend declares "
                    f"max_variable_bytes={limit:,}"
                )
    return unmet

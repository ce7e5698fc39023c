"""What happens when a backend cannot run here: skip with its reason, or fail when required.

A backend that raises :class:`~rlm_core.errors.InterpreterUnavailableError` from ``start()``
skips, unless the run is strict: ``--rlm-strict``, ``RLM_CONFORMANCE_STRICT=1``, or the
backend's name listed in ``RLM_REQUIRED_BACKENDS`` (comma-separated; what CI sets).
"""

from __future__ import annotations

import functools
import os
from importlib.metadata import entry_points
from typing import NoReturn

import pytest

from rlm_core.errors import InterpreterUnavailableError

__all__ = [
    "ENTRY_POINT_GROUP",
    "REQUIRED_ENV",
    "STRICT_ENV",
    "backend_name_of",
    "is_strict",
    "report_unavailable",
    "required_backends",
]

STRICT_ENV = "RLM_CONFORMANCE_STRICT"
REQUIRED_ENV = "RLM_REQUIRED_BACKENDS"
ENTRY_POINT_GROUP = "rlm.interpreters"

_TRUTHY = frozenset({"1", "true", "yes", "on"})


def required_backends() -> frozenset[str]:
    """The backend names listed in ``RLM_REQUIRED_BACKENDS``."""
    raw = os.environ.get(REQUIRED_ENV, "")
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def is_strict(config: pytest.Config, backend: str) -> bool:
    """Whether an unavailable ``backend`` fails the run instead of skipping."""
    if bool(config.getoption("rlm_strict", default=False)):
        return True
    if os.environ.get(STRICT_ENV, "").strip().lower() in _TRUTHY:
        return True
    return backend.lower() in required_backends()


@functools.cache
def _entry_point_names() -> dict[type, str]:
    names: dict[type, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception:  # a broken plugin must not break naming the one under test
            continue
        if isinstance(loaded, type):
            names.setdefault(loaded, ep.name)
    return names


def backend_name_of(interpreter: object) -> str:
    """The entry-point name of ``interpreter``'s class, else a name derived from the class."""
    cls = type(interpreter)
    name = _entry_point_names().get(cls)
    if name is not None:
        return name
    base = cls.__name__.removesuffix("Interpreter") or cls.__name__
    return base.lower()


def report_unavailable(
    config: pytest.Config, backend: str, error: InterpreterUnavailableError
) -> NoReturn:
    """Skip the test with the backend's reason, or fail it when the run is strict."""
    reason = f"interpreter {backend!r} is unavailable: {error}"
    if is_strict(config, backend):
        pytest.fail(
            f"{reason} (failing instead of skipping: --rlm-strict, {STRICT_ENV}=1 or "
            f"{REQUIRED_ENV} lists {backend!r})",
            pytrace=False,
        )
    pytest.skip(reason)

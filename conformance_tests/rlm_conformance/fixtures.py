"""Fixture builders for a backend's own tests: one line declares a fixture around a server.

A backend's test modules each need the same local server (a cloud stand-in, a stub model),
started for the test and stopped after it; ``standin = context_fixture(MyStandIn)`` says that
once instead of a generator fixture in every module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Literal, TypeVar

import pytest

__all__ = ["context_fixture"]

_T = TypeVar("_T")


def context_fixture(
    factory: Callable[[], AbstractContextManager[_T]],
    *,
    scope: Literal["function", "module"] = "function",
) -> Any:
    """A fixture that enters ``factory()`` for each test (or module) and yields what it gives.

    The fixture takes the name it is assigned to, as any fixture function does.
    """

    def fixture() -> Iterator[_T]:
        with factory() as value:
            yield value

    return pytest.fixture(scope=scope)(fixture)

"""The override guard: "passes the conformance suite" must keep its meaning.

If this test fails, your subclass redefines or removes a conformance test. Keep the original,
or mark your replacement ``@pytest.mark.xfail(reason="why", strict=True)`` so the report shows
the known gap (and fails the day the gap closes).
"""

from __future__ import annotations

from typing import ClassVar

import pytest

__all__ = ["OverrideGuard", "find_silent_overrides"]


def find_silent_overrides(base: type, subclass: type) -> list[str]:
    """Describe each ``test_*`` of ``base`` that ``subclass`` removed or replaced unmarked."""
    problems: list[str] = []
    for name in sorted(dir(base)):
        if not name.startswith("test_"):
            continue
        original = getattr(base, name)
        current = getattr(subclass, name, None)
        if current is original:
            continue
        if not callable(current):
            problems.append(f"{name} was removed (set to {current!r})")
            continue
        if not _has_strict_xfail(current):
            problems.append(
                f"{name} was redefined without @pytest.mark.xfail(reason=..., strict=True)"
            )
    return problems


def _has_strict_xfail(function: object) -> bool:
    for mark in getattr(function, "pytestmark", []):
        if (
            isinstance(mark, pytest.Mark)
            and mark.name == "xfail"
            and mark.kwargs.get("reason")
            and mark.kwargs.get("strict") is True
        ):
            return True
    return False


class OverrideGuard:
    """Holds the one test that checks the others are intact."""

    conformance_base: ClassVar[type | None] = None
    """The class whose tests are protected; set by InterpreterConformance."""

    def test_no_silent_overrides_DO_NOT_OVERRIDE(self) -> None:
        """A subclass keeps every conformance test, or marks its replacement as a strict xfail."""
        base = type(self).conformance_base
        assert base is not None
        problems = find_silent_overrides(base, type(self))
        if problems:
            pytest.fail(
                f"{type(self).__name__} weakens the conformance suite:\n  - "
                + "\n  - ".join(problems),
                pytrace=False,
            )

"""``with`` and ``async with`` for objects that start and close: enter starts, exit closes.

Interpreters, the blocking facade, and the test servers all follow that one rule, so it is
written once here instead of as an ``__enter__``/``__exit__`` pair in every class.
"""

from __future__ import annotations

from typing import Self

__all__ = ["AsyncStartCloseContext", "StartCloseContext"]


class StartCloseContext:
    """``with obj:`` calls ``obj.start()`` on entry and ``obj.close()`` on exit (subclasses)."""

    def start(self) -> object:
        """Start (subclasses)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop; idempotent (subclasses)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncStartCloseContext:
    """``async with obj:`` awaits ``obj.start()`` on entry and ``obj.aclose()`` on exit."""

    async def start(self) -> None:
        """Start (subclasses)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop; idempotent (subclasses)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

"""One rate limit shared by every model call of a bench run: concurrent calls and calls per minute.

Every method's root, sub and direct calls go through the same :class:`RateLimiter`, so
``--concurrency`` items at once cannot exceed a provider's limits between them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from rlm_core.lm import LM, Completion, Message

__all__ = ["RateLimitedLM", "RateLimiter"]


class RateLimiter:
    """At most ``max_concurrent`` calls in flight and ``per_minute`` starts per minute.

    Starts are spaced evenly (a leaky bucket with no burst), which is what providers' per
    minute limits tolerate best. None disables a limit.
    """

    def __init__(self, *, max_concurrent: int | None = None, per_minute: float | None = None):
        self._slots = anyio.Semaphore(max_concurrent) if max_concurrent else None
        self._interval = 60.0 / per_minute if per_minute else 0.0
        self._lock = anyio.Lock()
        self._next_start = 0.0

    async def __aenter__(self) -> None:
        if self._slots is not None:
            await self._slots.acquire()
        if self._interval:
            async with self._lock:
                now = time.monotonic()
                wait = self._next_start - now
                self._next_start = max(now, self._next_start) + self._interval
            if wait > 0:
                await anyio.sleep(wait)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._slots is not None:
            self._slots.release()


class RateLimitedLM:
    """An :class:`~rlm_core.lm.LM` whose calls wait for a shared :class:`RateLimiter`."""

    def __init__(self, lm: LM, limiter: RateLimiter) -> None:
        self.lm = lm
        self.limiter = limiter

    @property
    def model(self) -> str:
        """The wrapped model's name."""
        return self.lm.model

    async def complete(self, messages: Sequence[Message]) -> Completion:
        """Wait for the limiter, then call the wrapped model."""
        async with self.limiter:
            return await self.lm.complete(messages)

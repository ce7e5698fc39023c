"""The shared rate limiter caps model calls in flight across every run of a bench."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from rlm_core.bench.limiter import RateLimitedLM, RateLimiter
from rlm_core.lm import Completion, Message

HELLO: list[Message] = [{"role": "user", "content": "hi"}]


class _Counting:
    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.calls = 0

    @property
    def model(self) -> str:
        return "counting"

    async def complete(self, messages: Sequence[Message]) -> Completion:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await anyio.sleep(0.01)
        self.active -= 1
        self.calls += 1
        return Completion(text="ok")


def test_calls_from_many_models_share_one_cap() -> None:
    inner = _Counting()
    limiter = RateLimiter(max_concurrent=2)
    root, sub = RateLimitedLM(inner, limiter), RateLimitedLM(inner, limiter)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon((root if i % 2 else sub).complete, HELLO)

    anyio.run(main)
    assert inner.calls == 12
    assert inner.peak == 2


def test_per_minute_limit_spaces_starts_and_loses_no_call() -> None:
    inner = _Counting()
    lm = RateLimitedLM(inner, RateLimiter(per_minute=6000))  # one start per 10 ms

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(lm.complete, HELLO)

    anyio.run(main)
    assert inner.calls == 5
    assert lm.model == "counting"

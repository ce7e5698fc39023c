"""Scale out: run many independent jobs (RLM calls, each in its own sandbox) concurrently.

:func:`run_many` runs a job per item with at most ``limit`` at once and reports each item's
value or exception separately, so one failure never hides the others. :func:`with_interpreter`
gives every job a fresh interpreter from a factory and closes it whatever happens, so no
sandbox outlives the run. See ``docs/scale-out.md``. For RLM runs over a file of rows, with
results streamed to disk, resume, shared rate limits and a spend cap, use
:mod:`rlm_core.batch` instead.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

from rlm_core.errors import ConfigError
from rlm_core.interpreter import Interpreter

__all__ = ["ItemResult", "run_many", "with_interpreter"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ItemResult(Generic[T, R]):
    """What one item's job did: its value, or the exception that ended it."""

    item: T
    """The input item."""
    value: R | None
    """The job's return value (None when it failed)."""
    error: Exception | None
    """The exception the job raised, if any (its traceback is kept)."""
    duration_s: float
    """Wall time of the job, including starting and closing its sandbox."""

    @property
    def ok(self) -> bool:
        """True when the job returned without raising."""
        return self.error is None


async def run_many(
    job: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    *,
    limit: int,
) -> list[ItemResult[T, R]]:
    """Run ``job(item)`` for every item, at most ``limit`` at a time.

    Results come back in the order of ``items``. An exception from one job is recorded in its
    :class:`ItemResult` and the others go on; cancelling ``run_many`` cancels every job (each
    job's own ``finally``/``async with`` still runs, so sandboxes are closed).

    Raises:
        ConfigError: ``limit`` is not a positive integer.
    """
    checked: object = limit  # callers without type checking pass floats and bools too
    if isinstance(checked, bool) or not isinstance(checked, int) or checked < 1:
        raise ConfigError(f"limit must be a positive integer, not {limit!r}")
    todo = list(items)
    results: list[ItemResult[T, R] | None] = [None] * len(todo)
    slots = anyio.Semaphore(limit)

    async def one(index: int, item: T) -> None:
        async with slots:
            started = time.perf_counter()
            value: R | None = None
            error: Exception | None = None
            try:
                value = await job(item)
            except Exception as exc:  # reported per item; cancellation still propagates
                error = exc
            results[index] = ItemResult(item, value, error, time.perf_counter() - started)

    async with anyio.create_task_group() as group:
        for index, item in enumerate(todo):
            group.start_soon(one, index, item)
    return [r for r in results if r is not None]


def with_interpreter(
    factory: Callable[[], Interpreter],
    job: Callable[[Interpreter, T], Awaitable[R]],
) -> Callable[[T], Awaitable[R]]:
    """Wrap ``job`` so each call gets a fresh, started interpreter that is always closed.

    Use with :func:`run_many`: ``await run_many(with_interpreter(lambda:
    E2BInterpreter(), job), items, limit=8)``. The interpreter is started inside the
    concurrency slot, so at most ``limit`` sandboxes exist at once.
    """

    async def run(item: T) -> R:
        interpreter = factory()
        try:
            await interpreter.start()
            return await job(interpreter, item)
        finally:
            with anyio.CancelScope(shield=True):
                await interpreter.aclose()

    return run

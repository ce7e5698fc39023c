"""The measurements; each returns a :class:`Stat` (median, min, max, sample count)."""

from __future__ import annotations

import inspect
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from rlm_core.interpreter import Interpreter
from rlm_core.registry import create, load, parse_spec

Factory = Callable[[], Interpreter]


@dataclass(frozen=True, slots=True)
class Stat:
    """Summary of repeated samples of one figure."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stat:
        """Summarise ``samples``."""
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    def to_json(self) -> dict[str, float]:
        """Median, min, max and n, rounded for reading."""
        return {
            "median": round(self.median, 6),
            "min": round(self.low, 6),
            "max": round(self.high, 6),
            "n": self.n,
        }


def factory_for(backend: str, options: dict[str, Any]) -> Factory:
    """A zero-argument factory for ``backend`` built through the registry."""
    return lambda: create(backend, **options)


async def _timed(fn: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


async def cold_start(factory: Factory, repeats: int) -> Stat:
    """Seconds from constructing an interpreter to the result of its first cell."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        interp = factory()
        await interp.start()
        result = await interp.execute("1 + 1")
        samples.append(time.perf_counter() - started)
        assert result.value == "2", result
        await interp.aclose()
    return Stat.of(samples)


async def pooled_start(factory: Factory, repeats: int, refill_wait_s: float = 2.0) -> Stat:
    """Seconds from construct to first result when a warm pool has a booted sandbox ready.

    The pool is filled by a first, untimed session; between samples the pool gets
    ``refill_wait_s`` to boot a replacement (that wait is not counted).
    """
    warm = factory()
    await warm.start()
    await warm.aclose()
    samples = []
    for _ in range(repeats):
        await anyio.sleep(refill_wait_s)
        started = time.perf_counter()
        interp = factory()
        await interp.start()
        result = await interp.execute("1 + 1")
        samples.append(time.perf_counter() - started)
        assert result.value == "2", result
        await interp.aclose()
    return Stat.of(samples)


def supports_option(backend: str, option: str) -> bool:
    """Whether the backend's constructor takes ``option`` (e.g. ``warm_pool``)."""
    cls = load(parse_spec(backend)[0])
    return option in inspect.signature(cls).parameters


async def execute_round_trip(interp: Interpreter, repeats: int) -> Stat:
    """Milliseconds per ``execute`` of a trivial cell, after a warm-up."""
    for _ in range(10):
        await interp.execute("x = 1")
    samples = [1000 * await _timed(lambda: interp.execute("x = 1")) for _ in range(repeats)]
    return Stat.of(samples)


async def tool_callback(interp: Interpreter, calls: int, repeats: int) -> Stat:
    """Milliseconds per host tool call: a loop of calls minus the same loop without them."""

    async def add(a: int, b: int) -> int:
        return a + b

    await interp.register({"add": add})
    with_tool = f"for i in range({calls}):\n    add(i, 1)"
    without = f"for i in range({calls}):\n    (lambda a, b: a + b)(i, 1)"
    samples = []
    for _ in range(repeats):
        cost = await _timed(lambda: interp.execute(with_tool))
        base = await _timed(lambda: interp.execute(without))
        samples.append(1000 * max(cost - base, 0.0) / calls)
    return Stat.of(samples)


async def bind(factory: Factory, size: int, repeats: int) -> Stat:
    """Seconds to bind one ``size``-character string, checked by reading its length back."""
    payload = "x" * size
    samples = []
    for _ in range(repeats):
        interp = factory()
        await interp.start()
        try:
            started = time.perf_counter()
            await interp.set_variables({"context": payload})
            samples.append(time.perf_counter() - started)
            result = await interp.execute("len(context)")
            assert result.value == str(size), result
        finally:
            await interp.aclose()
    return Stat.of(samples)


async def timeout_return(factory: Factory, repeats: int) -> Stat:
    """Seconds for ``while True: pass`` with a 1 s timeout to come back (state checked after)."""
    samples = []
    for _ in range(repeats):
        interp = factory()
        await interp.start()
        try:
            await interp.execute("kept = 41")
            started = time.perf_counter()
            try:
                await interp.execute("while True: pass", timeout=1.0)
            finally:
                samples.append(time.perf_counter() - started)
            if interp.capabilities.survives_timeout:
                assert (await interp.execute("kept + 1")).value == "42"
        except Exception as exc:  # a lost session is a valid outcome for some backends
            if interp.capabilities.survives_timeout:
                raise
            print(
                f"  (timeout ended the session as declared: {type(exc).__name__})", file=sys.stderr
            )
        finally:
            await interp.aclose()
    return Stat.of(samples)


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its (reaped) children, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"host": round(own, 1), "children": round(children, 1)}

"""run_many and with_interpreter: limits, per-item failures, order, and no leaked sessions."""

from __future__ import annotations

import anyio
import pytest

from rlm_core.errors import ConfigError
from rlm_core.interpreter import Interpreter
from rlm_core.parallel import run_many, with_interpreter
from rlm_mock import MockInterpreter

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingInterpreter(MockInterpreter):
    open_now = 0
    peak = 0
    closed = 0

    async def start(self) -> None:
        await super().start()
        CountingInterpreter.open_now += 1
        CountingInterpreter.peak = max(CountingInterpreter.peak, CountingInterpreter.open_now)

    async def aclose(self) -> None:
        await super().aclose()
        CountingInterpreter.open_now -= 1
        CountingInterpreter.closed += 1


@pytest.fixture(autouse=True)
def reset_counts() -> None:
    CountingInterpreter.open_now = CountingInterpreter.peak = CountingInterpreter.closed = 0


async def square_slowly(interp: Interpreter, n: int) -> int:
    await anyio.sleep(0.05 * (5 - n))  # later items finish first
    result = await interp.execute(f"{n} * {n} if {n} != 3 else 1 / 0")
    if result.error is not None:
        raise ArithmeticError(result.error.type)
    assert result.value is not None
    return int(result.value)


async def test_results_in_input_order_with_per_item_errors() -> None:
    results = await run_many(
        with_interpreter(CountingInterpreter, square_slowly), range(5), limit=2
    )
    assert [r.item for r in results] == [0, 1, 2, 3, 4]
    assert [r.value for r in results] == [0, 1, 4, None, 16]
    assert isinstance(results[3].error, ArithmeticError)
    assert [r.ok for r in results] == [True, True, True, False, True]
    assert CountingInterpreter.peak == 2
    assert CountingInterpreter.closed == 5
    assert CountingInterpreter.open_now == 0


async def test_cancelling_the_run_closes_every_open_interpreter() -> None:
    async def forever(interp: Interpreter, n: int) -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0.3):
        await run_many(with_interpreter(CountingInterpreter, forever), range(6), limit=4)
    assert CountingInterpreter.peak == 4
    assert CountingInterpreter.open_now == 0
    assert CountingInterpreter.closed == 4


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
async def test_limit_must_be_a_positive_integer(limit: object) -> None:
    async def job(n: int) -> int:
        return n

    with pytest.raises(ConfigError, match="limit"):
        await run_many(job, [1], limit=limit)  # type: ignore[arg-type]

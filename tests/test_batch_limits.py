"""The batch's shared limits: rate buckets, the reserve-then-settle spend cap, the LM wrapper."""

from __future__ import annotations

import anyio
import pytest

from rlm_core.batch import BatchBudgetExceededError, BatchLimits, LimitedLM, SharedLimits
from rlm_core.batch.job import is_transient
from rlm_core.batch.limits import LocalLimits, estimate_prompt_tokens
from rlm_core.batch.sandboxes import default_concurrency
from rlm_core.errors import ConfigError, LMError, SessionLostError
from rlm_core.lm import Message, Usage, import_litellm
from rlm_core.testing import ScriptedLM


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_allows_a_burst_then_paces() -> None:
    clock = FakeClock()
    shared = SharedLimits(BatchLimits(requests_per_minute=60), clock=clock)
    grants = [shared.try_reserve("m", 10, 0.0) for _ in range(60)]
    assert all(d.grant is not None for d in grants)
    blocked = shared.try_reserve("m", 10, 0.0)
    assert blocked.grant is None
    assert blocked.wait_s == pytest.approx(1.0)
    clock.now += 1.0
    assert shared.try_reserve("m", 10, 0.0).grant is not None
    # Each model has its own bucket.
    assert shared.try_reserve("other", 10, 0.0).grant is not None


def test_per_model_rates_and_default() -> None:
    shared = SharedLimits(
        BatchLimits(requests_per_minute={"slow": 1, "*": 1000}), clock=FakeClock()
    )
    assert shared.try_reserve("slow", 1, 0.0).grant is not None
    assert shared.try_reserve("slow", 1, 0.0).grant is None
    assert all(shared.try_reserve("fast", 1, 0.0).grant is not None for _ in range(100))


def test_tokens_per_minute_gives_back_what_a_call_did_not_use() -> None:
    clock = FakeClock()
    shared = SharedLimits(BatchLimits(tokens_per_minute=1500), clock=clock)
    first = shared.try_reserve("m", 1000, 0.0)
    assert first.grant is not None
    waiting = shared.try_reserve("m", 1000, 0.0)
    assert waiting.grant is None
    assert waiting.wait_s == pytest.approx(20.0)
    shared.settle(first.grant, Usage(prompt_tokens=80, completion_tokens=20))
    assert shared.try_reserve("m", 1000, 0.0).grant is not None
    assert shared.totals().tokens == 100


def test_spend_cap_counts_reservations_then_refuses() -> None:
    shared = SharedLimits(BatchLimits(max_cost_usd=1.0))
    first = shared.try_reserve("m", 10, 0.6)
    assert first.grant is not None
    # Both at their worst case would pass the cap: wait for the first to settle.
    second = shared.try_reserve("m", 10, 0.6)
    assert second.grant is None
    assert second.wait_s > 0
    assert second.refused is None
    shared.settle(first.grant, Usage(1, 1, cost_usd=0.1))
    third = shared.try_reserve("m", 10, 0.6)
    assert third.grant is not None
    shared.settle(third.grant, Usage(1, 1, cost_usd=0.6))
    refused = shared.try_reserve("m", 10, 0.6)
    assert refused.refused is not None
    assert "cost cap" in refused.refused
    assert shared.totals().cost_usd == pytest.approx(0.7)


def test_token_cap_refuses_a_call_that_cannot_fit() -> None:
    shared = SharedLimits(BatchLimits(max_tokens=500))
    decision = shared.try_reserve("m", 501, 0.0)
    assert decision.refused is not None
    assert "token cap" in decision.refused


def test_settling_twice_counts_once() -> None:
    shared = SharedLimits(BatchLimits())
    grant = shared.try_reserve("m", 10, 0.0).grant
    assert grant is not None
    shared.settle(grant, Usage(5, 5, 0.01))
    shared.settle(grant, Usage(5, 5, 0.01))
    assert shared.totals().calls == 1
    assert shared.totals().tokens == 10


@pytest.mark.parametrize(
    "bad",
    [
        {"requests_per_minute": 0},
        {"tokens_per_minute": {"m": -5}},
        {"max_cost_usd": -1},
        {"max_tokens": "many"},
    ],
)
def test_bad_limits_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        BatchLimits(**bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_concurrent_calls_never_spend_past_the_cap() -> None:
    # gpt-4o-mini has a price in litellm's map; every call really costs its stated usage.
    cost_per_call = 0.001
    inner = ScriptedLM(
        lambda messages: "ok",
        model="gpt-4o-mini",
        usage=Usage(prompt_tokens=50, completion_tokens=20, cost_usd=cost_per_call),
        latency_s=0.01,
    )
    shared = SharedLimits(BatchLimits(max_cost_usd=0.0105))
    lm = LimitedLM(inner, LocalLimits(shared), max_completion_tokens=2000)
    hello: list[Message] = [{"role": "user", "content": "hello"}]
    tokens, worst = lm.worst_case(hello)
    assert tokens == estimate_prompt_tokens(hello) + 2000
    # Each call reserves more than it spends, so 10 fit under the cap: the 10th starts with
    # $0.009 spent + $0.0012 reserved; an 11th would need $0.0112.
    assert cost_per_call < worst < 0.0015
    refused = 0

    async def call() -> None:
        nonlocal refused
        try:
            await lm.complete([{"role": "user", "content": "hello"}])
        except BatchBudgetExceededError:
            refused += 1

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(call)
    spent = shared.totals()
    assert spent.cost_usd <= 0.0105
    assert spent.calls == 10
    assert refused == 40
    assert len(inner.calls) == 10  # refused calls never reached the model


@pytest.mark.anyio
async def test_a_failed_call_releases_its_reservation() -> None:
    inner = ScriptedLM([RuntimeError("provider down"), "fine"], model="gpt-4o-mini")
    shared = SharedLimits(BatchLimits(max_tokens=10_000))
    lm = LimitedLM(inner, LocalLimits(shared), max_completion_tokens=9_000)
    with pytest.raises(RuntimeError):
        await lm.complete([{"role": "user", "content": "x"}])
    # The failed call's 9k-token reservation is gone, so the next one fits.
    assert (await lm.complete([{"role": "user", "content": "x"}])).text == "fine"


def test_completion_cap_comes_from_the_price_map() -> None:
    lm = LimitedLM(ScriptedLM(["x"], model="gpt-4o-mini"), LocalLimits(SharedLimits(BatchLimits())))
    # Imported through rlm_core, as the code under test does: a module-level import would
    # defer litellm's first-use pydantic warning into other tests, where warnings are errors.
    model_cost = import_litellm().model_cost
    assert lm.max_completion_tokens == model_cost["gpt-4o-mini"]["max_output_tokens"]


def test_default_concurrency_follows_memory() -> None:
    assert default_concurrency("deno", memory_mb=8000) == 36
    assert default_concurrency("deno://?sessions_per_process=16", memory_mb=8000) == 53
    assert default_concurrency("subprocess", memory_mb=8000) == 100
    assert default_concurrency("deno", memory_mb=100) == 1
    assert default_concurrency("e2b") == 16  # remote sandboxes use no local memory


def _lm_error(cause: Exception) -> LMError:
    try:
        raise LMError(str(cause)) from cause
    except LMError as exc:
        return exc


def test_transient_and_permanent_errors() -> None:
    exceptions = import_litellm().exceptions
    limited = exceptions.RateLimitError("slow down", llm_provider="openai", model="m")
    auth = exceptions.AuthenticationError("bad key", llm_provider="openai", model="m")
    assert is_transient(_lm_error(limited))
    assert not is_transient(_lm_error(auth))
    assert is_transient(SessionLostError("sandbox died"))
    assert not is_transient(ConfigError("missing input"))
    assert not is_transient(BatchBudgetExceededError("cap"))

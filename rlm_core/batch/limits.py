"""Limits shared by every run and sub-call of a batch: per-model rate limits and a spend cap.

:class:`SharedLimits` is the bookkeeping (pure, synchronous, one instance per batch: in the
driver process, or inside one Ray actor for a cluster). Every model call first *reserves* its
worst case (one request, its prompt plus its maximum completion tokens, and what that would
cost) and *settles* the real usage afterwards, so concurrent calls can never spend past the cap
together. :class:`LimitedLM` is the LM wrapper through which every call of every run passes.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio

from rlm_core.errors import BudgetExceededError, ConfigError
from rlm_core.lm import LM, Completion, LiteLLM, Message, Usage, import_litellm

__all__ = [
    "BatchBudgetExceededError",
    "BatchLimits",
    "Decision",
    "LimitedLM",
    "LimitsClient",
    "LocalLimits",
    "SharedLimits",
    "Totals",
]

DEFAULT_COMPLETION_TOKENS = 4096
"""Completion tokens reserved for a call whose model has no known output limit."""

_BUDGET_RETRY_S = 0.05  # how soon to ask again while other calls' reservations are unsettled


class BatchBudgetExceededError(BudgetExceededError):
    """The batch-wide USD or token cap leaves no room for another model call.

    Rows that hit it are not recorded as done, so raising the cap and rerunning finishes them.
    """


RateSpec = float | Mapping[str, float] | None
"""A per-minute rate: one number for every model, or a model-to-number mapping
(key ``"*"`` is the default for models not named)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BatchLimits:
    """What a whole batch may use; None means unlimited."""

    requests_per_minute: RateSpec = None
    """Model requests per minute, per model."""
    tokens_per_minute: RateSpec = None
    """Prompt plus completion tokens per minute, per model."""
    max_cost_usd: float | None = None
    """USD of every call of the batch (calls to models without a known price count as 0)."""
    max_tokens: int | None = None
    """Tokens of every call of the batch."""

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            spec = getattr(self, name)
            values = spec.values() if isinstance(spec, Mapping) else [spec]
            for value in values:
                if value is not None and not (isinstance(value, int | float) and value > 0):
                    raise ConfigError(f"{name} must be a positive number, not {value!r}")
        for name in ("max_cost_usd", "max_tokens"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value >= 0):
                raise ConfigError(f"{name} must be a non-negative number, not {value!r}")

    def rate(self, spec: RateSpec, model: str) -> float | None:
        """The per-minute figure ``spec`` gives ``model`` (None: unlimited)."""
        if isinstance(spec, Mapping):
            value = spec.get(model, spec.get("*"))
            return None if value is None else float(value)
        return None if spec is None else float(spec)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a reservation: a grant, a wait, or a refusal (picklable, for Ray)."""

    grant: int | None = None
    """The reservation's id, to settle after the call."""
    wait_s: float = 0.0
    """No grant yet: ask again after this many seconds."""
    refused: str | None = None
    """The cap leaves no room for this call: why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Totals:
    """What the batch has used so far (settled calls only)."""

    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


@dataclasses.dataclass(slots=True)
class _Bucket:
    """A token bucket: ``level`` units, refilled at ``per_s`` up to ``capacity``."""

    capacity: float
    per_s: float
    level: float
    updated: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_s)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        return 0.0 if self.level >= amount else (amount - self.level) / self.per_s


class SharedLimits:
    """The batch's rate buckets and spend ledger; thread-safe, never blocks.

    Args:
        limits: The batch's limits.
        clock: Monotonic seconds (tests pass a fake clock).
    """

    def __init__(self, limits: BatchLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket | None] = {}
        self._grants: dict[int, tuple[str, int, float]] = {}
        self._next_grant = 0
        self._reserved_tokens = 0
        self._reserved_cost = 0.0
        self._totals = Totals()

    def try_reserve(self, model: str, tokens: int, cost_usd: float) -> Decision:
        """Reserve one request of at most ``tokens`` tokens costing at most ``cost_usd``.

        A call that would take the batch past its cap waits while other calls' reservations
        are unsettled (they usually settle below their maximum) and is refused once none are.
        """
        with self._lock:
            refusal = self._over_cap(tokens, cost_usd)
            if refusal is not None:
                if self._grants:
                    return Decision(wait_s=_BUDGET_RETRY_S)
                return Decision(refused=refusal)
            now = self._clock()
            requests = self._bucket(model, "requests", now)
            token_bucket = self._bucket(model, "tokens", now)
            # A call larger than a whole minute's tokens could never fit: let it through when
            # the bucket is full, and its debt delays the calls after it.
            need = min(float(tokens), token_bucket.capacity) if token_bucket else 0.0
            wait = max(
                requests.wait_for(1.0) if requests else 0.0,
                token_bucket.wait_for(need) if token_bucket else 0.0,
            )
            if wait > 0:
                return Decision(wait_s=wait)
            if requests:
                requests.level -= 1.0
            if token_bucket:
                token_bucket.level -= tokens
            self._next_grant += 1
            self._grants[self._next_grant] = (model, tokens, cost_usd)
            self._reserved_tokens += tokens
            self._reserved_cost += cost_usd
            return Decision(grant=self._next_grant)

    def settle(self, grant: int, usage: Usage | None) -> None:
        """Replace reservation ``grant`` with what the call used (None: it failed unused)."""
        with self._lock:
            entry = self._grants.pop(grant, None)
            if entry is None:
                return  # settled twice (a retried Ray call): count it once
            model, tokens, cost = entry
            self._reserved_tokens -= tokens
            self._reserved_cost -= cost
            if usage is None:
                used_tokens, used_cost = 0, 0.0
            else:
                used_tokens, used_cost = usage.total_tokens, usage.cost_usd or 0.0
            bucket = self._buckets.get((model, "tokens"))
            if bucket is not None:  # give back (or charge) the difference to the estimate
                bucket.level = min(bucket.capacity, bucket.level + tokens - used_tokens)
            t = self._totals
            self._totals = Totals(
                t.calls + (usage is not None), t.tokens + used_tokens, t.cost_usd + used_cost
            )

    def totals(self) -> Totals:
        """Usage of every settled call."""
        with self._lock:
            return self._totals

    def _over_cap(self, tokens: int, cost: float) -> str | None:
        cap_tokens, cap_cost = self.limits.max_tokens, self.limits.max_cost_usd
        t = self._totals
        if cap_tokens is not None and t.tokens + self._reserved_tokens + tokens > cap_tokens:
            return (
                f"batch token cap reached: {t.tokens:,} used, a call may need {tokens:,}, "
                f"cap {cap_tokens:,}; raise --max-tokens and rerun to finish the rest"
            )
        if cap_cost is not None and t.cost_usd + self._reserved_cost + cost > cap_cost:
            return (
                f"batch cost cap reached: ${t.cost_usd:.4f} spent, a call may cost "
                f"${cost:.4f}, cap ${cap_cost:.4f}; raise --max-cost-usd and rerun to finish"
            )
        return None

    def _bucket(self, model: str, kind: str, now: float) -> _Bucket | None:
        key = (model, kind)
        if key not in self._buckets:
            spec = (
                self.limits.requests_per_minute
                if kind == "requests"
                else self.limits.tokens_per_minute
            )
            per_minute = self.limits.rate(spec, model)
            self._buckets[key] = (
                None
                if per_minute is None
                else _Bucket(per_minute, per_minute / 60.0, per_minute, now)
            )
        bucket = self._buckets[key]
        if bucket is not None:
            bucket.refill(now)
        return bucket


class LimitsClient(Protocol):
    """How a run reaches the batch's :class:`SharedLimits` (in-process or a Ray actor)."""

    async def reserve(self, model: str, tokens: int, cost_usd: float) -> int:
        """Wait until the call may go; returns the grant to settle.

        Raises:
            BatchBudgetExceededError: The batch cap leaves no room for the call.
        """
        ...

    async def settle(self, grant: int, usage: Usage | None) -> None:
        """Record what the call used."""
        ...


async def wait_for_grant(ask: Callable[[], Any]) -> int:
    """Ask ``ask()`` (returns a :class:`Decision`, maybe awaitable) until it grants or refuses."""
    while True:
        decision = ask()
        if not isinstance(decision, Decision):
            decision = await decision
        if decision.grant is not None:
            return int(decision.grant)
        if decision.refused is not None:
            raise BatchBudgetExceededError(decision.refused)
        await anyio.sleep(decision.wait_s)


class LocalLimits:
    """A :class:`LimitsClient` for runs in this process."""

    def __init__(self, shared: SharedLimits) -> None:
        self.shared = shared

    async def reserve(self, model: str, tokens: int, cost_usd: float) -> int:
        """Wait until the call may go; returns the grant to settle."""
        return await wait_for_grant(lambda: self.shared.try_reserve(model, tokens, cost_usd))

    async def settle(self, grant: int, usage: Usage | None) -> None:
        """Record what the call used."""
        self.shared.settle(grant, usage)


class LimitedLM:
    """An LM whose every call reserves its worst case with the batch's limits first.

    Args:
        inner: The model that answers.
        limits: The batch's limits.
        max_completion_tokens: Completion tokens to reserve per call; defaults to the
            ``max_tokens`` the model is called with, else the model's output limit from
            litellm's price map, else :data:`DEFAULT_COMPLETION_TOKENS`.
    """

    def __init__(
        self, inner: LM, limits: LimitsClient, *, max_completion_tokens: int | None = None
    ) -> None:
        self.inner = inner
        self.limits = limits
        self._prices = _price_of(inner.model)
        self.max_completion_tokens = max_completion_tokens or self._completion_cap(inner)

    @property
    def model(self) -> str:
        """The inner model's name."""
        return self.inner.model

    def warm_up(self) -> None:
        """Let the inner model prepare while a sandbox boots (see ``LiteLLM.warm_up``)."""
        warm_up = getattr(self.inner, "warm_up", None)
        if callable(warm_up):
            warm_up()

    def worst_case(self, messages: Sequence[Message]) -> tuple[int, float]:
        """The most tokens and USD a call with ``messages`` can use."""
        prompt = estimate_prompt_tokens(messages)
        tokens = prompt + self.max_completion_tokens
        input_price, output_price = self._prices
        return tokens, prompt * input_price + self.max_completion_tokens * output_price

    async def complete(self, messages: Sequence[Message]) -> Completion:
        """Reserve, call the inner model, settle with what it really used."""
        tokens, cost = self.worst_case(messages)
        grant = await self.limits.reserve(self.model, tokens, cost)
        usage: Usage | None = None
        try:
            completion = await self.inner.complete(messages)
            usage = completion.usage
            return completion
        finally:
            with anyio.CancelScope(shield=True):
                await self.limits.settle(grant, usage)

    @staticmethod
    def _completion_cap(inner: LM) -> int:
        if isinstance(inner, LiteLLM):
            asked = inner.params.get("max_tokens")
            if isinstance(asked, int) and asked > 0:
                return asked
        info = _model_info(inner.model)
        known = info.get("max_output_tokens") or info.get("max_tokens")
        return int(known) if isinstance(known, int) and known > 0 else DEFAULT_COMPLETION_TOKENS


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    """An upper estimate of a prompt's tokens without tokenizing it (which costs milliseconds).

    Tokenizers average three to four characters of English per token; half the UTF-8 bytes
    stays above that for code, JSON and non-Latin scripts. Settling corrects the estimate.
    """
    total = 0
    for message in messages:
        total += math.ceil(len(str(message.get("content", "")).encode()) / 2) + 8
    return total


def _model_info(model: str) -> dict[str, Any]:
    try:
        costs = import_litellm().model_cost
    except Exception:  # no price map: no price, no known output limit
        return {}
    for key in (model, model.partition("/")[2]):
        info = costs.get(key)
        if isinstance(info, dict):
            return info
    return {}


def _price_of(model: str) -> tuple[float, float]:
    info = _model_info(model)
    prices = (info.get("input_cost_per_token"), info.get("output_cost_per_token"))
    return tuple(float(p) if isinstance(p, int | float) else 0.0 for p in prices)  # type: ignore[return-value]

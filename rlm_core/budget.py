"""One ledger for a whole recursion tree: model calls, tokens, USD and wall time.

The root run creates a :class:`Ledger`; every sub-call and child run records into the same one,
so a limit covers the whole tree. It is safe to share across threads and tasks.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from rlm_core.errors import BudgetExceededError
from rlm_core.lm import Usage

__all__ = ["Budget", "Ledger", "ModelUsage", "UsageSummary"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Limits for one run tree; None means unlimited."""

    max_llm_calls: int | None = 50
    """Model calls made on behalf of code: each llm_query prompt and each child run's step."""
    max_tokens: int | None = None
    """Prompt plus completion tokens of every call in the tree."""
    max_cost_usd: float | None = None
    """USD of every call in the tree, from litellm's price map (unknown prices count as 0)."""
    max_time_s: float | None = None
    """Wall time from the start of the root run."""


@dataclasses.dataclass(frozen=True, slots=True)
class ModelUsage:
    """What one model was used for."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    time_s: float = 0.0
    """Seconds spent waiting for this model (calls may overlap)."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclasses.dataclass(frozen=True, slots=True)
class UsageSummary:
    """Usage of a run tree: per model, totals, and wall time."""

    models: dict[str, ModelUsage]
    sub_calls: int
    """Calls counted against ``max_llm_calls``."""
    wall_time_s: float

    @property
    def calls(self) -> int:
        """Model calls of every kind."""
        return sum(m.calls for m in self.models.values())

    @property
    def total_tokens(self) -> int:
        """Tokens of every call."""
        return sum(m.total_tokens for m in self.models.values())

    @property
    def cost_usd(self) -> float:
        """USD of every call whose price is known."""
        return sum(m.cost_usd for m in self.models.values())

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "calls": self.calls,
            "sub_calls": self.sub_calls,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "wall_time_s": self.wall_time_s,
            "models": {name: dataclasses.asdict(m) for name, m in self.models.items()},
        }


class Ledger:
    """The shared account of a run tree; every method is thread-safe."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._sub_calls = 0
        self._tokens = 0
        self._cost = 0.0
        self._models: dict[str, ModelUsage] = {}

    @property
    def sub_calls_left(self) -> int | None:
        """How many more sub-calls the budget allows (None: unlimited)."""
        limit = self.budget.max_llm_calls
        with self._lock:
            return None if limit is None else max(0, limit - self._sub_calls)

    def reserve_sub_calls(self, n: int) -> None:
        """Take ``n`` sub-calls from the budget, all or nothing.

        Raises:
            BudgetExceededError: Fewer than ``n`` are left, or another limit is already spent.
        """
        self.check()
        limit = self.budget.max_llm_calls
        with self._lock:
            if limit is not None and self._sub_calls + n > limit:
                used = self._sub_calls
                raise BudgetExceededError(
                    f"LLM call limit exceeded: {used} used + {n} requested > {limit}. "
                    "Aggregate with Python code instead of making more LLM calls."
                )
            self._sub_calls += n

    def record(self, model: str, usage: Usage, seconds: float) -> None:
        """Account for one finished model call."""
        with self._lock:
            self._tokens += usage.total_tokens
            self._cost += usage.cost_usd or 0.0
            old = self._models.get(model, ModelUsage())
            self._models[model] = ModelUsage(
                calls=old.calls + 1,
                prompt_tokens=old.prompt_tokens + usage.prompt_tokens,
                completion_tokens=old.completion_tokens + usage.completion_tokens,
                cost_usd=old.cost_usd + (usage.cost_usd or 0.0),
                time_s=old.time_s + seconds,
            )

    def elapsed(self) -> float:
        """Seconds since the ledger was created."""
        return time.monotonic() - self._started

    def check(self) -> None:
        """Raise if the token, USD or time budget is spent.

        Raises:
            BudgetExceededError: The message names the limit and how much was used.
        """
        b = self.budget
        with self._lock:
            tokens, cost = self._tokens, self._cost
        if b.max_tokens is not None and tokens >= b.max_tokens:
            raise BudgetExceededError(f"token budget spent: {tokens:,} of {b.max_tokens:,} tokens")
        if b.max_cost_usd is not None and cost >= b.max_cost_usd:
            raise BudgetExceededError(f"cost budget spent: ${cost:.4f} of ${b.max_cost_usd:.4f}")
        elapsed = self.elapsed()
        if b.max_time_s is not None and elapsed >= b.max_time_s:
            raise BudgetExceededError(
                f"time budget spent: {elapsed:.1f} s of {b.max_time_s:g} s wall time"
            )

    def summary(self) -> UsageSummary:
        """A snapshot of the usage so far."""
        with self._lock:
            return UsageSummary(dict(self._models), self._sub_calls, self.elapsed())

"""Run every (item, method, backend, repeat) of a bench, safely: resumable, capped, time-limited.

Each finished run is appended to ``results.jsonl`` at once, so a killed run loses only the
runs in flight; rerunning with the same ``--out`` skips every finished key. ``--max-usd``
stops before a run whose expected cost (the mean of finished runs like it) would pass the
cap, and each RLM run also gets the remaining USD as its own hard budget.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from rlm_core.bench.limiter import RateLimitedLM, RateLimiter
from rlm_core.bench.policies import ModelSet, direct_prompt, resolve_models
from rlm_core.bench.scoring import score
from rlm_core.bench.tasks import Item
from rlm_core.errors import (
    BudgetExceededError,
    ConfigError,
    InterpreterError,
    LMError,
    OutputValidationError,
)
from rlm_core.lm import LM, Completion, Message

__all__ = ["METHODS", "BenchConfig", "Job", "failure_kind", "load_results", "run_jobs"]

METHODS = {"direct": None, "rlm": 0, "rlm-depth2": 1}
"""Method name to the RLM's ``max_depth`` (None: one plain model call, no sandbox)."""

INSTRUCTIONS = (
    "Answer `query` about `context`. Give the answer in exactly the form the query asks for."
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    """Everything one bench run needs besides its items."""

    model: str
    sub_model: str | None = None
    api_base: str | None = None
    methods: tuple[str, ...] = tuple(METHODS)
    interpreters: tuple[str, ...] = ("deno",)
    repeats: int = 1
    context_window: int = 128_000
    """Tokens the direct method may send (chars / 4); longer inputs are cut with a note."""
    max_usd: float | None = None
    item_timeout_s: float = 600.0
    concurrency: int = 4
    max_concurrent_calls: int | None = 8
    calls_per_minute: float | None = None
    max_iterations: int = 10
    max_llm_calls: int = 200
    cell_timeout_s: float = 600.0
    """A depth-2 step runs whole child RLMs; the per-run timeout is the real limit."""


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One run: an item, a method, a backend (``-`` for direct) and a repeat number."""

    item: Item
    method: str
    interpreter: str
    repeat: int

    @property
    def key(self) -> str:
        """Identifies the run in ``results.jsonl`` (what resuming skips)."""
        return f"{self.item.item_id}|{self.method}|{self.interpreter}|{self.repeat}"


def plan(items: list[Item], config: BenchConfig) -> list[Job]:
    """The runs, in lockstep: one item's backends (and methods) run next to each other."""
    jobs = []
    for item in items:
        for repeat in range(config.repeats):
            for method in config.methods:
                backends = ["-"] if METHODS[method] is None else list(config.interpreters)
                for backend in backends:
                    jobs.append(Job(item, method, backend, repeat))
    return jobs


def load_results(path: Path) -> list[dict[str, Any]]:
    """The records of ``results.jsonl``; a line cut short by a kill is dropped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the last line of a killed run may be partial
        if isinstance(record, dict) and "key" in record:
            records.append(record)
    return records


def failure_kind(exc: BaseException) -> str:
    """A short name for why a run failed, for the report's failure counts."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, BudgetExceededError):
        return "budget"
    if isinstance(exc, LMError):
        return "model_error"
    if isinstance(exc, OutputValidationError):
        return "no_valid_output"
    if isinstance(exc, InterpreterError):
        return "sandbox"
    return "error"


@dataclasses.dataclass(slots=True)
class _Outcome:
    answer: str = ""
    steps: int = 0
    cut: bool = False


class _Meter:
    """Tokens and USD of every model call of one run, kept even when the run fails."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usd = 0.0
        self.calls = 0

    def wrap(self, lm: LM) -> LM:
        meter = self

        class Metered:
            @property
            def model(self) -> str:
                return lm.model

            async def complete(self, messages: Sequence[Message]) -> Completion:
                completion = await lm.complete(messages)
                u = completion.usage
                meter.prompt_tokens += u.prompt_tokens
                meter.completion_tokens += u.completion_tokens
                meter.usd += u.cost_usd or 0.0
                meter.calls += 1
                return completion

        return Metered()

    def models(self, models: ModelSet) -> ModelSet:
        root = self.wrap(models.root)
        sub = root if models.sub is models.root else self.wrap(models.sub)
        direct = root if models.direct is models.root else self.wrap(models.direct)
        return ModelSet(root=root, sub=sub, direct=direct)


async def _direct(job: Job, models: ModelSet, config: BenchConfig) -> _Outcome:
    prompt, cut = direct_prompt(job.item.context, job.item.query, config.context_window)
    completion = await models.direct.complete([{"role": "user", "content": prompt}])
    return _Outcome(answer=completion.text, cut=cut)


async def _rlm(job: Job, models: ModelSet, config: BenchConfig, usd_left: float | None) -> _Outcome:
    from rlm_core.rlm import RLM

    rlm = RLM(
        "context, query -> answer: str",
        lm=models.root,
        sub_lm=models.sub,
        interpreter=job.interpreter,
        max_depth=METHODS[job.method],
        max_iterations=config.max_iterations,
        max_llm_calls=config.max_llm_calls,
        cell_timeout_s=config.cell_timeout_s,
        max_cost_usd=usd_left if usd_left is not None and usd_left > 0 else None,
        instructions=INSTRUCTIONS,
    )
    result = await rlm.acall(context=job.item.context, query=job.item.query)
    return _Outcome(answer=str(result.answer), steps=len(result.steps))


class _Spend:
    """USD spent and reserved by runs in flight, and the expected cost of the next run."""

    def __init__(self, cap: float | None, finished: list[dict[str, Any]]) -> None:
        self.cap = cap
        self.spent = sum(float(r.get("usd", 0.0)) for r in finished)
        self.reserved = 0.0
        self.history: dict[tuple[str, int, str], list[float]] = {}
        for r in finished:
            self.add(r)
        self.stopped = False

    def add(self, record: dict[str, Any]) -> None:
        group = (record["task"], int(record["length"]), record["method"])
        self.history.setdefault(group, []).append(float(record.get("usd", 0.0)))

    def expected(self, job: Job) -> float:
        same = self.history.get((job.item.task, job.item.length, job.method))
        if not same:  # nothing like it yet: the mean of every run of the method so far
            same = [
                c for (_, _, m), costs in self.history.items() if m == job.method for c in costs
            ]
        return sum(same) / len(same) if same else 0.0

    def left(self) -> float | None:
        return None if self.cap is None else self.cap - self.spent - self.reserved


ProgressHook = Callable[[dict[str, Any] | None, int], None]
"""Called with each finished record (None for a skipped one) and the number finished so far."""


async def run_jobs(
    jobs: list[Job],
    config: BenchConfig,
    results_path: Path,
    *,
    on_record: ProgressHook | None = None,
) -> tuple[list[dict[str, Any]], int, bool]:
    """Run the jobs not yet in ``results_path``; return (all records, skipped, stopped by cap).

    Raises:
        ConfigError: The model or a method name is unknown.
    """
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    limiter = RateLimiter(
        max_concurrent=config.max_concurrent_calls, per_minute=config.calls_per_minute
    )
    base = resolve_models(config.model, config.sub_model, config.api_base)
    root = RateLimitedLM(base.root, limiter)
    sub = root if base.sub is base.root else RateLimitedLM(base.sub, limiter)
    models = ModelSet(root=root, sub=sub, direct=root if base.direct is base.root else sub)

    results_path.parent.mkdir(parents=True, exist_ok=True)
    previous = load_results(results_path)
    wanted = {job.key for job in jobs}
    done = {r["key"] for r in previous if r["key"] in wanted}
    todo = [job for job in jobs if job.key not in done]
    skipped = len(jobs) - len(todo)
    spend = _Spend(config.max_usd, [r for r in previous if r["key"] in wanted])
    records = [r for r in previous if r["key"] in wanted]
    write_lock = anyio.Lock()
    slots = anyio.CapacityLimiter(max(1, config.concurrency))
    finished = [len(done)]
    with results_path.open("a", encoding="utf-8") as out:

        async def one(job: Job) -> None:
            async with slots:
                if spend.stopped:
                    return
                expected = spend.expected(job)
                left = spend.left()
                if left is not None and (left <= 0 or expected > left):
                    spend.stopped = True  # stop before a run that would pass the cap
                    return
                spend.reserved += expected
                try:
                    record = await _run_one(job, models, config, left)
                finally:
                    spend.reserved -= expected
                spend.spent += record["usd"]
                spend.add(record)
                async with write_lock:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
                    records.append(record)
                    finished[0] += 1
                if on_record is not None:
                    on_record(record, finished[0])

        async with anyio.create_task_group() as tg:
            for job in todo:
                tg.start_soon(one, job)
    return records, skipped, spend.stopped


async def _run_one(
    job: Job, models: ModelSet, config: BenchConfig, usd_left: float | None
) -> dict[str, Any]:
    started = time.perf_counter()
    outcome = _Outcome()
    failure: str | None = None
    error = ""
    meter = _Meter()
    metered = meter.models(models)
    try:
        with anyio.fail_after(config.item_timeout_s):
            if METHODS[job.method] is None:
                outcome = await _direct(job, metered, config)
            else:
                outcome = await _rlm(job, metered, config, usd_left)
    except Exception as exc:  # a failed run is a data point, not the end of the bench
        failure = failure_kind(exc)
        error = f"{type(exc).__name__}: {exc}"[:500]
    seconds = time.perf_counter() - started
    item = job.item
    return {
        "key": job.key,
        "task": item.task,
        "length": item.length,
        "item_id": item.item_id,
        "method": job.method,
        "interpreter": job.interpreter,
        "repeat": job.repeat,
        "model": config.model,
        "context_tokens": item.context_tokens,
        "answer": outcome.answer[:2000],
        "score": 0.0 if failure else score(outcome.answer, item.gold, item.answer_type),
        "failure": failure,
        "error": error,
        "prompt_tokens": meter.prompt_tokens,
        "completion_tokens": meter.completion_tokens,
        "tokens": meter.prompt_tokens + meter.completion_tokens,
        "usd": meter.usd,
        "seconds": round(seconds, 4),
        "calls": meter.calls,
        "steps": outcome.steps,
        "cut": outcome.cut,
        "finished_at": time.time(),
    }

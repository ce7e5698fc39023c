"""``run_batch``: one RLM run per input row, results appended to a JSONL file, resumable.

The local executor runs rows as tasks on one event loop, at most ``concurrency`` at a time (each
with its own sandbox); the Ray executor (:mod:`rlm_core.batch.ray_executor`) spreads them over a
cluster. Both share one rate limiter and one spend cap across every run and sub-call.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import anyio

from rlm_core.batch.job import BatchJob, RetryPolicy, run_row
from rlm_core.batch.limits import (
    BatchBudgetExceededError,
    BatchLimits,
    LimitsClient,
    LocalLimits,
    SharedLimits,
)
from rlm_core.batch.progress import BatchProgress
from rlm_core.batch.results import ResultsFile
from rlm_core.batch.rows import Row, count_rows, read_rows
from rlm_core.batch.sandboxes import default_concurrency
from rlm_core.errors import ConfigError

__all__ = ["BatchSummary", "run_batch"]


@dataclasses.dataclass(frozen=True, slots=True)
class BatchSummary:
    """What one ``run_batch`` call did."""

    skipped: int
    """Rows already in the output file from an earlier run."""
    ok: int
    """Rows that finished with outputs in this run."""
    failed: int
    """Rows recorded with a permanent error (or after their retries) in this run."""
    stopped: str | None
    """Why the batch stopped before every row was done (the spend cap), else None."""
    tokens: int
    cost_usd: float
    duration_s: float

    @property
    def complete(self) -> bool:
        """True when every row now has a line in the output file."""
        return self.stopped is None


def run_batch(
    job: BatchJob,
    rows: str | Path,
    output: str | Path,
    *,
    id_field: str = "id",
    limits: BatchLimits | None = None,
    retry: RetryPolicy | None = None,
    concurrency: int | None = None,
    executor: str = "local",
    progress: bool = False,
) -> BatchSummary:
    """Run ``job`` on every row of ``rows`` not yet in ``output``; append each result there.

    Args:
        job: The RLM to run per row.
        rows: A ``.jsonl``, ``.csv`` or ``.parquet`` file; each row's fields named like the
            signature's inputs become the inputs (others are ignored).
        output: The results JSONL; rerunning with the same file skips rows already in it.
        id_field: The field that names a row (default ``id``; its position when absent).
        limits: Requests/tokens per minute per model, and the batch's USD and token cap.
        retry: Retries of transient failures (a busy model, a lost sandbox).
        concurrency: Rows (and sandboxes) at once; default: what this machine's memory
            allows for the backend (local), or the cluster's CPUs (Ray).
        executor: ``"local"``, ``"ray"`` (``RAY_ADDRESS`` or a new local cluster) or
            ``"ray://HOST:PORT"``.
        progress: Show a progress bar on stderr.

    Raises:
        ConfigError: Bad input file, output file, settings or executor.
    """
    if concurrency is not None and (isinstance(concurrency, bool) or concurrency < 1):
        raise ConfigError(f"concurrency must be a positive integer, not {concurrency!r}")
    job = job.resolved()
    limits = limits or BatchLimits()
    retry = retry or RetryPolicy()
    total = count_rows(rows)
    started = time.perf_counter()
    with ResultsFile(output) as sink:
        skipped = len(sink.done)
        todo = (r for r in read_rows(rows, id_field=id_field) if r.id not in sink.done)
        bar = BatchProgress(total, skipped=skipped, enabled=progress)
        try:
            if executor == "local":
                workers = concurrency or default_concurrency(str(job.interpreter))
                stopped = anyio.run(_run_local, job, todo, sink, limits, retry, workers, bar)
            elif executor == "ray" or executor.startswith("ray://"):
                from rlm_core.batch.ray_executor import run_on_ray

                address = None if executor == "ray" else executor
                stopped = run_on_ray(address, job, todo, sink, limits, retry, concurrency, bar)
            else:
                raise ConfigError(
                    f"unknown executor {executor!r}: use 'local', 'ray' or 'ray://HOST:PORT'"
                )
        finally:
            bar.close()
    return BatchSummary(
        skipped=skipped,
        ok=bar.ok,
        failed=bar.failed,
        stopped=stopped,
        tokens=bar.tokens,
        cost_usd=bar.cost_usd,
        duration_s=time.perf_counter() - started,
    )


async def _run_local(
    job: BatchJob,
    rows: Iterator[Row],
    sink: ResultsFile,
    limits: BatchLimits,
    retry: RetryPolicy,
    concurrency: int,
    bar: BatchProgress,
) -> str | None:
    client: LimitsClient = LocalLimits(SharedLimits(limits))
    slots = anyio.Semaphore(concurrency)
    stopped: list[str] = []
    seen: set[str] = set()

    async def one(row: Row) -> None:
        try:
            record = await run_row(job, row, client, retry)
        except BatchBudgetExceededError as exc:
            stopped.append(str(exc))  # not recorded: a rerun with a higher cap finishes it
            return
        finally:
            slots.release()
        if sink.append(record):
            bar.row_done(record)

    async with anyio.create_task_group() as group:
        for row in rows:  # read lazily: a million-row file is never all in memory
            await slots.acquire()
            if stopped:
                slots.release()
                break
            if row.id in seen:  # the input repeats an id: its first row stands for it
                slots.release()
                continue
            seen.add(row.id)
            group.start_soon(one, row)
    return stopped[0] if stopped else None

"""The Ray executor: rows run as Ray tasks across a cluster; the driver writes every result.

Each task runs one row in a Ray worker process, which starts its own sandboxes. The batch's
rate limiter and spend cap live in one Ray actor (:class:`SharedLimits` inside it), so every
model call on every node reserves from the same account. A worker or node lost mid-row makes
Ray rerun that task elsewhere (``max_retries``); the driver writes a row's record only when its
task returns, once, so every row lands in the output exactly once. Needs ``ray``
(``pip install "rlmbox[ray]"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio

from rlm_core.batch.job import BatchJob, RetryPolicy, run_row
from rlm_core.batch.limits import (
    BatchBudgetExceededError,
    BatchLimits,
    SharedLimits,
    wait_for_grant,
)
from rlm_core.batch.progress import BatchProgress
from rlm_core.batch.results import ResultsFile
from rlm_core.batch.rows import Row
from rlm_core.errors import ConfigError
from rlm_core.lm import Usage

__all__ = ["WORKER_LOSS_RETRIES", "run_on_ray"]

WORKER_LOSS_RETRIES = 3
"""Times Ray reruns a row whose worker process or node died."""

_BUDGET_STOP = "__batch_budget_exceeded__"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError('--executor ray needs Ray: pip install "rlmbox[ray]"') from None
    return ray


class _ActorLimits:
    """A :class:`~rlm_core.batch.limits.LimitsClient` backed by the batch's limits actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def reserve(self, model: str, tokens: int, cost_usd: float) -> int:
        return await wait_for_grant(lambda: self.actor.try_reserve.remote(model, tokens, cost_usd))

    async def settle(self, grant: int, usage: Usage | None) -> None:
        await self.actor.settle.remote(grant, usage)


def _row_task(job: BatchJob, row: Row, actor: Any, retry: RetryPolicy) -> dict[str, Any]:
    """Body of the Ray task for one row (runs in a worker process)."""

    async def main() -> dict[str, Any]:
        try:
            return await run_row(job, row, _ActorLimits(actor), retry)
        except BatchBudgetExceededError as exc:
            return {"id": row.id, _BUDGET_STOP: str(exc)}

    return anyio.run(main)


def run_on_ray(
    address: str | None,
    job: BatchJob,
    rows: Iterator[Row],
    sink: ResultsFile,
    limits: BatchLimits,
    retry: RetryPolicy,
    concurrency: int | None,
    bar: BatchProgress,
) -> str | None:
    """Run ``rows`` as Ray tasks on the cluster at ``address``; returns why it stopped early.

    ``address`` None means ``RAY_ADDRESS`` if set, else a new local cluster.
    """
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        actor = ray.remote(SharedLimits).options(num_cpus=0).remote(limits)
        task = ray.remote(_row_task).options(
            num_cpus=1, max_retries=WORKER_LOSS_RETRIES, retry_exceptions=False
        )
        in_flight = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending: dict[Any, Row] = {}
        seen: set[str] = set()
        stopped: str | None = None
        exhausted = False
        while pending or not (exhausted or stopped):
            while not (exhausted or stopped) and len(pending) < in_flight:
                row = next(rows, None)
                if row is None:
                    exhausted = True
                elif row.id not in seen:
                    seen.add(row.id)
                    pending[task.remote(job, row, actor, retry)] = row
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                row = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as exc:  # the task's worker died more often than it retried
                    record = {
                        "id": row.id,
                        "ok": False,
                        "outputs": None,
                        "usage": None,
                        "error": {"type": type(exc).__name__, "message": str(exc)[:2000]},
                        "attempts": WORKER_LOSS_RETRIES + 1,
                    }
                if _BUDGET_STOP in record:
                    stopped = stopped or str(record[_BUDGET_STOP])
                elif sink.append(record):
                    bar.row_done(record)
        return stopped
    finally:
        if started_here:
            ray.shutdown()

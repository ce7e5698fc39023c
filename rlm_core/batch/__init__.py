"""Batches: one RLM run per input row, resumable, under one shared rate limit and spend cap.

``run_batch(BatchJob("document -> summary", model=...), "rows.jsonl", "out.jsonl")`` runs
every row not yet in ``out.jsonl`` and appends each result as it finishes; ``rlm batch`` is the
same on the command line. See ``docs/batch.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm_core._lazy import attach

if TYPE_CHECKING:
    from rlm_core.batch.job import BatchJob, RetryPolicy
    from rlm_core.batch.limits import BatchBudgetExceededError, BatchLimits, LimitedLM, SharedLimits
    from rlm_core.batch.run import BatchSummary, run_batch
    from rlm_core.batch.sandboxes import default_concurrency

__all__ = [
    "BatchBudgetExceededError",
    "BatchJob",
    "BatchLimits",
    "BatchSummary",
    "LimitedLM",
    "RetryPolicy",
    "SharedLimits",
    "default_concurrency",
    "run_batch",
]

__getattr__, __dir__ = attach(__name__, __file__, __all__)

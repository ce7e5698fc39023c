"""One row's work, the same on every executor: build the RLM, run it with retries, make a record.

:class:`BatchJob` describes the RLM by value (strings and numbers), so it can be shipped to Ray
workers. :func:`run_row` retries transient failures (a rate-limited or unreachable model, a
sandbox that died) with exponential backoff and records permanent ones without retrying.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from rlm_core.batch.limits import BatchBudgetExceededError, LimitedLM, LimitsClient
from rlm_core.batch.rows import Row
from rlm_core.batch.sandboxes import batch_interpreter
from rlm_core.config import NO_MODEL_HINT, load_settings
from rlm_core.errors import ConfigError, LMError, SessionLostError
from rlm_core.lm import LM, resolve_lm
from rlm_core.registry import parse_spec

__all__ = ["BatchJob", "RetryPolicy", "is_transient", "run_row"]

# litellm's exception classes for failures that a later attempt may not see.
_TRANSIENT_LM_ERRORS = frozenset(
    {
        "APIConnectionError",
        "BadGatewayError",
        "InternalServerError",
        "RateLimitError",
        "ServiceUnavailableError",
        "Timeout",
        "APITimeoutError",
    }
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a row is retried after a transient failure."""

    retries: int = 3
    """Extra attempts per row (0: none)."""
    backoff_s: float = 1.0
    """Wait before the first retry; doubles each time, with jitter."""
    max_backoff_s: float = 60.0
    """Longest wait between attempts."""

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)  # jitter: retried rows do not stampede


@dataclasses.dataclass(frozen=True, slots=True)
class BatchJob:
    """The RLM every row runs, described by value; unset settings come from the configuration.

    Args:
        signature: ``"document, question -> answer"``: each row supplies the inputs.
        model: Root model (litellm string); default: the ``model`` setting.
        sub_model: Model behind ``llm_query``; default: the ``sub_model`` setting, then ``model``.
        api_base: Base URL of an OpenAI-compatible server.
        interpreter: Backend name or spec; default: the ``interpreter`` setting. Deno rows
            share processes, 16 sessions each, unless the spec sets ``sessions_per_process``.
        options: Other :class:`~rlm_core.rlm.RLM` keyword arguments (``max_iterations``...).
        trajectories: Folder to write each row's full result (outputs, steps) to, as JSON.
    """

    signature: str
    _: dataclasses.KW_ONLY
    model: str | None = None
    sub_model: str | None = None
    api_base: str | None = None
    interpreter: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    trajectories: str | None = None

    def resolved(self) -> BatchJob:
        """This job with the configured defaults filled in (done once, on the driver).

        Raises:
            ConfigError: No model is configured, or the signature is invalid.
        """
        from rlm_core.rlm import RLM

        s = load_settings(
            {
                "model": self.model,
                "sub_model": self.sub_model,
                "api_base": self.api_base,
                "interpreter": self.interpreter,
            }
        )
        if s.model is None:
            raise ConfigError(NO_MODEL_HINT)
        RLM(self.signature, lm=s.model, interpreter=s.interpreter, **self.options)  # validates
        return dataclasses.replace(
            self,
            model=s.model,
            sub_model=s.sub_model or s.model,
            api_base=s.api_base,
            interpreter=batch_interpreter(
                s.interpreter, s.backend_options(parse_spec(s.interpreter)[0])
            ),
        )

    def models(self, limits: LimitsClient) -> tuple[LM, LM]:
        """The root and sub models, each behind the batch's shared limits."""
        assert self.model is not None, "call resolved() first"
        lm = resolve_lm(self.model, api_base=self.api_base)
        sub = (
            lm
            if self.sub_model in (None, self.model)
            else resolve_lm(str(self.sub_model), api_base=self.api_base)
        )
        limited = LimitedLM(lm, limits)
        return limited, (limited if sub is lm else LimitedLM(sub, limits))


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed: the model was unreachable or busy, the sandbox died."""
    if isinstance(exc, SessionLostError | OSError | TimeoutError):
        return True
    if isinstance(exc, LMError):
        cause = exc.__cause__
        if cause is None:
            return False
        if type(cause).__name__ == "APIError":  # litellm's generic provider failure (5xx)
            return True
        # By ancestry too, but every HTTP status error (401, 400...) descends from APIError.
        names = {cls.__name__ for cls in type(cause).__mro__} - {"APIError"}
        return bool(names & _TRANSIENT_LM_ERRORS)
    return False


async def run_row(
    job: BatchJob, row: Row, limits: LimitsClient, policy: RetryPolicy
) -> dict[str, Any]:
    """Run ``row`` (with retries) and return its result record.

    Raises:
        BatchBudgetExceededError: The batch cap is spent; the row is not done and must not be
            recorded (a rerun with a higher cap picks it up).
    """
    from rlm_core.rlm import RLM

    started = time.perf_counter()
    record: dict[str, Any] = {"id": row.id, "ok": False, "outputs": None, "usage": None}
    if row.problem is not None:
        return _failed(record, "RowError", row.problem, 0, started)
    lm, sub_lm = job.models(limits)
    rlm = RLM(job.signature, lm=lm, sub_lm=sub_lm, interpreter=job.interpreter, **job.options)
    inputs = {name: row.fields[name] for name in rlm.signature.input_names if name in row.fields}
    attempt = 0
    while True:
        attempt += 1
        try:
            result = await rlm.acall(**inputs)
        except BatchBudgetExceededError:
            raise
        except Exception as exc:
            if is_transient(exc) and attempt <= policy.retries:
                await anyio.sleep(policy.delay(attempt))
                continue
            return _failed(record, type(exc).__name__, str(exc), attempt, started)
        break
    full = result.to_dict()
    record.update(ok=True, outputs=full["outputs"], usage=full["usage"])
    record.update(error=None, attempts=attempt, duration_s=round(time.perf_counter() - started, 3))
    if job.trajectories:
        path = Path(job.trajectories) / f"{_safe_name(row.id)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(full, ensure_ascii=False, default=str), encoding="utf-8")
        record["trajectory"] = str(path)
    return record


def _failed(
    record: dict[str, Any], kind: str, message: str, attempts: int, started: float
) -> dict[str, Any]:
    record.update(
        error={"type": kind, "message": message},
        attempts=attempts,
        duration_s=round(time.perf_counter() - started, 3),
    )
    return record


def _safe_name(row_id: str) -> str:
    """A file name for ``row_id`` that cannot leave the trajectories folder."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", row_id)[:80].lstrip(".") or "row"
    # Ids that differ only in replaced characters must not share a file.
    return f"{cleaned}-{hashlib.sha256(row_id.encode()).hexdigest()[:10]}"

"""The record of a run: steps, the sub-calls made during them, and a live JSONL event log.

Everything here turns into plain JSON (``Step.to_dict``), so a trajectory can be saved,
diffed or replayed; :class:`EventLog` appends one JSON object per line as the run happens.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal, TypeAlias

from rlm_core.lm import Usage
from rlm_core.tools import describe_exception, to_json

__all__ = [
    "EVENT_FORMAT_VERSION",
    "Event",
    "EventLog",
    "Step",
    "StepKind",
    "SubCall",
    "error_text",
    "guess_call_line",
    "usage_dict",
]

EVENT_FORMAT_VERSION = 2
"""Version of the event log's JSON (``run_start.format_version``; see docs/trajectory-format.md).

1: the first format (no version field). 2 adds ``path``, ``ts``, ``budget``, the child run's
origin (``parent_step``, ``parent_site``, ``code_line``), ``tool_call`` events, a ``ledger``
snapshot on each ``step``, ``sub_call`` events for failed calls, and call sites on sub-calls.
"""

StepKind: TypeAlias = Literal["code", "no_code", "bad_fence", "extract"]
"""``code`` ran a cell; ``no_code`` and ``bad_fence`` were replies without runnable Python;
``extract`` is the fallback that read the outputs off the history."""

Event: TypeAlias = dict[str, Any]
"""One JSON object of the event stream (``event`` names its kind)."""


def usage_dict(usage: Usage) -> dict[str, Any]:
    """A JSON form of one call's usage."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost_usd": usage.cost_usd,
    }


@dataclasses.dataclass(slots=True, kw_only=True)
class SubCall:
    """One ``llm_query`` prompt or one ``rlm_query`` child run made by a step's code."""

    kind: Literal["llm_query", "rlm_query"]
    model: str
    prompt: str
    response: str | None = None
    error: str | None = None
    duration_s: float = 0.0
    usage: Usage = dataclasses.field(default_factory=Usage)
    steps: list[Step] = dataclasses.field(default_factory=list)
    """A child run's own steps (``rlm_query`` only)."""
    site: str = ""
    """Where the call was made (:attr:`rlm_core.observe.hooks.Site.key`)."""
    batch: str | None = None
    """The ``llm_query_batched`` call this prompt belongs to, if any."""
    code_line: int | None = None
    """The line of the step's code that (most likely) made the call."""
    child_path: str | None = None
    """The child run's path in the run tree (``rlm_query`` only)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "kind": self.kind,
            "model": self.model,
            "prompt": self.prompt,
            "response": self.response,
            "error": self.error,
            "duration_s": self.duration_s,
            "usage": usage_dict(self.usage),
            "steps": [s.to_dict() for s in self.steps],
            "site": self.site,
            "batch": self.batch,
            "code_line": self.code_line,
            "child_path": self.child_path,
        }


@dataclasses.dataclass(slots=True, kw_only=True)
class Step:
    """One iteration: the model's reply, the cell it ran, and what the cell did."""

    index: int
    kind: StepKind = "code"
    reasoning: str = ""
    code: str = ""
    stdout: str = ""
    stderr: str = ""
    value: str | None = None
    error: str | None = None
    submitted: dict[str, Any] | None = None
    output: str = ""
    """The step's output exactly as the model was shown it."""
    output_chars: int = 0
    """The true length of stdout before truncation."""
    duration_s: float = 0.0
    """Wall time of the cell."""
    lm_duration_s: float = 0.0
    """Wall time of the model call that wrote the step."""
    usage: Usage = dataclasses.field(default_factory=Usage)
    sub_calls: list[SubCall] = dataclasses.field(default_factory=list)
    session_restarted: bool = False
    """The sandbox was replaced after this step (its variables were lost)."""
    final: bool = False
    """This step produced the run's outputs."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``submitted`` values that are not JSON become their repr)."""
        submitted: Any = None
        if self.submitted is not None:
            submitted = {k: _jsonable(v) for k, v in self.submitted.items()}
        return {
            "index": self.index,
            "kind": self.kind,
            "reasoning": self.reasoning,
            "code": self.code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "value": self.value,
            "error": self.error,
            "submitted": submitted,
            "output": self.output,
            "output_chars": self.output_chars,
            "duration_s": self.duration_s,
            "lm_duration_s": self.lm_duration_s,
            "usage": usage_dict(self.usage),
            "sub_calls": [c.to_dict() for c in list(self.sub_calls)],
            "session_restarted": self.session_restarted,
            "final": self.final,
        }


def error_text(exc: BaseException) -> str:
    """``"Type: message"`` of an exception, even when its ``__str__`` raises."""
    problem = describe_exception(exc)
    return f"{problem['type']}: {problem['message']}"


def guess_call_line(code: str, name: str, ordinal: int) -> int | None:
    """The 1-based line of ``code`` that most likely made the ``ordinal``-th call to ``name``.

    The host never sees guest frames, so this reads the source: the ``ordinal``-th line that
    calls ``name``, or the last such line when the calls came from a loop.
    """
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}\s*\(")
    lines = [i for i, text in enumerate(code.splitlines(), 1) if pattern.search(text)]
    if not lines:
        return None
    return lines[min(ordinal, len(lines)) - 1]


def _jsonable(value: Any) -> Any:
    try:
        return to_json(value)
    except TypeError:
        return repr(value)


class EventLog:
    """Appends events as JSON lines to a file (or any text stream), flushing each one.

    Args:
        target: A path (opened for appending) or an open text stream (left open).
    """

    def __init__(self, target: str | Path | IO[str]) -> None:
        self._lock = threading.Lock()
        if isinstance(target, str | Path):
            self._stream: IO[str] = Path(target).open("a", encoding="utf-8")  # noqa: SIM115
            self._owned = True
        else:
            self._stream = target
            self._owned = False

    def __call__(self, event: Event) -> None:
        """Write one event."""
        line = json.dumps(event, default=_default, ensure_ascii=False)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        """Close the file if this log opened it."""
        if self._owned:
            self._stream.close()


def _default(value: Any) -> Any:
    converted = _jsonable(value)
    return converted if converted is not value else repr(value)


EventSink: TypeAlias = Callable[[Event], None]

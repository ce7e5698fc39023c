"""OpenTelemetry spans for every run, following the GenAI semantic conventions (``otel`` extra).

The span tree of a run::

    invoke_agent rlm                    one per run (root and children), rlm.depth, rlm.budget.*
    ├── chat <model>                    the model call that writes each step
    └── execute_tool python             each cell
        ├── chat <sub model>            an llm_query from the cell
        ├── execute_tool llm_query_batched
        │   └── chat <sub model>        one per prompt, concurrent
        ├── execute_tool rlm_query
        │   └── invoke_agent rlm        the child run (depth + 1)
        └── execute_tool <user tool>

Parents are found by call site, not by the ambient context: a call from guest code arrives
through the sandbox's callback channel (another thread or task on some backends), so the span of
the cell that made it is looked up by the call's :class:`~rlm_core.observe.hooks.Site`. Each span
is also made current while its call runs, so instrumented libraries (litellm, httpx) nest under
it. Attributes carry both the OpenTelemetry GenAI keys and OpenInference's span kinds.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from rlm_core.lm import Completion, Message
from rlm_core.observe.hooks import ModelCall, Observer, RunInfo, Site, ToolCall
from rlm_core.trajectory import Step

__all__ = ["TraceObserver"]

_SPAN_KIND_KEY = "openinference.span.kind"


class TraceObserver(Observer):
    """Turns a run tree's hooks into spans.

    Args:
        tracer_provider: Where spans go; default: the global provider (set by your
            OpenTelemetry setup; without one, the API's no-op provider drops them).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("rlm_core", tracer_provider=tracer_provider)
        self._spans: dict[str, Span] = {}
        self._lock = threading.Lock()

    # ---- bookkeeping ----------------------------------------------------------------------

    def _put(self, key: str, span: Span) -> None:
        with self._lock:
            self._spans[key] = span

    def _pop(self, key: str) -> Span | None:
        with self._lock:
            return self._spans.pop(key, None)

    def _parent(self, *keys: str | None) -> otel_context.Context | None:
        """The context of the first open span among ``keys`` (None: the ambient context)."""
        with self._lock:
            for key in keys:
                span = self._spans.get(key) if key is not None else None
                if span is not None:
                    return trace.set_span_in_context(span)
        return None

    def _current_span(
        self,
        name: str,
        parent: otel_context.Context | None,
        kind: SpanKind,
        attributes: Mapping[str, Any],
    ) -> AbstractContextManager[Span]:
        """A span that is current while a call runs and records the call's exception."""
        return self._tracer.start_as_current_span(
            name,
            context=parent,
            kind=kind,
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        )

    # ---- runs -----------------------------------------------------------------------------

    def run_started(self, info: RunInfo) -> None:
        """Open ``invoke_agent`` under the ``rlm_query`` call that started it (or the caller)."""
        parent = self._parent(info.parent.key) if info.parent is not None else None
        b = info.budget
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "rlm",
            "gen_ai.agent.id": info.path,
            "gen_ai.request.model": info.model,
            "rlm.depth": info.depth,
            "rlm.run.path": info.path,
            "rlm.signature": info.signature,
            _SPAN_KIND_KEY: "AGENT",
        }
        limits = {
            "rlm.budget.max_llm_calls": b.max_llm_calls,
            "rlm.budget.max_tokens": b.max_tokens,
            "rlm.budget.max_cost_usd": b.max_cost_usd,
            "rlm.budget.max_time_s": b.max_time_s,
        }
        attributes.update({k: v for k, v in limits.items() if v is not None})
        span = self._tracer.start_span(
            "invoke_agent rlm", context=parent, kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._put(_run_key(info.path), span)

    def run_finished(self, info: RunInfo, error: BaseException | None) -> None:
        """Close the run's span, marking a failure."""
        with self._lock:  # cells and tools a failure or cancellation left open
            left = [k for k in self._spans if k.startswith(f"{info.path}#")]
            abandoned = [self._spans.pop(k) for k in left]
        for open_span in abandoned:
            open_span.set_status(Status(StatusCode.ERROR, "abandoned: the run ended first"))
            open_span.end()
        span = self._pop(_run_key(info.path))
        if span is None:
            return
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()

    # ---- model calls ----------------------------------------------------------------------

    async def model_call(
        self, site: Site, model: str, messages: Sequence[Message], proceed: ModelCall
    ) -> Completion:
        """A ``chat`` span: under the run (a step's reply), the cell, or the batch."""
        if site.name == "model":
            parent = self._parent(_run_key(site.run))
        else:
            parent = self._parent(site.parent_key, _cell_key(site), _run_key(site.run))
        provider, _, _ = model.partition("/")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "rlm.run.path": site.run,
            "rlm.step": site.step,
            "rlm.call.site": site.key,
            _SPAN_KIND_KEY: "LLM",
        }
        if provider and provider != model:
            attributes["gen_ai.provider.name"] = provider
        with self._current_span(f"chat {model}", parent, SpanKind.CLIENT, attributes) as span:
            completion = await proceed()
            usage = completion.usage
            span.set_attribute("gen_ai.response.model", completion.model or model)
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
            span.set_attribute("llm.token_count.prompt", usage.prompt_tokens)
            span.set_attribute("llm.token_count.completion", usage.completion_tokens)
            span.set_attribute("llm.token_count.total", usage.total_tokens)
            if usage.cost_usd is not None:
                span.set_attribute("rlm.cost_usd", usage.cost_usd)
            return completion

    # ---- host tools -----------------------------------------------------------------------

    async def tool_call(
        self, site: Site, args: Sequence[Any], kwargs: Mapping[str, Any], proceed: ToolCall
    ) -> Any:
        """An ``execute_tool`` span under the cell (a lone llm_query is just its ``chat``)."""
        if site.name == "llm_query":
            return await proceed()
        parent = self._parent(_cell_key(site), _run_key(site.run))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": site.name,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": site.key,
            "rlm.run.path": site.run,
            "rlm.step": site.step,
            _SPAN_KIND_KEY: "TOOL",
        }
        if site.name == "llm_query_batched" and args and isinstance(args[0], list):
            attributes["rlm.batch.size"] = len(args[0])
        with self._current_span(
            f"execute_tool {site.name}", parent, SpanKind.INTERNAL, attributes
        ) as span:
            self._put(site.key, span)  # the parent of a batch's chats and of a child run
            try:
                return await proceed()
            finally:
                self._pop(site.key)

    # ---- cells ----------------------------------------------------------------------------

    def cell_started(self, site: Site, code: str) -> None:
        """Open the cell's ``execute_tool python`` span under its run."""
        parent = self._parent(_run_key(site.run))
        digest = hashlib.sha256(code.encode("utf-8", "replace")).hexdigest()[:16]
        span = self._tracer.start_span(
            "execute_tool python",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "python",
                "gen_ai.tool.type": "extension",
                "gen_ai.tool.call.id": site.key,
                "rlm.run.path": site.run,
                "rlm.step": site.step,
                "rlm.code.sha256": digest,
                "rlm.code.lines": code.count("\n") + 1,
                _SPAN_KIND_KEY: "TOOL",
            },
        )
        self._put(site.key, span)

    def cell_finished(self, site: Site, step: Step) -> None:
        """Close the cell's span with what the cell did."""
        span = self._pop(site.key)
        if span is None:
            return
        span.set_attribute("rlm.cell.stdout_chars", step.output_chars)
        span.set_attribute("rlm.cell.truncated", step.output_chars > len(step.stdout))
        span.set_attribute("rlm.cell.session_restarted", step.session_restarted)
        if step.error:
            span.set_attribute("error.type", step.error.strip().splitlines()[-1].split(":")[0])
            span.set_status(Status(StatusCode.ERROR, step.error.strip().splitlines()[-1]))
        span.end()


def _run_key(path: str) -> str:
    return f"run:{path}"


def _cell_key(site: Site) -> str:
    return f"{site.run}#s{site.step}.cell"

"""OpenTelemetry spans of a run tree, checked with the SDK's in-memory exporter.

A cell that calls a user tool, ``llm_query``, ``llm_query_batched`` and ``rlm_query`` (whose child
run calls ``llm_query`` from its own cell) must give a span tree where every span has the right
parent, on every backend (mock, subprocess, deno, docker): calls arrive over the sandbox callback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rlm_conformance import REQUIRED_ENV
from rlm_core.errors import InterpreterUnavailableError
from rlm_core.lm import Completion, Message, Usage
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider() -> Iterator[None]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(tracer_provider)  # once per process: only this module sets it
    yield
    tracer_provider.shutdown()


def py(src: str) -> str:
    return f"Plan.\n```python\n{src}\n```"


class Sub:
    model = "openai/sub"

    async def complete(self, messages: Sequence[Message]) -> Completion:
        if messages[0]["role"] == "system":  # the child run
            return Completion(py("a = llm_query('inner')\nSUBMIT(answer=a + context)"))
        return Completion("ans:" + messages[-1]["content"], usage=Usage(7, 3, 0.002))


def lookup(key: str) -> int:
    """Host tool."""
    return len(key)


def run_traced(backend: str) -> list[ReadableSpan]:
    EXPORTER.clear()
    lm = ScriptedLM(
        [
            py(
                "n = lookup('abc')\none = llm_query('single')\n"
                "many = llm_query_batched(['b0', 'b1', 'b2'])\n"
                "kid = rlm_query('task', context='!')\nprint(n, one, many, kid)"
            ),
            py("SUBMIT(answer=kid)"),
        ],
        model="openai/root",
    )
    rlm = RLM("q -> answer", lm=lm, sub_lm=Sub(), interpreter=backend, tools=[lookup])
    with trace.get_tracer("test").start_as_current_span("caller"):
        try:
            result = rlm(q="?")
        except InterpreterUnavailableError as exc:
            required = {p.strip() for p in os.environ.get(REQUIRED_ENV, "").split(",")}
            if backend in required:
                pytest.fail(f"{backend} is required but unavailable: {exc}")
            pytest.skip(f"{backend} unavailable: {exc}")
    assert result.answer == "ans:inner!"
    return list(EXPORTER.get_finished_spans())


@pytest.mark.parametrize("backend", ["subprocess", "deno", "mock", "docker"])
def test_every_span_has_the_right_parent(backend: str) -> None:
    spans = run_traced(backend)
    by_id = {s.context.span_id: s for s in spans}

    def parent(span: ReadableSpan) -> ReadableSpan | None:
        return by_id.get(span.parent.span_id) if span.parent is not None else None

    def named(name: str, **attrs: object) -> list[ReadableSpan]:
        found = [s for s in spans if s.name == name]
        for key, value in attrs.items():
            found = [s for s in found if (s.attributes or {}).get(key) == value]
        return found

    assert len({s.context.trace_id for s in spans}) == 1  # one trace for the whole tree
    (caller,) = named("caller")
    (root,) = named("invoke_agent rlm", **{"rlm.depth": 0})
    (child,) = named("invoke_agent rlm", **{"rlm.depth": 1})
    assert parent(root) is caller
    assert root.attributes is not None
    assert root.attributes["rlm.budget.max_llm_calls"] == 50
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"

    root_cell = named("execute_tool python", **{"rlm.run.path": "0", "rlm.step": 1})[0]
    assert parent(root_cell) is root
    for reply in named("chat openai/root"):  # the model call writing each step
        assert parent(reply) is root
    (single,) = [s for s in named("chat openai/sub") if s.attributes["rlm.call.site"] == "0#s1.c2"]  # type: ignore[index]
    assert parent(single) is root_cell
    assert single.attributes is not None
    assert single.attributes["gen_ai.usage.input_tokens"] == 7
    assert single.attributes["rlm.cost_usd"] == 0.002
    (batch,) = named("execute_tool llm_query_batched")
    assert parent(batch) is root_cell
    assert batch.attributes is not None
    assert batch.attributes["rlm.batch.size"] == 3
    slots = [s for s in named("chat openai/sub") if parent(s) is batch]
    assert len(slots) == 3  # concurrent tasks, each under the batch
    (tool,) = named("execute_tool lookup")
    assert parent(tool) is root_cell
    (rlm_query,) = named("execute_tool rlm_query")
    assert parent(rlm_query) is root_cell
    assert parent(child) is rlm_query

    child_cell = named("execute_tool python", **{"rlm.run.path": "0/1.4"})[0]
    assert parent(child_cell) is child
    child_reply = [
        s
        for s in named("chat openai/sub")
        if (s.attributes or {}).get("rlm.call.site") == "0/1.4#s1.m"
    ]
    assert parent(child_reply[0]) is child
    (inner,) = [
        s
        for s in named("chat openai/sub")
        if (s.attributes or {}).get("rlm.call.site") == "0/1.4#s1.c1"
    ]
    assert parent(inner) is child_cell


def test_no_opentelemetry_means_nothing_imported_and_the_run_works() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        from rlm_core.rlm import RLM
        from rlm_core.testing import ScriptedLM
        r = RLM("q -> a", lm=ScriptedLM(["```python\\nSUBMIT(a=llm_query('x'))\\n```"]),
                sub_lm=ScriptedLM(["y"]), interpreter="mock")(q="?")
        assert r.a == "y", r.a
        loaded = [m for m in sys.modules if m.startswith("opentelemetry.")]
        print("loaded:", loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "loaded: []" in out.stdout


def test_importing_rlm_imports_no_opentelemetry() -> None:
    script = (
        "import sys, rlm_core, rlm_core.rlm, rlm_core.cli\n"
        "print([m for m in sys.modules if m.startswith('opentelemetry')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_cancelled_run_still_ends_its_spans() -> None:
    EXPORTER.clear()
    lm = ScriptedLM([py("import time\ntime.sleep(30)")], model="openai/root")
    rlm = RLM("q -> answer", lm=lm, interpreter="subprocess")

    async def cancelled() -> None:
        with anyio.move_on_after(2):
            await rlm.acall(q="?")

    anyio.run(cancelled)
    spans = {s.name: s for s in EXPORTER.get_finished_spans()}
    assert spans["execute_tool python"].status.status_code is StatusCode.ERROR
    assert "abandoned" in str(spans["execute_tool python"].status.description)
    assert "invoke_agent rlm" in spans

"""Record a run tree (user tool, batched sub-calls, a child run) and replay it on every backend.

The replay must give the same cell outputs without calling a model or a tool, whatever order the
concurrent sub-calls finish in; a backend whose output drifts is reported at the right step.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from rlm_conformance import REQUIRED_ENV
from rlm_core.errors import InterpreterUnavailableError, ReplayError, ReplayMismatchError
from rlm_core.interpreter import ExecutionResult
from rlm_core.lm import Completion, Message, Usage
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_mock import MockInterpreter

BACKENDS = ("mock", "subprocess", "deno", "docker")


def py(src: str) -> str:
    return f"Thinking.\n```python\n{src}\n```"


ROOT_STEPS = [
    py(
        'n = lookup(topic, limit=3)\nprint("tool:", n)\n'
        "answers = llm_query_batched([f'q{i}' for i in range(6)])\nprint(answers)"
    ),
    py('sub = rlm_query("shout", context="abc")\nprint("child:", sub)\nprint(llm_query("single"))'),
    py("import sys\nprint('warn', file=sys.stderr)\nSUBMIT(answer=f'{n}-{sub}')"),
]


class SubModel:
    """The sub-model: answers prompts after a prompt-dependent delay (so batches finish out of
    order) and writes the child run's code."""

    model = "sub-model"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, messages: Sequence[Message]) -> Completion:
        self.calls += 1
        last = messages[-1]["content"]
        await anyio.sleep((zlib.crc32(last.encode()) % 7) / 200)
        if messages[0]["role"] == "system":  # a child run's step
            return Completion(py("print(prompt, context)\nSUBMIT(answer=context.upper())"))
        return Completion(f"A({last})", usage=Usage(10, 5, 0.001))


def lookup(key: str, limit: int = 5) -> dict[str, Any]:
    """Host-side lookup."""
    return {"key": key, "hits": limit * 2}


def program(interpreter: object, **kwargs: Any) -> RLM:
    return RLM(
        "topic -> answer: str",
        lm=ScriptedLM(list(ROOT_STEPS), model="root-model"),
        sub_lm=SubModel(),
        interpreter=interpreter,  # type: ignore[arg-type]
        tools=[lookup],
        max_depth=1,
        **kwargs,
    )


def run_or_skip(rlm: RLM, backend: str) -> Any:
    try:
        return rlm(topic="stars")
    except InterpreterUnavailableError as exc:
        required = {p.strip() for p in os.environ.get(REQUIRED_ENV, "").split(",")}
        if backend in required:
            pytest.fail(f"{backend} is required here but unavailable: {exc}")
        pytest.skip(f"{backend} unavailable: {exc}")


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cassette") / "run.cassette"
    result = program("subprocess", record=path)(topic="stars")
    assert result.answer == "{'key': 'stars', 'hits': 6}-ABC"
    return path


def test_the_cassette_holds_every_answer_and_tool_result(cassette: Path) -> None:
    data = json.loads(cassette.read_text())
    assert (data["format"], data["version"], data["backend"]) == ("rlm-cassette", 1, "subprocess")
    models = data["models"]
    assert {f"0#s1.c2.{i}" for i in range(6)} <= set(models)  # every batch slot, by index
    assert models["0#s1.c2.3"]["text"] == "A(q3)"
    assert "0/2.1#s1.m" in models  # the child run's own step
    assert data["tools"]["0#s1.c1"]["value"] == {"key": "stars", "hits": 6}
    assert data["steps"]["0#s2"]["stdout"] == "child: ABC\nA(single)\n"
    assert data["steps"]["0/2.1#s1"]["stdout"] == "shout abc\n"
    assert data["outputs"] == {"answer": "{'key': 'stars', 'hits': 6}-ABC"}
    assert data["program"]["tools"][0]["name"] == "lookup"


@pytest.mark.parametrize("backend", BACKENDS)
def test_replay_gives_identical_outputs_on_every_backend(cassette: Path, backend: str) -> None:
    calls: list[str] = []

    def refusing_lookup(key: str, limit: int = 5) -> dict[str, Any]:
        """Host-side lookup."""
        calls.append(key)
        raise AssertionError("a replay must not call the tool")

    rlm = RLM(
        "topic -> answer: str",
        interpreter=backend,
        tools={"lookup": refusing_lookup},
        max_depth=1,
        replay=cassette,
    )
    result = run_or_skip(rlm, backend)
    assert result.answer == "{'key': 'stars', 'hits': 6}-ABC"
    assert calls == []
    assert [s.stdout for s in result.steps][1] == "child: ABC\nA(single)\n"
    assert result.usage.cost_usd == pytest.approx(0.007)  # recorded usage, 7 sub-model answers


class DriftingMock(MockInterpreter):
    """A backend whose output differs from the recording in cells containing ``marker``."""

    marker = "child:"

    async def execute(
        self, code: str, *, timeout: float | None = None, max_output_chars: int = 10_000
    ) -> ExecutionResult:
        result = await super().execute(code, timeout=timeout, max_output_chars=max_output_chars)
        if self.marker in code:
            return ExecutionResult(
                stdout=result.stdout.replace("A(", "B("),
                stderr=result.stderr,
                value=result.value,
                error=result.error,
                submitted=result.submitted,
                stdout_chars=result.stdout_chars,
            )
        return result


def test_a_drifting_backend_is_reported_at_its_step(cassette: Path) -> None:
    with pytest.raises(ReplayMismatchError) as caught:
        RLM("topic -> answer: str", interpreter=DriftingMock, tools=[lookup], replay=cassette)(
            topic="stars"
        )
    err = caught.value
    assert (err.backend, err.run, err.step) == ("DriftingMock", "0", 2)
    assert err.expected == "child: ABC\nA(single)\n"
    assert err.got == "child: ABC\nB(single)\n"
    assert "step 2 of the root run" in str(err)
    assert "in its stdout" in str(err)


def test_a_drifting_child_run_is_reported_with_its_path(cassette: Path) -> None:
    class Loud(MockInterpreter):
        async def execute(
            self, code: str, *, timeout: float | None = None, max_output_chars: int = 10_000
        ) -> ExecutionResult:
            if "context.upper()" in code:
                code = code.replace("print(prompt, context)", "print(prompt, context, 1)")
            return await super().execute(code, timeout=timeout, max_output_chars=max_output_chars)

    with pytest.raises(ReplayMismatchError) as caught:
        RLM("topic -> answer: str", interpreter=Loud, tools=[lookup], replay=cassette)(
            topic="stars"
        )
    assert (caught.value.run, caught.value.step) == ("0/2.1", 1)
    assert "step 1 of child run 0/2.1" in str(caught.value)


def test_an_unrecorded_request_names_its_step(cassette: Path, tmp_path: Path) -> None:
    data = json.loads(cassette.read_text())
    del data["models"]["0#s3.m"]
    damaged = tmp_path / "damaged.cassette"
    damaged.write_text(json.dumps(data))
    with pytest.raises(ReplayError, match=r"step 3 of the root run made a model request"):
        RLM("topic -> answer: str", interpreter="mock", tools=[lookup], replay=damaged)(
            topic="stars"
        )


def test_a_different_program_fails_at_the_first_different_call(cassette: Path) -> None:
    with pytest.raises(
        ReplayError, match=r"step 1 of the root run called lookup\(\) with different arguments"
    ):
        RLM("topic -> answer: str", interpreter="mock", tools=[lookup], replay=cassette)(
            topic="planets"  # the same code, but the tool is called with other arguments
        )


def test_tool_failures_replay_as_the_guest_saw_them(tmp_path: Path) -> None:
    def refuses(key: str) -> int:
        """Raises."""
        raise LookupError(f"no entry {key!r}")

    def unsendable() -> object:
        """Returns a value with no JSON form."""
        return object()

    code = (
        "for f in (lambda: refuses('k'), unsendable):\n"
        "    try:\n        f()\n    except Exception as e:\n"
        "        print(type(e).__name__, str(e)[:200])\n"
        "SUBMIT(answer='done')"
    )
    tools: list[Callable[..., Any]] = [refuses, unsendable]
    path = tmp_path / "fail.cassette"
    recorded = RLM(
        "topic -> answer", lm=ScriptedLM([py(code)]), interpreter="subprocess", tools=tools,
        record=path,
    )(topic="x")  # fmt: skip
    stdout = recorded.steps[0].stdout
    assert "LookupError no entry 'k'" in stdout
    assert "cannot reach the sandbox" in stdout
    replayed = RLM("topic -> answer", interpreter="mock", tools=tools, replay=path)(topic="x")
    assert replayed.steps[0].stdout == stdout

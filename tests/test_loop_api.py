"""The public surface: validation before any sandbox starts, interpreter specs, sync and async
calls, tools, logs and verbose output."""

import asyncio
import io
import json
import threading
from pathlib import Path

import anyio
import pytest

from rlm_core.errors import ConfigError, LMError
from rlm_core.interpreter import ExecutionResult
from rlm_core.lm import LiteLLM, Message, resolve_lm
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_core.trajectory import Event
from rlm_mock import MockInterpreter, ScriptedInterpreter


def py(src: str) -> str:
    return f"Step.\n```python\n{src}\n```"


def never_called() -> MockInterpreter:
    raise AssertionError("no interpreter may be created")


@pytest.mark.parametrize("name", ["llm_query", "llm_query_batched", "rlm_query", "SUBMIT", "print"])
def test_inputs_may_not_shadow_builtins(name: str) -> None:
    with pytest.raises(ConfigError, match=f"input {name!r}: .*reserved"):
        RLM(f"{name} -> answer", lm=ScriptedLM([]), interpreter=never_called)


def test_inputs_may_not_shadow_tools() -> None:
    def lookup(key: str) -> str:
        return key

    with pytest.raises(ConfigError, match="same name as a tool"):
        RLM("lookup -> answer", tools=[lookup], lm=ScriptedLM([]), interpreter=never_called)


@pytest.mark.parametrize("name", ["trajectory", "final_reasoning", "usage", "extracted", "steps"])
def test_outputs_may_not_collide_with_result_attributes(name: str) -> None:
    with pytest.raises(ConfigError, match="collides"):
        RLM(f"q -> {name}", lm=ScriptedLM([]), interpreter=never_called)


def test_tool_validation() -> None:
    def ok(x: int) -> int:
        return x

    def llm_query(prompt: str) -> str:
        return prompt

    with pytest.raises(ConfigError, match="reserved"):
        RLM("q -> a", tools=[llm_query], interpreter=never_called)
    with pytest.raises(ConfigError, match="duplicate tool name 'ok'"):
        RLM("q -> a", tools=[ok, ok], interpreter=never_called)
    with pytest.raises(ConfigError, match="must be callable"):
        RLM("q -> a", tools=[ok, 3], interpreter=never_called)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="not a valid Python identifier"):
        RLM("q -> a", tools={"not valid": ok}, interpreter=never_called)
    with pytest.raises(ConfigError, match="not a valid Python identifier"):
        RLM("q -> a", tools={"class": ok}, interpreter=never_called)
    with pytest.raises(ConfigError, match="no usable name"):
        RLM("q -> a", tools=[lambda: 1], interpreter=never_called)


def test_missing_and_unexpected_inputs_fail_before_any_sandbox() -> None:
    rlm = RLM("context, query -> answer", lm=ScriptedLM([]), interpreter=never_called)
    with pytest.raises(ConfigError, match=r"missing required inputs: \['query'\]"):
        rlm(context="x")
    with pytest.raises(ConfigError, match=r"unexpected inputs not declared.*\['extra'\]"):
        rlm(context="x", query="y", extra=1)
    with pytest.raises(ConfigError, match="missing"):
        asyncio.run(rlm.acall())
    with pytest.raises(ConfigError, match="cannot enter the sandbox"):
        rlm(context=object(), query="y")


def test_no_model_fails_before_any_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLM_MODEL", raising=False)
    rlm = RLM("q -> a", interpreter=never_called)
    with pytest.raises(ConfigError, match=r"no model is configured.*litellm model string"):
        rlm(q="?")


def test_an_input_named_interpreter_works() -> None:
    lm = ScriptedLM([py("SUBMIT(interpreter)")])
    assert RLM("interpreter -> a", lm=lm, interpreter=MockInterpreter)(interpreter="x").a == "x"


@pytest.mark.parametrize("kind", ["name", "class", "factory", "instance"])
def test_every_interpreter_spec_form(kind: str) -> None:
    spec: object = {
        "name": "mock",
        "class": MockInterpreter,
        "factory": lambda: MockInterpreter(),
        "instance": MockInterpreter(),
    }[kind]
    lm = ScriptedLM([py("SUBMIT(q * 2)")])
    assert RLM("q -> a", lm=lm, interpreter=spec)(q="ab").a == "abab"  # type: ignore[arg-type]


def test_interpreter_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_INTERPRETER", "mock")
    lm = ScriptedLM([py("import threading\nSUBMIT(threading.current_thread().name)")])
    assert RLM("q -> a", lm=lm)(q="?").a == "rlm-mock-cell"


def test_given_instance_is_left_open_and_owned_ones_are_closed() -> None:
    mine = ScriptedInterpreter([ExecutionResult(submitted={"a": 1})])
    RLM("q -> a: int", lm=ScriptedLM([py("SUBMIT(1)")]), interpreter=mine)(q="?")
    assert mine.started is True
    assert mine.closed is False
    made: list[ScriptedInterpreter] = []

    def factory() -> ScriptedInterpreter:
        made.append(ScriptedInterpreter([ExecutionResult(submitted={"a": 1})]))
        return made[-1]

    RLM("q -> a: int", lm=ScriptedLM([py("SUBMIT(1)")]), interpreter=factory)(q="?")
    assert made[0].closed is True


def test_session_is_closed_when_the_model_raises() -> None:
    made: list[MockInterpreter] = []

    def factory() -> MockInterpreter:
        made.append(MockInterpreter())
        return made[-1]

    lm = ScriptedLM([RuntimeError("provider down")])
    with pytest.raises(LMError, match="provider down"):
        RLM("q -> a", lm=lm, interpreter=factory)(q="?")
    assert made[0]._closed is True


def test_sync_and_async_host_tools_under_sync_and_async_calls() -> None:
    def add(a: int, b: int = 10) -> int:
        """Add two numbers."""
        return a + b

    async def fetch(key: str) -> dict[str, str]:
        await anyio.sleep(0.01)
        return {"key": key}

    code = "SUBMIT(add(1) + add(2, b=3), fetch('k')['key'])"
    rlm = RLM(
        "q -> n: int, k: str",
        lm=ScriptedLM([py(code), py(code)]),
        interpreter=MockInterpreter,
        tools=[add, fetch],
    )
    result = rlm(q="?")
    assert (result.n, result.k) == (16, "k")
    result = asyncio.run(rlm.acall(q="?"))
    assert (result.n, result.k) == (16, "k")


def test_tool_errors_are_catchable_in_the_sandbox() -> None:
    def fails(x: int) -> int:
        raise KeyError(f"no {x}")

    code = "try:\n    fails(3)\nexcept KeyError as e:\n    SUBMIT(str(e))"
    rlm = RLM("q -> a", lm=ScriptedLM([py(code)]), interpreter=MockInterpreter, tools=[fails])
    assert "no 3" in rlm(q="?").a


def test_sync_call_inside_a_running_event_loop() -> None:
    async def main() -> str:
        rlm = RLM("q -> a", lm=ScriptedLM([py("SUBMIT('inside')")]), interpreter=MockInterpreter)
        return str(rlm(q="?").a)

    assert asyncio.run(main()) == "inside"


def test_acall_does_not_block_the_event_loop() -> None:
    ticks = 0

    async def main() -> None:
        nonlocal ticks
        rlm = RLM(
            "q -> a",
            lm=ScriptedLM([py("import time\ntime.sleep(0.5)\nSUBMIT('x')")]),
            interpreter=MockInterpreter,
        )
        async with anyio.create_task_group() as tg:

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await anyio.sleep(0.02)

            tg.start_soon(ticker)
            await rlm.acall(q="?")
            tg.cancel_scope.cancel()

    asyncio.run(main())
    assert ticks >= 10


def test_many_concurrent_calls_are_independent() -> None:
    def script(messages: list[Message]) -> str:
        if len(messages) == 2:
            return py("secret = q\nprint(secret)")
        return py("SUBMIT(secret)")

    rlm = RLM("q -> a", lm=ScriptedLM(script), interpreter=MockInterpreter)

    async def main() -> list[str]:
        out = [""] * 12

        async def one(i: int) -> None:
            out[i] = (await rlm.acall(q=f"run{i}")).a

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(one, i)
        return out

    assert asyncio.run(main()) == [f"run{i}" for i in range(12)]
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(rlm(q=f"t{i}").a)) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [f"t{i}" for i in range(4)]


def test_jsonl_log_streams_every_event(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    lm = ScriptedLM([py("print(llm_query('x'))"), "sub", py("SUBMIT(1)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, log=log)(q="?")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["run_start", "sub_call", "step", "step", "run_end"]
    assert events[-1]["outputs"] == {"n": 1}
    assert events[2]["step"]["sub_calls"][0]["response"] == "sub"


def test_log_to_a_stream_and_on_event() -> None:
    stream = io.StringIO()
    seen: list[Event] = []
    lm = ScriptedLM([py("SUBMIT(1)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, log=stream, on_event=seen.append)(q="?")
    assert len(stream.getvalue().splitlines()) == len(seen) == 3


def test_verbose_prints_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    lm = ScriptedLM([py("print('hello there')"), py("SUBMIT(1)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, verbose=True)(q="?")
    err = capsys.readouterr().err
    assert "step 1" in err
    assert "hello there" in err
    assert "done" in err


def test_resolve_lm_accepts_strings_lms_and_dspy_lms() -> None:
    lm = resolve_lm("openai/x", api_base="http://127.0.0.1:1/v1")
    assert isinstance(lm, LiteLLM)
    assert lm.api_base == "http://127.0.0.1:1/v1"
    scripted = ScriptedLM([])
    assert resolve_lm(scripted) is scripted

    class FakeDspyLM:  # the shape of dspy.LM: a model string and litellm kwargs
        def __init__(self) -> None:
            self.model = "openai/gpt-4o-mini"
            self.kwargs = {"temperature": 0.0, "max_tokens": 100, "cache": True}
            self.num_retries = 1

    FakeDspyLM.__module__ = "dspy.clients.lm"
    converted = resolve_lm(FakeDspyLM())
    assert isinstance(converted, LiteLLM)
    assert converted.model == "openai/gpt-4o-mini"
    assert converted.params == {"temperature": 0.0, "max_tokens": 100}
    assert converted.num_retries == 1
    with pytest.raises(ConfigError, match="cannot use a int as a model"):
        resolve_lm(3)


def test_unavailable_backend_raises_its_own_error_before_any_model_call() -> None:
    from rlm_core.errors import InterpreterUnavailableError
    from rlm_subprocess import SubprocessInterpreter

    lm = ScriptedLM([])
    rlm = RLM("q -> a", lm=lm, interpreter=lambda: SubprocessInterpreter(python="/nope/python3"))
    with pytest.raises(InterpreterUnavailableError, match="was not found"):
        rlm(q="?")
    assert lm.calls == []

"""DSPyInterpreter keeps DSPy 3.4's CodeInterpreter contract, on our mock and subprocess backends.

What DSPy relies on: a mutable ``tools`` dict, lazy idempotent ``start()``, ``execute`` results
as Python values or ``FinalOutput``, recoverable ``CodeExecutionError``/``SyntaxError`` against
terminal ``CodeInterpreterError``, DSPy's callbacks, its reserved ``__dspy_*`` names, and the
inputs it re-passes on every step, sent only when they change.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import dataclasses
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio
import dspy
import pytest
from dspy.primitives.code_interpreter import (
    CodeExecutionError,
    CodeInterpreter,
    CodeInterpreterError,
    FinalOutput,
)
from dspy.utils.callback import BaseCallback
from dspy.utils.dummies import DummyLM

from rlm_core.dspy import DSPyInterpreter, execution_instructions, interpreter_factory
from rlm_core.errors import ConfigError
from rlm_core.interpreter import VariableValue, truncation_marker
from rlm_mock import MockInterpreter


class CountingMock(MockInterpreter):
    """Records every set_variables call, to see what crossed into the sandbox."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, VariableValue]] = []

    async def set_variables(self, values: Mapping[str, VariableValue]) -> None:
        self.sent.append(dict(values))
        await super().set_variables(values)


@pytest.fixture
def repl() -> Any:
    interp = DSPyInterpreter("mock")
    yield interp
    interp.shutdown()


def test_is_a_dspy_code_interpreter_and_the_factory_is_not() -> None:
    factory = interpreter_factory("mock")
    first, second = factory(), factory()
    assert isinstance(first, CodeInterpreter)
    assert not isinstance(factory, CodeInterpreter)  # DSPy refuses ambiguous ownership
    assert first is not second
    assert factory.execution_instructions == first.execution_instructions


def test_factory_refuses_an_instance() -> None:
    with pytest.raises(ConfigError, match="new sandbox per DSPy call"):
        interpreter_factory(MockInterpreter())


def test_execution_instructions_follow_capabilities() -> None:
    mock = execution_instructions(MockInterpreter().capabilities)
    assert "no isolation" in mock
    assert "Network access is available" in mock
    with_numpy = dataclasses.replace(MockInterpreter().capabilities, packages=("numpy",))
    assert "so are numpy." in execution_instructions(with_numpy)
    deno = DSPyInterpreter("deno").execution_instructions
    assert "Pyodide" in deno
    assert "Network access is blocked" in deno


def test_results_are_python_values(repl: Any) -> None:
    assert repl.execute("1 + 1") == 2
    assert repl.execute("[1, 'a', None]") == [1, "a", None]
    assert repl.execute("x = 1") is None
    assert repl.execute("print('hi')") == "hi\n"
    assert repl.execute("print('hi')\nx + 1") == "hi\n2"  # printed output is kept
    assert repl.execute("object()").startswith("<object object at")  # no literal: the repr


def test_the_whole_output_reaches_dspy(repl: Any) -> None:
    assert len(repl.execute("print('x' * 200_000)")) == 200_001


def test_state_persists_and_start_is_lazy_and_idempotent() -> None:
    interp = DSPyInterpreter("mock")
    try:
        interp.execute("x = 41")
        interp.start()
        interp.start()
        assert interp.execute("x + 1") == 42
    finally:
        interp.shutdown()
        interp.shutdown()


def test_submit_is_final_output_typed_by_output_fields(repl: Any) -> None:
    repl.output_fields = [{"name": "n", "type": "int"}, {"name": "items"}]
    assert repl.execute("SUBMIT(3, items=[1, 2])") == FinalOutput({"n": 3, "items": [1, 2]})


def test_default_submit_takes_one_output(repl: Any) -> None:
    assert repl.execute("SUBMIT('the answer')") == FinalOutput({"output": "the answer"})


def test_code_errors_are_recoverable(repl: Any) -> None:
    with pytest.raises(CodeExecutionError, match="ZeroDivisionError") as caught:
        repl.execute("print('before')\n1 / 0")
    assert "before" in str(caught.value)  # what was printed is not lost
    with pytest.raises(SyntaxError, match="Invalid Python syntax"):
        repl.execute("def (")
    assert repl.execute("2 * 3") == 6


def test_tools_dict_is_mutable_and_read_before_each_step(repl: Any) -> None:
    repl.tools["double"] = lambda n: n * 2
    assert repl.execute("double(4)") == 8
    repl.tools["triple"] = lambda n: n * 3  # added after start, as RLM does
    assert repl.execute("triple(4)") == 12


def test_keyword_only_wrapped_tools_get_keywords(repl: Any) -> None:
    # DSPy exposes every user tool as `invoke(**kwargs)` carrying the function's signature.
    def lookup(key: str, limit: int = 5) -> str:
        return f"{key}:{limit}"

    def invoke(**kwargs: Any) -> str:
        return lookup(**kwargs)

    invoke.__signature__ = __import__("inspect").signature(lookup)  # type: ignore[attr-defined]
    repl.tools["lookup"] = invoke
    assert repl.execute("[lookup('a'), lookup(key='b', limit=1), lookup('c', 2)]") == [
        "a:5",
        "b:1",
        "c:2",
    ]


def test_tool_errors_are_catchable_in_the_guest(repl: Any) -> None:
    def boom() -> None:
        raise ValueError("bad input")

    repl.tools["boom"] = boom
    assert repl.execute("try:\n    boom()\nexcept Exception as e:\n    r = str(e)\nr") == (
        "bad input"
    )
    with pytest.raises(CodeExecutionError, match="bad input"):
        repl.execute("boom()")


def test_async_tools_are_awaited(repl: Any) -> None:
    async def fetch(key: str) -> str:
        return key.upper()

    repl.tools["fetch"] = fetch
    assert repl.execute("fetch(key='k')") == "K"


def test_tools_see_the_callers_dspy_context(repl: Any) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="unset")
    lm = DummyLM([{"answer": "x"}])
    repl.tools["probe"] = lambda: [dspy.settings.lm is lm, var.get()]
    token = var.set("mine")
    try:
        with dspy.context(lm=lm):
            seen = repl.execute("probe()")
    finally:
        var.reset(token)
    assert seen == [True, "mine"]


def test_dspy_reserved_names_are_carried(repl: Any) -> None:
    repl.tools["__dspy_construct__"] = lambda kind, attr_name: f"{kind}/{attr_name}"
    out = repl.execute(
        "__dspy_construct__(kind='Predict', attr_name='p'), __dspy_host_token",
        variables={"__dspy_host_token": "t0k"},
    )
    assert out == ("Predict/p", "t0k")


def test_other_dunder_names_stay_refused() -> None:
    interp = DSPyInterpreter("mock")
    try:
        interp.tools["__sneaky__"] = lambda: 1
        with pytest.raises(CodeInterpreterError, match="reserved for the sandbox runtime"):
            interp.execute("1")
    finally:
        interp.shutdown()


def test_our_own_name_rules_are_unchanged() -> None:
    async def register() -> None:
        async with MockInterpreter() as mock:
            await mock.register({"__dspy_call__": lambda: 1})

    with pytest.raises(ConfigError, match="starts with '__'"):
        anyio.run(register)


def test_unchanged_inputs_are_sent_once() -> None:
    backend = CountingMock()
    interp = DSPyInterpreter(backend)
    context = "x" * 1_000_000
    items = [1, 2, 3]
    try:
        for _ in range(3):
            assert interp.execute("len(context)", {"context": context, "items": items}) == 1_000_000
        assert [sorted(s) for s in backend.sent] == [["context", "items"]]
        # An equal value in a new object is not re-sent either.
        interp.execute("1", {"context": "".join(["x" * 1_000_000]), "items": [1, 2, 3]})
        assert len(backend.sent) == 1
        # A changed value is, alone; so is a list changed in place.
        interp.execute("1", {"context": "y", "items": items})
        items.append(4)
        assert interp.execute("items", {"context": "y", "items": items}) == [1, 2, 3, 4]
        assert backend.sent[1:] == [{"context": "y"}, {"items": [1, 2, 3, 4]}]
    finally:
        interp.shutdown()


def test_bad_inputs_are_refused_before_sending(repl: Any) -> None:
    with pytest.raises(CodeInterpreterError, match="not a valid Python identifier"):
        repl.execute("1", {"for": 1})
    with pytest.raises(CodeInterpreterError, match="Unsupported value"):
        repl.execute("1", {"x": object()})
    assert repl.execute("1 + 1") == 2


def test_shutdown_ends_the_session() -> None:
    interp = DSPyInterpreter("mock")
    interp.execute("1")
    interp.shutdown()
    with pytest.raises(CodeInterpreterError, match="shut down"):
        interp.execute("1")
    with pytest.raises(CodeInterpreterError, match="shut down"):
        interp.start()


def test_a_lost_session_is_terminal_and_never_restarted() -> None:
    interp = DSPyInterpreter("subprocess")
    try:
        interp.execute("1")
        # The guest kills itself: its own pid is only meaningful inside its PID namespace.
        with pytest.raises(CodeInterpreterError) as caught:
            interp.execute("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        assert not isinstance(caught.value, CodeExecutionError)
        with pytest.raises(CodeInterpreterError):
            interp.execute("1")
        with pytest.raises(CodeInterpreterError, match="session ended"):
            interp.start()
    finally:
        interp.shutdown()


class Recorder(BaseCallback):  # type: ignore[misc]  # dspy ships no type information
    def __init__(self) -> None:
        self.events: list[str] = []
        self.parents: dict[str, str | None] = {}

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("on_interpreter_"):
            event = name.removeprefix("on_interpreter_")
            return lambda call_id, *args, **kwargs: self.events.append(event)
        return super().__getattribute__(name)


def test_dspy_callbacks_fire_in_order() -> None:
    recorder = Recorder()
    interp = DSPyInterpreter("mock", callbacks=[recorder])
    interp.tools["double"] = lambda n: n * 2
    interp.execute("double(n=2)")
    interp.shutdown()
    assert recorder.events == [
        "execute_start",
        "startup_start",
        "startup_end",
        "tool_call_start",
        "tool_call_end",
        "execute_end",
        "shutdown_start",
        "shutdown_end",
    ]


class StartRecordingMock(MockInterpreter):
    """Remembers every session started, to see which backend DSPy ran on."""

    started: ClassVar[list[MockInterpreter]] = []

    async def start(self) -> None:
        await super().start()
        StartRecordingMock.started.append(self)


def test_dspy_configure_routes_dspy_rlm_to_our_backend() -> None:
    StartRecordingMock.started.clear()
    lm = DummyLM([{"reasoning": "r", "code": "import dspy as d\nSUBMIT(answer=type(d).__name__)"}])
    with dspy.context(lm=lm, interpreter_factory=interpreter_factory(StartRecordingMock)):
        prediction = dspy.RLM("question -> answer")(question="which?")
    assert prediction.answer == "module"  # the sandbox's dspy facade, installed in our backend
    assert len(StartRecordingMock.started) == 1
    # Our runtime description reached DSPy's prompt, and the in-process sandbox left the host's
    # own dspy module in place (the facade's host token was carried under its alias).
    assert "runs in the host process itself" in str(lm.history[0]["messages"])
    assert sys.modules["dspy"] is dspy


@pytest.mark.filterwarnings("ignore:Passing OpenAI-style message dictionaries:DeprecationWarning")
def test_a_nested_rlm_sub_agent_gets_its_own_session_of_our_backend() -> None:
    StartRecordingMock.started.clear()
    nest = (
        "import dspy\nclass A(dspy.Module):\n    pass\na = A()\n"
        "a.inner = dspy.RLM('q -> a')\nprint(a.inner(q='x').a)"
    )
    lm = DummyLM(
        [
            {"reasoning": "nest", "code": nest},
            {"reasoning": "inner", "code": "SUBMIT(a='from inner ' + q)"},  # the inner RLM
            {"reasoning": "done", "code": "SUBMIT(answer='ok')"},
        ]
    )
    factory = interpreter_factory(StartRecordingMock)
    rlm = dspy.RLM("question -> answer", interpreter_factory=factory)
    with dspy.context(lm=lm):
        prediction = rlm(question="q")
    assert [step["output"] for step in prediction.trajectory] == [
        "from inner x\n",
        "FINAL: {'answer': 'ok'}",
    ]
    assert len(StartRecordingMock.started) == 2


@pytest.mark.parametrize(
    "code",
    [
        "raise SystemExit(3)",
        "raise KeyboardInterrupt",
        "class CodeInterpreterError(Exception): pass\nraise CodeInterpreterError('spoof')",
        "SUBMIT({1, 2})",
        "raise ValueError(b'not json')",
    ],
)
def test_hostile_code_errors_stay_recoverable(code: str) -> None:
    interp = DSPyInterpreter("subprocess")
    try:
        interp.execute("kept = 1")
        with pytest.raises(CodeExecutionError):
            interp.execute(code)
        assert interp.execute("kept") == 1
    finally:
        interp.shutdown()


def test_a_runaway_print_is_capped_not_fatal() -> None:
    interp = DSPyInterpreter("subprocess", max_output_chars=100_000)
    try:
        out = interp.execute("print('y' * 50_000_000)")
        assert out.startswith("y" * 50_000)
        assert truncation_marker(50_000_001 - 100_000) in out
        assert interp.execute("2") == 2
    finally:
        interp.shutdown()


def test_a_timed_out_step_is_recoverable_where_the_backend_survives_it() -> None:
    interp = DSPyInterpreter("subprocess", timeout=1.0)
    try:
        interp.execute("kept = 7")
        with pytest.raises(CodeExecutionError, match="Timeout"):
            interp.execute("while True:\n    pass")
        assert interp.execute("kept") == 7
    finally:
        interp.shutdown()


def test_tools_without_keywords_still_work(repl: Any) -> None:
    def scale(value: float, /, *rest: float, factor: float = 2.0) -> list[float]:
        return [value * factor, *rest]

    repl.tools["scale"] = scale
    repl.tools["biggest"] = max  # a builtin with no readable signature
    assert repl.execute("scale(1.5, 7.0, factor=3.0)") == [4.5, 7.0]
    assert repl.execute("biggest(3, 9, 4)") == 9


def test_concurrent_calls_each_get_their_own_session() -> None:
    rlm = dspy.RLM("context -> answer", interpreter_factory=interpreter_factory("subprocess"))

    def one_call(size: int) -> str:
        lm = DummyLM([{"reasoning": "r", "code": "SUBMIT(answer=f'{len(context)}')"}])
        with dspy.context(lm=lm):
            return str(rlm(context="x" * size).answer)

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(one_call, [10, 20, 30]))
    assert answers == ["10", "20", "30"]

"""The loop's core behaviour, on the in-process mock backend with a scripted model."""

import json
from collections.abc import Mapping
from typing import ClassVar

import pytest

from rlm_core.errors import OutputValidationError, SessionLostError
from rlm_core.interpreter import Capabilities, ExecutionResult, VariableValue
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_mock import MockInterpreter, ScriptedInterpreter


def py(src: str, reasoning: str = "Next step.") -> str:
    return f"{reasoning}\n```python\n{src}\n```"


class CountingMock(MockInterpreter):
    """A mock backend that counts how often inputs are bound."""

    bindings: ClassVar[list[list[str]]] = []

    async def set_variables(self, values: Mapping[str, VariableValue]) -> None:
        CountingMock.bindings.append(sorted(values))
        await super().set_variables(values)


def test_inputs_are_bound_once_per_session_not_per_step() -> None:
    CountingMock.bindings = []
    lm = ScriptedLM([py("print(len(context))"), py("x = 1"), py("print(x)"), py("SUBMIT('ok')")])
    rlm = RLM("context -> answer", lm=lm, interpreter=CountingMock)
    result = rlm(context="abc" * 1000)
    assert result.answer == "ok"
    assert CountingMock.bindings == [["context"]]
    assert "3,000 characters" in lm.calls[0][1]["content"]


def test_typed_submit_positional_and_keyword() -> None:
    sig = "logs -> error_count: int, critical_errors: list[str]"
    lm = ScriptedLM([py("SUBMIT(2, ['disk', 'fan'])")])
    result = RLM(sig, lm=lm, interpreter=MockInterpreter)(logs="x")
    assert result.error_count == 2
    assert result.critical_errors == ["disk", "fan"]
    lm = ScriptedLM([py("SUBMIT(critical_errors=[], error_count='0')")])
    assert RLM(sig, lm=lm, interpreter=MockInterpreter)(logs="x").error_count == 0


def test_wrong_submit_is_fed_back_and_fixed() -> None:
    lm = ScriptedLM([py("SUBMIT('three')"), py("SUBMIT(3)")])
    result = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?")
    assert result.n == 3
    feedback = lm.calls[1][-1]["content"]
    assert "SUBMIT was rejected" in feedback
    assert "n: expected int, got str 'three'" in feedback
    assert result.trajectory[0]["error"] is not None
    assert result.trajectory[1]["final"] is True


def test_submit_with_wrong_arity_is_an_error_step() -> None:
    lm = ScriptedLM([py("SUBMIT(1, 2, 3)"), py("SUBMIT(1, 2)")])
    result = RLM("q -> a: int, b: int", lm=lm, interpreter=MockInterpreter)(q="?")
    assert (result.a, result.b) == (1, 2)
    assert "TypeError" in lm.calls[1][-1]["content"]


def test_non_json_submit_does_not_kill_the_run() -> None:
    lm = ScriptedLM([py("SUBMIT({1, 2})"), py("SUBMIT(sorted({1, 2}))")])
    result = RLM("q -> items: list[int]", lm=lm, interpreter=MockInterpreter)(q="?")
    assert result.items == [1, 2]
    assert "not JSON" in lm.calls[1][-1]["content"]


def test_reply_without_code_gets_a_nudge() -> None:
    lm = ScriptedLM(["I think it is 4.", py("SUBMIT(4)")])
    result = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?")
    assert result.n == 4
    assert "no code to run" in lm.calls[1][-1]["content"]
    assert result.trajectory[0]["kind"] == "no_code"


def test_non_python_fence_is_an_error_step() -> None:
    lm = ScriptedLM(["```bash\nwc -l file\n```", py("SUBMIT(1)")])
    result = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?")
    assert result.trajectory[0]["kind"] == "bad_fence"
    assert "expected Python code but got a ```bash block" in lm.calls[1][-1]["content"]


def test_stdout_stderr_value_and_errors_are_all_shown() -> None:
    code = "import sys\nprint('out')\nprint('warn', file=sys.stderr)\n41 + 1"
    lm = ScriptedLM([py(code), py("1/0"), py("def f(:\n  pass"), py("SUBMIT(1)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?")
    first = lm.calls[1][-1]["content"]
    assert "stdout (4 chars):\nout" in first
    assert "stderr (5 chars):\nwarn" in first
    assert "value of the last expression:\n42" in first
    assert "ZeroDivisionError: division by zero" in lm.calls[2][-1]["content"]
    syntax = lm.calls[3][-1]["content"]
    assert "SyntaxError" in syntax
    assert "line 1" in syntax


def test_long_output_is_truncated_with_its_true_length() -> None:
    lm = ScriptedLM([py("print('a' * 500 + 'b' * 500)"), py("SUBMIT(1)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, max_output_chars=100)(q="?")
    shown = lm.calls[1][-1]["content"]
    assert "stdout (1,001 chars)" in shown
    assert "[901 characters omitted]" in shown
    assert "a" * 50 in shown
    assert "a" * 51 not in shown


def test_empty_output_says_so() -> None:
    lm = ScriptedLM([py("x = 0"), py("SUBMIT(x)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?")
    assert "no output" in lm.calls[1][-1]["content"]


def test_falsy_final_expression_is_shown() -> None:
    lm = ScriptedLM([py("0"), py("SUBMIT(0)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?")
    assert "value of the last expression:\n0" in lm.calls[1][-1]["content"]


def test_state_persists_across_steps_and_errors() -> None:
    lm = ScriptedLM([py("x = 41"), py("raise ValueError('boom')"), py("SUBMIT(x + 1)")])
    assert RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?").n == 42


def test_timed_out_cell_keeps_the_session() -> None:
    lm = ScriptedLM([py("x = 5"), py("while True:\n    pass"), py("SUBMIT(x)")])
    rlm = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, cell_timeout_s=0.3)
    assert rlm(q="?").n == 5
    assert "timeout" in lm.calls[2][-1]["content"]


class LosingMock(MockInterpreter):
    """Dies when a cell mentions CRASH, like a sandbox killed by the OOM killer."""

    created = 0

    def __init__(self) -> None:
        super().__init__()
        LosingMock.created += 1

    async def execute(
        self, code: str, *, timeout: float | None = None, max_output_chars: int = 10_000
    ) -> ExecutionResult:
        if "CRASH" in code:
            await self.aclose()
            raise SessionLostError("the sandbox process died (exit code -9)")
        return await super().execute(code, timeout=timeout, max_output_chars=max_output_chars)


def test_lost_session_is_replaced_and_the_model_told() -> None:
    LosingMock.created = 0
    lm = ScriptedLM(
        [
            py("x = 1"),
            py("CRASH = 1"),
            py("print('x' in globals(), len(context))"),
            py("SUBMIT(len(context))"),
        ]
    )
    result = RLM("context -> n: int", lm=lm, interpreter=LosingMock)(context="hello")
    assert result.n == 5
    assert LosingMock.created == 2
    notice = lm.calls[2][-1]["content"]
    assert "session was lost" in notice
    assert "Every variable, import and function you defined is gone" in notice
    assert "False 5" in lm.calls[3][-1]["content"]
    assert result.trajectory[1]["session_restarted"] is True


def test_extract_fallback_after_max_iterations() -> None:
    lm = ScriptedLM([py("print(1)"), py("print(2)"), 'Here:\n```json\n{"n": "7"}\n```'])
    result = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, max_iterations=2)(q="?")
    assert result.n == 7
    assert result.extracted is True
    assert result.trajectory[-1]["kind"] == "extract"
    assert "used every step" in lm.calls[2][-1]["content"]
    assert "Output of step 2" in lm.calls[2][-1]["content"]


def test_extract_fallback_retries_once_then_fails_clearly() -> None:
    lm = ScriptedLM([py("print(1)"), "no idea", '{"n": "seven"}'])
    rlm = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, max_iterations=1)
    with pytest.raises(OutputValidationError, match="extract") as info:
        rlm(q="?")
    assert info.value.trajectory is not None
    assert info.value.trajectory[0]["code"] == "print(1)"


def test_successful_run_is_not_marked_extracted() -> None:
    lm = ScriptedLM([py("SUBMIT(1)", reasoning="Obvious.")])
    result = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?")
    assert result.extracted is False
    assert result.final_reasoning == "Obvious."


def test_trajectory_is_json_with_the_step_details() -> None:
    lm = ScriptedLM([py("print('hi')", reasoning="Say hi."), py("SUBMIT(1)")])
    result = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?")
    steps = json.loads(json.dumps(result.trajectory))
    assert steps[0]["reasoning"] == "Say hi."
    assert steps[0]["code"] == "print('hi')"
    assert steps[0]["stdout"] == "hi\n"
    assert steps[0]["usage"]["prompt_tokens"] == 100
    assert steps[0]["duration_s"] > 0
    assert json.loads(json.dumps(result.to_dict()))["outputs"] == {"n": 1}
    assert result.usage.calls == 2
    assert result.usage.models["scripted"].prompt_tokens == 200


def test_prompt_shows_capabilities_tools_budget_and_metadata() -> None:
    def lookup(key: str, limit: int = 5) -> list[str]:
        """Find entries for a key in the catalogue.

        More detail nobody needs.
        """
        return [key] * limit

    caps = Capabilities(
        isolation="wasm",
        network=False,
        writable_filesystem=False,
        survives_timeout=False,
        max_variable_bytes=None,
        python_version="3.12",
        packages=("numpy",),
    )
    interp = ScriptedInterpreter(
        ["", ExecutionResult(submitted={"answer": "x"})], capabilities=caps
    )
    lm = ScriptedLM([py("print(1)"), py("SUBMIT('x')")])
    rlm = RLM(
        "context, query -> answer",
        lm=lm,
        interpreter=interp,
        tools=[lookup],
        max_llm_calls=7,
        cell_timeout_s=30,
    )
    rlm(context="HEAD" + "m" * 5000 + "TAIL", query="what?")
    system, first = lm.calls[0][0]["content"], lm.calls[0][1]["content"]
    assert "no network access" in system
    assert "numpy" in system
    assert "kills the session" in system
    assert "Python 3.12" in system
    assert "`lookup(key: str, limit: int = 5) -> list[str]`: Find entries" in system
    assert "More detail" not in system
    assert "7 in total" in system
    assert "llm_query_batched" in system
    assert "SUBMIT(answer)" in system
    assert "Length: 5,008 characters" in first
    assert "HEAD" in first
    assert "TAIL" in first
    assert "mmmm" * 200 not in first
    assert str(interp.variables["context"]).startswith("HEAD")
    assert [o.name for o in interp.outputs or []] == ["answer"]


def test_input_descriptions_reach_the_prompt() -> None:
    from rlm_core.signature import InputField, OutputField, Signature

    class QA(Signature):
        """Answer from the report."""

        report: str = InputField("the annual report, plain text")
        answer: str = OutputField()

    lm = ScriptedLM([py("SUBMIT('x')")])
    RLM(QA, lm=lm, interpreter=MockInterpreter)(report="r")
    first = lm.calls[0][1]["content"]
    assert "Task: Answer from the report." in first
    assert "Description: the annual report, plain text" in first


def test_pydantic_model_inputs_arrive_as_dicts() -> None:
    import pydantic

    class Config(pydantic.BaseModel):
        name: str
        size: int

    lm = ScriptedLM([py("SUBMIT(config['size'])")])
    result = RLM("config -> n: int", lm=lm, interpreter=MockInterpreter)(
        config=Config(name="a", size=3)
    )
    assert result.n == 3

"""llm_query, llm_query_batched, rlm_query and the budget ledger shared by the run tree."""

import threading
from collections.abc import Sequence

import anyio
import pytest

from rlm_core.budget import Budget, Ledger
from rlm_core.errors import BudgetExceededError, LMError
from rlm_core.lm import Completion, Message, Usage
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_mock import MockInterpreter


def py(src: str) -> str:
    return f"Step.\n```python\n{src}\n```"


def echo(messages: list[Message]) -> str:
    return "echo:" + messages[-1]["content"]


def test_llm_query_uses_the_sub_model_and_is_recorded() -> None:
    lm = ScriptedLM([py("a = llm_query('hello')\nprint(a)"), py("SUBMIT(a)")], model="root")
    sub = ScriptedLM(echo, model="cheap", usage=Usage(10, 2, 0.001))
    result = RLM("q -> answer", lm=lm, sub_lm=sub, interpreter=MockInterpreter)(q="?")
    assert result.answer == "echo:hello"
    call = result.trajectory[0]["sub_calls"][0]
    assert call["kind"] == "llm_query"
    assert call["model"] == "cheap"
    assert call["prompt"] == "hello"
    assert call["response"] == "echo:hello"
    assert result.usage.models["cheap"].calls == 1
    assert result.usage.models["cheap"].cost_usd == pytest.approx(0.001)
    assert result.usage.models["root"].calls == 2
    assert result.usage.sub_calls == 1


def test_sub_model_defaults_to_the_root_model() -> None:
    lm = ScriptedLM([py("print(llm_query('x'))"), "sub answer", py("SUBMIT(1)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter)(q="?")
    assert lm.calls[1] == [{"role": "user", "content": "x"}]


def test_batched_results_in_order_with_failed_slot_reported() -> None:
    def answer(messages: list[Message]) -> str:
        prompt = messages[-1]["content"]
        if prompt == "bad":
            raise LMError("provider said no")
        return prompt.upper()

    code = "r = llm_query_batched(['a', 'bad', 'c'])\nprint(r)"
    lm = ScriptedLM([py(code), py("SUBMIT(r)")])
    sub = ScriptedLM(answer)
    result = RLM("q -> r: list[str]", lm=lm, sub_lm=sub, interpreter=MockInterpreter)(q="?")
    assert result.r == ["A", "[ERROR] LMError: provider said no", "C"]
    system = lm.calls[0][0]["content"]
    assert "a failed prompt gives a string starting with '[ERROR]'" in system


def test_prompt_shows_the_built_in_tools_as_the_guest_calls_them() -> None:
    """The built-ins' signatures in the prompt are read from the functions, defaults included."""
    lm = ScriptedLM([py("SUBMIT(1)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, max_depth=1)(q="?")
    system = lm.calls[0][0]["content"]
    assert "`llm_query(prompt: str) -> str`" in system
    assert "`llm_query_batched(prompts: list[str]) -> list[str]`" in system
    assert "`rlm_query(prompt: str, context: Any = None) -> str`" in system


class ConcurrencyProbe:
    """An LM that records how many calls were in flight at once."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.in_flight = 0
        self.peak = 0

    @property
    def model(self) -> str:
        return "probe"

    async def complete(self, messages: Sequence[Message]) -> Completion:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await anyio.sleep(self.latency)
        self.in_flight -= 1
        return Completion(text=messages[-1]["content"][::-1])


def test_batched_is_truly_concurrent_up_to_the_limit() -> None:
    probe = ConcurrencyProbe(0.05)
    code = "r = llm_query_batched([str(i) + 'x' for i in range(20)])\nSUBMIT(r)"
    lm = ScriptedLM([py(code)])
    rlm = RLM(
        "q -> r: list[str]", lm=lm, sub_lm=probe, interpreter=MockInterpreter, batch_concurrency=6
    )
    result = rlm(q="?")
    assert result.r == [f"{i}x"[::-1] for i in range(20)]
    assert probe.peak == 6


def test_call_budget_is_reported_to_the_model_who_can_still_submit() -> None:
    code = (
        "out = [llm_query('a'), llm_query('b')]\n"
        "try:\n    llm_query('c')\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    lm = ScriptedLM([py(code), py("SUBMIT(len(out))")])
    sub = ScriptedLM(echo)
    rlm = RLM("q -> n: int", lm=lm, sub_lm=sub, interpreter=MockInterpreter, max_llm_calls=2)
    assert rlm(q="?").n == 2
    seen = lm.calls[1][-1]["content"]
    assert "BudgetExceededError LLM call limit exceeded: 2 used + 1 requested > 2" in seen
    assert "LLM calls left: 0" in seen
    assert len(sub.calls) == 2


def test_batched_reserves_all_or_nothing() -> None:
    code = "try:\n    llm_query_batched(['a'] * 5)\nexcept Exception as e:\n    print(e)"
    lm = ScriptedLM([py(code), py("SUBMIT(1)")])
    sub = ScriptedLM(echo)
    RLM("q -> n: int", lm=lm, sub_lm=sub, interpreter=MockInterpreter, max_llm_calls=3)(q="?")
    assert "0 used + 5 requested > 3" in lm.calls[1][-1]["content"]
    assert sub.calls == []


def test_token_budget_stops_the_run_with_a_clear_error() -> None:
    lm = ScriptedLM([py("print(1)"), py("print(2)"), py("SUBMIT(1)")], usage=Usage(600, 0, None))
    rlm = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, max_tokens=1000)
    with pytest.raises(BudgetExceededError, match="token budget spent: 1,200 of 1,000") as info:
        rlm(q="?")
    assert info.value.trajectory is not None
    assert len(info.value.trajectory) == 2


def test_cost_budget() -> None:
    lm = ScriptedLM([py("print(1)"), py("SUBMIT(1)")], usage=Usage(1, 1, 0.5))
    rlm = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, max_cost_usd=0.4)
    with pytest.raises(BudgetExceededError, match="cost budget"):
        rlm(q="?")


def test_time_budget() -> None:
    lm = ScriptedLM([py("import time; time.sleep(0.3)"), py("SUBMIT(1)")])
    rlm = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, max_time_s=0.2)
    with pytest.raises(BudgetExceededError, match="time budget"):
        rlm(q="?")


def test_call_counter_is_thread_safe() -> None:
    ledger = Ledger(Budget(max_llm_calls=10))
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def take() -> None:
        barrier.wait()
        try:
            ledger.reserve_sub_calls(1)
        except BudgetExceededError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with pytest.raises(BudgetExceededError, match="10 used \\+ 1 requested > 10"):
        ledger.reserve_sub_calls(1)
    assert ledger.summary().sub_calls == 10


def test_rlm_query_runs_a_child_on_a_fresh_session() -> None:
    made: list[MockInterpreter] = []

    def factory() -> MockInterpreter:
        made.append(MockInterpreter())
        return made[-1]

    def script(messages: list[Message]) -> str:
        first = messages[1]["content"]
        if "Variable `prompt`" in first:  # the child
            if len(messages) == 2:
                return py("secret = 'child'\nprint(prompt, len(context))")
            return py("SUBMIT(prompt.upper() + str(len(context)))")
        if len(messages) == 2:
            return py("secret = 'parent'\na = rlm_query('sum it', context=[1, 2, 3])\nprint(a)")
        return py("SUBMIT(a + ':' + secret)")

    lm = ScriptedLM(script)
    rlm = RLM("q -> answer", lm=lm, interpreter=factory, max_depth=1)
    result = rlm(q="?")
    assert result.answer == "SUM IT3:parent"
    assert len(made) == 2
    call = result.trajectory[0]["sub_calls"][0]
    assert call["kind"] == "rlm_query"
    assert call["response"] == "SUM IT3"
    assert [s["index"] for s in call["steps"]] == [1, 2]
    assert result.usage.sub_calls == 2  # the child's two model calls


def test_children_do_not_recurse_past_max_depth() -> None:
    lm = ScriptedLM([py("print('rlm_query' in globals())"), py("SUBMIT(1)")])
    RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, max_depth=0)(q="?")
    assert "False" in lm.calls[1][-1]["content"]
    assert "rlm_query" not in lm.calls[0][0]["content"]


def test_child_failure_surfaces_in_the_parent_as_an_exception() -> None:
    def script(messages: list[Message]) -> str:
        if "Variable `prompt`" in messages[1]["content"]:
            return "no code, ever"
        if len(messages) == 2:
            return py(
                "try:\n    rlm_query('x')\nexcept Exception as e:\n    print(type(e).__name__)"
            )
        return py("SUBMIT(1)")

    lm = ScriptedLM(script)
    rlm = RLM("q -> n: int", lm=lm, interpreter=MockInterpreter, max_llm_calls=3)
    assert rlm(q="?").n == 1
    assert "BudgetExceededError" in lm.calls[-1][-1]["content"]


def test_recursion_two_levels_deep_shares_one_ledger() -> None:
    def script(messages: list[Message]) -> str:
        first = messages[1]["content"]
        if "Preview:\n```\nlevel 2\n```" in first:  # the grandchild
            return py("SUBMIT('leaf')")
        if "Preview:\n```\nlevel 1\n```" in first:  # the child
            if len(messages) == 2:
                return py("SUBMIT(rlm_query('level 2'))")
            return py("SUBMIT('no deeper')")
        return py("SUBMIT(rlm_query('level 1'))")

    result = RLM("q -> a", lm=ScriptedLM(script), interpreter=MockInterpreter, max_depth=2)(q="?")
    assert result.a == "leaf"
    child = result.trajectory[0]["sub_calls"][0]
    assert child["steps"][0]["sub_calls"][0]["steps"][0]["submitted"] == {"answer": "leaf"}
    assert result.usage.sub_calls == 2  # one step of the child, one of the grandchild

    shallow = RLM("q -> a", lm=ScriptedLM(script), interpreter=MockInterpreter, max_depth=1)
    result = shallow(q="?")
    assert result.a == "no deeper"
    assert "NameError" in result.trajectory[0]["sub_calls"][0]["steps"][0]["error"]

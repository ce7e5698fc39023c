"""Host-side callables never crash a run: what a tool or model raises becomes data or an LMError.

Tools run through the real mock and subprocess backends (the two ways a tool call reaches the
host: a thread in-process, and a frame over a child process's pipes).
"""

from __future__ import annotations

import anyio
import pytest

from rlm_core.errors import LMError, RunError
from rlm_core.interpreter import Interpreter
from rlm_core.lm import Message
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_mock import MockInterpreter
from rlm_subprocess import SubprocessInterpreter

BACKENDS = [MockInterpreter, SubprocessInterpreter]


def py(src: str) -> str:
    return f"Next step.\n```python\n{src}\n```"


class CustomStop(BaseException):
    """A BaseException subclass that is not an Exception."""


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


def exits() -> int:
    raise SystemExit(3)


def custom() -> int:
    raise CustomStop("custom stop")


def unprintable() -> int:
    raise Unprintable()


async def async_exits() -> int:
    raise SystemExit("async exit")


def surrogate() -> str:
    return "bad \ud800 text"


CATCH = "try:\n    {call}\nexcept BaseException as e:\n    SUBMIT(type(e).__name__ + ': ' + str(e))"


@pytest.mark.parametrize("backend", BACKENDS, ids=["mock", "subprocess"])
@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        (exits, "SystemExit: 3"),
        (custom, "CustomStop: custom stop"),
        (unprintable, "Unprintable: <Unprintable object whose str() failed>"),
        (async_exits, "SystemExit: async exit"),
        (surrogate, "TypeError: tool surrogate() returned a value that cannot reach"),
    ],
    ids=["SystemExit", "BaseException", "broken-str", "async-SystemExit", "lone-surrogate"],
)
def test_tool_failures_reach_the_model_as_errors(
    backend: type[Interpreter], tool: object, expected: str
) -> None:
    name = getattr(tool, "__name__")  # noqa: B009 - the tools are plain functions
    lm = ScriptedLM([py(CATCH.format(call=f"{name}()"))])
    result = RLM("q -> a", lm=lm, interpreter=backend, tools={name: tool})(q="?")  # type: ignore[dict-item]
    assert str(result.a).startswith(expected)


def test_uncaught_tool_failure_is_a_step_error_and_the_run_goes_on() -> None:
    lm = ScriptedLM([py("exits()"), py("SUBMIT('after')")])
    result = RLM("q -> a", lm=lm, interpreter=MockInterpreter, tools=[exits])(q="?")
    assert result.a == "after"
    assert "SystemExit" in lm.calls[1][-1]["content"]


def test_a_tools_keyboard_interrupt_still_stops_the_run() -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    lm = ScriptedLM([py(CATCH.format(call="interrupted()")), py("SUBMIT('never')")])
    rlm = RLM("q -> a", lm=lm, interpreter=SubprocessInterpreter, tools=[interrupted])
    with pytest.raises(KeyboardInterrupt):
        rlm(q="?")
    assert lm.remaining == 1


def test_cancelling_the_call_while_a_tool_runs_cancels_the_run() -> None:
    started = anyio.Event()

    async def forever() -> int:
        started.set()
        await anyio.sleep_forever()
        return 0

    lm = ScriptedLM([py(CATCH.format(call="forever()"))])
    rlm = RLM("q -> a", lm=lm, interpreter=SubprocessInterpreter, tools=[forever])
    outcome: list[str] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await rlm.acall(q="?")
                outcome.append("finished")

            tg.start_soon(call)
            await started.wait()
            tg.cancel_scope.cancel()
        outcome.append("cancelled")

    anyio.run(main)
    assert outcome == ["cancelled"]


@pytest.mark.parametrize(
    "failure", [RuntimeError("provider down"), SystemExit(1), CustomStop("stop"), Unprintable()]
)
def test_a_failing_model_is_an_lm_error_with_the_trajectory(failure: BaseException) -> None:
    lm = ScriptedLM([py("x = 41\nprint(x + 1)"), failure])
    with pytest.raises(LMError) as caught:
        RLM("q -> a", lm=lm, interpreter=MockInterpreter)(q="?")
    assert isinstance(caught.value, RunError)
    assert caught.value.__cause__ is failure
    assert type(failure).__name__ in str(caught.value)
    trajectory = caught.value.trajectory
    assert trajectory is not None
    assert len(trajectory) == 1
    assert trajectory[0]["stdout"] == "42\n"


def test_a_failing_sub_model_is_a_tool_error_the_model_sees() -> None:
    def sub(messages: object) -> str:
        raise SystemExit("sub model gone")

    lm = ScriptedLM([py(CATCH.format(call="llm_query('hi')"))])
    result = RLM("q -> a", lm=lm, sub_lm=ScriptedLM(sub), interpreter=MockInterpreter)(q="?")
    assert result.a == "SystemExit: sub model gone"


def test_a_failing_sub_model_in_a_batch_fails_only_its_slot() -> None:
    def sub(messages: list[Message]) -> str:
        if "bad" in messages[-1]["content"]:
            raise CustomStop("slot failed")
        return "fine"

    lm = ScriptedLM([py("SUBMIT(llm_query_batched(['good', 'bad']))")])
    rlm = RLM("q -> a: list[str]", lm=lm, sub_lm=ScriptedLM(sub), interpreter=MockInterpreter)
    assert rlm(q="?").a == ["fine", "[ERROR] CustomStop: slot failed"]

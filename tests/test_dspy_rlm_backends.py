"""DSPy's own ``dspy.RLM`` runs end to end on every backend through ``rlm_core.dspy``.

Each run is driven by DSPy's ``DummyLM`` and goes through everything a DSPy user relies on: a
host tool called with keyword arguments, ``llm_query``, a sub-agent built with the sandbox's
``dspy`` facade (its LM call runs on the host, under ``dspy.context``), a step that fails and
one that recovers, and a typed ``SUBMIT`` of an int and a list; through ``forward`` and
``aforward`` (where the tool is async). E2B and Modal run on their real SDKs against the local
stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import dspy
import pytest
from dspy.utils.dummies import DummyLM

from rlm_conformance._availability import report_unavailable
from rlm_core.dspy import DSPyInterpreter, interpreter_factory
from rlm_core.errors import InterpreterUnavailableError
from rlm_core.interpreter import Interpreter
from rlm_e2b.testing import E2BStandIn
from rlm_modal.testing import ModalStandIn

# DSPy 3.4.1's own sub-agent path (SandboxLM -> DummyLM) uses an API it deprecates itself.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Passing OpenAI-style message dictionaries:DeprecationWarning"
)

BACKENDS = ["mock", "subprocess", "deno", "docker", "e2b", "modal"]

COLOURS = {"apple": "red", "banana": "yellow"}


def lookup(key: str, *, shout: bool = False) -> str:
    """The colour of a fruit."""
    colour = COLOURS[key]
    return colour.upper() if shout else colour


async def alookup(key: str, *, shout: bool = False) -> str:
    """The colour of a fruit, from an async tool."""
    await anyio.lowlevel.checkpoint()
    return lookup(key, shout=shout)


@pytest.fixture(scope="module")
def e2b_standin() -> Iterator[E2BStandIn]:
    with E2BStandIn() as server:
        yield server


@pytest.fixture(scope="module")
def modal_standin() -> Iterator[ModalStandIn]:
    with ModalStandIn() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Callable[[], Interpreter] | str:
    """What ``interpreter_factory`` gets: a name, or a stand-in's interpreter builder."""
    name: str = request.param
    spec: Callable[[], Interpreter] | str = name
    if name == "e2b":
        spec = request.getfixturevalue("e2b_standin").interpreter
    elif name == "modal":
        spec = request.getfixturevalue("modal_standin").interpreter
    probe = DSPyInterpreter(spec)
    try:
        probe.start()
    except dspy.primitives.code_interpreter.CodeInterpreterError as exc:
        cause = exc.__cause__
        if isinstance(cause, InterpreterUnavailableError):
            report_unavailable(request.config, name, cause)
        raise
    finally:
        probe.shutdown()
    return spec


def script() -> list[dict[str, str]]:
    """The root model's steps, interleaved with the answers its sub-calls consume."""
    return [
        {
            "reasoning": "Look the fruit up by keyword.",
            "code": "colour = lookup(key=fruit, shout=True)\nprint(colour, len(context))",
        },
        {"reasoning": "Ask the sub-model.", "code": "print(llm_query(f'describe {colour}'))"},
        {"response": "a warm colour"},  # llm_query's answer
        {"reasoning": "A bug.", "code": "total = undefined_name + 1"},
        {
            "reasoning": "Recover, and ask a sub-agent.",
            "code": (
                "import dspy\n"
                "class Agent(dspy.Module):\n"
                "    pass\n"
                "agent = Agent()\n"
                "agent.guess = dspy.Predict('question -> answer')\n"
                "total = len(context)\n"
                "print(agent.guess(question='how many?').answer)"
            ),
        },
        {"answer": "eleven"},  # the sub-agent's Predict
        {"reasoning": "Done.", "code": "SUBMIT(count=total, sizes=[len(w) for w in words])"},
    ]


def make_rlm(backend: Callable[[], Interpreter] | str, tool: Callable[..., Any]) -> Any:
    return dspy.RLM(
        "context: str, fruit: str, words: list[str] -> count: int, sizes: list[int]",
        tools=[tool],
        max_iters=6,
        interpreter_factory=interpreter_factory(backend),
    )


INPUTS = {"context": "hello world", "fruit": "apple", "words": ["a", "bb", "ccc"]}


def check(prediction: Any) -> None:
    assert prediction.count == 11
    assert prediction.sizes == [1, 2, 3]
    outputs = [step["output"] for step in prediction.trajectory]
    assert outputs[0] == "RED 11\n"
    assert "a warm colour" in outputs[1]
    assert outputs[2].startswith("[Error]")
    assert "NameError" in outputs[2]
    assert "undefined_name" in outputs[2]
    assert outputs[3] == "eleven\n"
    assert outputs[4] == "FINAL: {'count': 11, 'sizes': [1, 2, 3]}"
    assert prediction.final_reasoning == "Done."


def test_forward(backend: Callable[[], Interpreter] | str) -> None:
    with dspy.context(lm=DummyLM(script())):
        prediction = make_rlm(backend, lookup)(**INPUTS)
    check(prediction)


def test_aforward(backend: Callable[[], Interpreter] | str) -> None:
    async def main() -> Any:
        with dspy.context(lm=DummyLM(script())):
            return await make_rlm(backend, dspy.Tool(alookup, name="lookup")).acall(**INPUTS)

    check(anyio.run(main))

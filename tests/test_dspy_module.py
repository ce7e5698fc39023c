"""An RLM inside a DSPy program: DSPy's model, its trace, and instructions an optimizer rewrites."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy
import pytest

from rlm_core.dspy import RLMModule
from rlm_core.errors import ConfigError
from rlm_core.testing import OpenAIStubServer
from rlm_mock import MockInterpreter


def py(code: str) -> str:
    return f"Let me run this.\n```python\n{code}\n```"


COUNT = [py("n = len(context.split())\nprint(n)"), py("SUBMIT(count=n)")]


@pytest.fixture
def stub() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer(COUNT * 4) as server:
        lm = dspy.LM("openai/stub", api_base=server.api_base, api_key="sk-x", num_retries=0)
        with dspy.context(lm=lm):
            yield server


def first_prompt(server: OpenAIStubServer, request: int = 0) -> str:
    messages: list[dict[str, Any]] = server.requests[request]["messages"]
    return "\n".join(str(m["content"]) for m in messages)


class Report(dspy.Module):  # type: ignore[misc]
    """A program around the RLM, as the DSPy docs compose one."""

    def __init__(self) -> None:
        super().__init__()
        self.count_words = RLMModule("context -> count: int", interpreter=MockInterpreter)

    def forward(self, context: str) -> dspy.Prediction:
        counted = self.count_words(context=context)
        return dspy.Prediction(summary=f"{counted.count} words")


def test_runs_inside_a_program_on_the_configured_dspy_model(stub: OpenAIStubServer) -> None:
    assert Report()(context="one two three").summary == "3 words"
    assert stub.requests[0]["model"] == "stub"


def test_returns_typed_outputs_trajectory_and_reasoning(stub: OpenAIStubServer) -> None:
    prediction = RLMModule("context -> count: int", interpreter=MockInterpreter)(context="a b")
    assert prediction.count == 2
    assert len(prediction.trajectory) == 2
    assert prediction.trajectory[0]["code"].startswith("n = len(")
    assert prediction.final_reasoning == "Let me run this."


def test_optimizers_see_one_predictor_and_its_trace(stub: OpenAIStubServer) -> None:
    program = Report()
    (name, predictor), *others = program.named_predictors()
    assert (name, others) == ("count_words.predict", [])
    with dspy.context(trace=[]):
        program(context="x y z w")
        trace = list(dspy.settings.trace)
    assert len(trace) == 1
    traced_predictor, inputs, outputs = trace[0]
    assert traced_predictor is predictor
    assert inputs == {"context": "x y z w"}
    assert outputs.count == 4


def test_rewritten_instructions_reach_the_root_model(stub: OpenAIStubServer) -> None:
    program = Report()
    predictor = program.count_words.predict
    assert (
        "Given the fields `context`, produce the fields `count`."
        in predictor.signature.instructions
    )
    # What GEPA or MIPROv2 do to a candidate program: replace the predictor's instructions.
    tuned = program.deepcopy()
    text = "Count whitespace-separated tokens; hyphenated words count once."
    tuned.count_words.predict.signature = predictor.signature.with_instructions(text)
    tuned(context="well-known fact")
    assert text in first_prompt(stub, 0)
    program(context="well-known fact")  # the original keeps its own instructions
    assert text not in first_prompt(stub, 2)


def test_a_dspy_signature_class_keeps_types_descriptions_and_instructions(
    stub: OpenAIStubServer,
) -> None:
    class CountWords(dspy.Signature):  # type: ignore[misc]
        """Count the words of the document."""

        context: str = dspy.InputField(desc="the document")
        count: int = dspy.OutputField(desc="how many words")

    module = RLMModule(CountWords, interpreter=MockInterpreter)
    assert module.instructions == "Count the words of the document."
    assert module(context="one two").count == 2
    prompt = first_prompt(stub)
    assert "Count the words of the document." in prompt
    assert "how many words" in prompt


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_calls_run_without_blocking(stub: OpenAIStubServer) -> None:
    module = RLMModule("context -> count: int", interpreter=MockInterpreter)
    prediction = await module.acall(context="a b c d e")
    assert prediction.count == 5


def test_without_any_model_the_call_says_how_to_configure_one() -> None:
    module = RLMModule("context -> count: int", interpreter=MockInterpreter)
    with dspy.context(lm=None), pytest.raises(ConfigError, match=r"dspy\.configure"):
        module(context="a")


def test_bad_options_and_misplaced_instructions_fail_at_construction() -> None:
    with pytest.raises(TypeError):
        RLMModule("context -> count: int", max_iteration=3)
    with pytest.raises(ConfigError, match="predictor"):
        RLMModule("context -> count: int", instructions="do it")


def test_a_saved_program_keeps_tuned_instructions(tmp_path: Path) -> None:
    program = Report()
    predictor = program.count_words.predict
    predictor.signature = predictor.signature.with_instructions("Count tokens, not lines.")
    program.save(str(tmp_path / "report.json"))
    loaded = Report()
    loaded.load(str(tmp_path / "report.json"))
    assert loaded.count_words.instructions == "Count tokens, not lines."


def test_without_dspy_installed_the_import_says_what_to_install() -> None:
    code = "import sys; sys.modules['dspy'] = None; import rlm_core.dspy"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert 'pip install "rlmbox[dspy]"' in done.stderr

"""The caller's-context clause can fail: a backend running tools in a fresh context is caught.

Like ``test_conformance_meta.py``, the suite runs in a separate pytest process over a generated
module, so the outcome is what a third party would see; results are read from JUnit XML.
"""

from __future__ import annotations

from pathlib import Path

from rlm_conformance.meta import run_suite_module

BACKENDS = """
import asyncio
import contextvars

import pytest

from rlm_conformance import InterpreterConformance
from rlm_core.interpreter import DEFAULT_MAX_OUTPUT_CHARS
from rlm_mock import MockInterpreter


class LosesCallerContext(MockInterpreter):
    # Runs every cell, and so every tool call, in an empty context: what the mock used to do.
    async def execute(self, code, *, timeout=None, max_output_chars=DEFAULT_MAX_OUTPUT_CHARS):
        cell = super().execute(code, timeout=timeout, max_output_chars=max_output_chars)
        return await asyncio.create_task(cell, context=contextvars.Context())


class TestLosesCallerContext(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self):
        return LosesCallerContext


class TestHonestMock(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self):
        return MockInterpreter
"""

CLAUSE = "test_caller_contextvar_is_visible_in_host_tool"


def test_backend_that_loses_the_callers_context_is_caught(tmp_path: Path) -> None:
    run = run_suite_module(
        BACKENDS, tmp_path, select=CLAUSE, module_name="test_context_backends.py", timeout_s=300
    )
    outcomes = {cls: (outcome, message) for (cls, _), (outcome, message) in run.outcomes.items()}
    output = run.output
    assert outcomes.get("TestHonestMock", ("missing", ""))[0] == "passed", output[-3000:]
    outcome, message = outcomes.get("TestLosesCallerContext", ("missing", output[-3000:]))
    assert outcome == "failed", f"the clause did not catch the defect: {outcome} {message}"
    assert "run tools in a copy of the caller's context" in message

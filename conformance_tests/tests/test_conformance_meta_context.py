"""The caller's-context clause can fail: a backend running tools in a fresh context is caught.

Like ``test_conformance_meta.py``, the suite runs in a separate pytest process over a generated
module, so the outcome is what a third party would see; results are read from JUnit XML.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

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
    module = tmp_path / "test_context_backends.py"
    module.write_text(textwrap.dedent(BACKENDS))
    report = tmp_path / "report.xml"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RLM_CONFORMANCE_STRICT", "RLM_REQUIRED_BACKENDS", "PYTEST_ADDOPTS"}
    }
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"),
            *("--strict-markers", f"--junitxml={report}", "-k", CLAUSE, str(module)),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        failure = next((c for c in case if c.tag in {"failure", "error", "skipped"}), None)
        outcome = "passed" if failure is None else failure.tag
        outcomes[cls] = (outcome, "" if failure is None else failure.get("message", ""))
    output = proc.stdout + proc.stderr
    assert outcomes.get("TestHonestMock", ("missing", ""))[0] == "passed", output[-3000:]
    outcome, message = outcomes.get("TestLosesCallerContext", ("missing", output[-3000:]))
    assert outcome == "failure", f"the clause did not catch the defect: {outcome} {message}"
    assert "run tools in a copy of the caller's context" in message

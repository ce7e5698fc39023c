"""Prove a conformance clause can fail: run the suite over deliberately broken backends.

A clause that no backend can fail checks nothing. :func:`run_suite_module` writes a test module
(your broken backends, each a suite subclass) to a folder and runs it in a fresh pytest
process, so the outcomes are what a third party would see; it reads them from JUnit XML. The
suite's own meta-tests use it, and a backend author can use it the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rlm_conformance.suite import InterpreterConformance

__all__ = ["SuiteRun", "run_suite_module", "suite_for"]

_SETTINGS_OF_THE_OUTER_RUN = ("RLM_CONFORMANCE_STRICT", "RLM_REQUIRED_BACKENDS", "PYTEST_ADDOPTS")


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """What one run of a generated module produced."""

    returncode: int
    outcomes: dict[tuple[str, str], tuple[str, str]]
    """``(class, test) -> (outcome, message)``; outcome is passed, failed or skipped."""
    output: str
    """pytest's stdout and stderr, for assertion messages."""

    def outcome(self, cls: str, test: str) -> str:
        """The outcome of one test, or ``"missing"`` if it did not run."""
        return self.outcomes.get((cls, test), ("missing", ""))[0]


def run_suite_module(
    source: str,
    folder: Path,
    *,
    select: str,
    args: Sequence[str] = (),
    env: Mapping[str, str | None] | None = None,
    module_name: str = "test_generated_backends.py",
    timeout_s: float = 900,
) -> SuiteRun:
    """Run the test module ``source`` in ``folder`` with ``-k select``; return its outcomes.

    The outer run's strictness settings are left out, so an unavailable backend in the module
    skips unless ``env`` says otherwise; ``env`` sets variables, and ``None`` removes one.
    """
    module = folder / module_name
    module.write_text(textwrap.dedent(source))
    report = folder / "report.xml"
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS_OF_THE_OUTER_RUN}
    for key, value in (env or {}).items():
        if value is None:
            clean.pop(key, None)
        else:
            clean[key] = value
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--strict-markers"]
    command += [f"--junitxml={report}", "-k", select, *args, str(module)]
    done = subprocess.run(
        command, cwd=folder, env=clean, capture_output=True, text=True, timeout=timeout_s
    )
    output = done.stdout + done.stderr
    if not report.exists():
        raise AssertionError(f"pytest wrote no report:\n{output[-3000:]}")
    outcomes: dict[tuple[str, str], tuple[str, str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        outcome, message = "passed", ""
        for child in case:
            if child.tag in {"failure", "error", "skipped"}:
                outcome = "skipped" if child.tag == "skipped" else "failed"
                message = child.get("message", "") + (child.text or "")
        outcomes[(cls, case.get("name", ""))] = (outcome, message)
    return SuiteRun(done.returncode, outcomes, output)


def suite_for(factory: Any) -> type[InterpreterConformance]:
    """The whole suite for ``factory`` (a class or zero-argument callable), as a test class.

    In a generated module: ``TestMyBrokenBackend = suite_for(MyBrokenBackend)``.
    """

    class Suite(InterpreterConformance):
        @pytest.fixture
        def make_interpreter(self) -> Any:
            return factory

    return Suite

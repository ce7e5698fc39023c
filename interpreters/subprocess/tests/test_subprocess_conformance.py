"""The subprocess backend passes the shared conformance suite."""

from __future__ import annotations

import pytest

from rlm_conformance import InterpreterConformance, InterpreterFactory
from rlm_subprocess import SubprocessInterpreter


class TestSubprocessConformance(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self) -> InterpreterFactory:
        return lambda: SubprocessInterpreter()

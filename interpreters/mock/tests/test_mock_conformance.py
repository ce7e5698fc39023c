"""The mock backend passes the shared conformance suite."""

from __future__ import annotations

import pytest

from rlm_conformance import InterpreterConformance, InterpreterFactory
from rlm_mock import MockInterpreter


class TestMockConformance(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self) -> InterpreterFactory:
        return lambda: MockInterpreter()

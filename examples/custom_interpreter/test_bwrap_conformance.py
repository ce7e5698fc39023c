"""The whole conformance suite against the bubblewrap adapter: this is all a stranger writes."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest
from bwrap_interpreter import BwrapInterpreter

from rlm_conformance import InterpreterConformance
from rlm_core.interpreter import Interpreter

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


class TestBwrapConformance(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self) -> Callable[[], Interpreter]:
        return BwrapInterpreter

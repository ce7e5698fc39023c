"""Zero-code mode: ``pytest --pyargs rlm_conformance --rlm-interpreter NAME``.

Runs the whole suite against any installed backend, chosen by entry-point name or by a
``NAME://TARGET?key=value`` spec. The plugin leaves this module uncollected without the option.
"""

from __future__ import annotations

import pytest

from rlm_conformance._base import InterpreterFactory
from rlm_conformance._by_name import interpreter_factory
from rlm_conformance.suite import InterpreterConformance


class TestInterpreterByName(InterpreterConformance):
    """The conformance suite for the interpreter named by ``--rlm-interpreter``."""

    @pytest.fixture
    def make_interpreter(self, request: pytest.FixtureRequest) -> InterpreterFactory:
        """Build the interpreter the command line names."""
        spec = request.config.getoption("rlm_interpreter")
        assert isinstance(spec, str)
        return interpreter_factory(spec)

"""The E2B backend, on the real SDK against the local stand-in, passes the conformance suite.

The stand-in runs sandbox commands as local processes, so the interpreters here declare the
stand-in's true capabilities (``STANDIN_CAPABILITIES``) instead of a microVM's: the suite's
isolation probes then check what really holds, and nothing is falsely claimed.
"""

from __future__ import annotations

import pytest

from rlm_conformance import InterpreterFactory, RPCSandboxConformance
from rlm_conformance.fixtures import context_fixture
from rlm_e2b.testing import E2BStandIn

standin = context_fixture(E2BStandIn, scope="module")


class TestE2BConformance(RPCSandboxConformance):
    backend_name = "e2b"

    @pytest.fixture
    def make_interpreter(self, standin: E2BStandIn) -> InterpreterFactory:
        return standin.interpreter

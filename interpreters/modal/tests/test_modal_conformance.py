"""The Modal backend passes the shared conformance suite through the real SDK and the stand-in.

The stand-in runs the guest as a local process, not in Modal's gVisor container, so the
interpreter is told the stand-in's true capabilities: isolation probes that only a container
passes are skipped by capability, never claimed falsely. Modal's own isolation is covered by
the live tests (``pytest -m live`` with credentials).
"""

from __future__ import annotations

import pytest

from rlm_conformance import InterpreterFactory, RPCSandboxConformance
from rlm_conformance.fixtures import context_fixture
from rlm_modal.testing import ModalStandIn

standin = context_fixture(ModalStandIn, scope="module")


class TestModalConformance(RPCSandboxConformance):
    @pytest.fixture
    def make_interpreter(self, standin: ModalStandIn) -> InterpreterFactory:
        return standin.interpreter

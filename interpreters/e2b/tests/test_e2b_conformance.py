"""The E2B backend, on the real SDK against the local stand-in, passes the conformance suite.

The stand-in runs sandbox commands as local processes, so the interpreters here declare the
stand-in's true capabilities (``STANDIN_CAPABILITIES``) instead of a microVM's: the suite's
isolation probes then check what really holds, and nothing is falsely claimed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlm_conformance import InterpreterConformance, InterpreterFactory
from rlm_e2b.testing import E2BStandIn


@pytest.fixture(scope="module")
def standin() -> Iterator[E2BStandIn]:
    with E2BStandIn() as server:
        yield server


class TestE2BConformance(InterpreterConformance):
    # Each tool call crosses the SDK's RPC stack (about 2 ms here), so the suite's 1,000-call
    # cell needs more than the default 30 s on a loaded CI machine.
    cell_timeout = 120.0
    # 16 guest threads share one stdin/stdout pair carried over RPC; 100 calls each still race
    # them (1,600 replies) without one cell outliving the RPC stack's throughput on a busy CI.
    thread_tool_calls = 100
    hang_limit_s = 240.0

    backend_name = "e2b"

    @pytest.fixture
    def make_interpreter(self, standin: E2BStandIn) -> InterpreterFactory:
        return standin.interpreter

"""The Deno backend passes the conformance suite three ways: started cold from the snapshot
(what ``deno`` gives a user by default), from a warm pool of booted runners, and as workers
sharing Deno processes."""

from __future__ import annotations

import pytest

from rlm_conformance import InterpreterConformance, InterpreterFactory
from rlm_deno import DenoInterpreter, DenoPool

_POOL: DenoPool | None = None


def _pool() -> DenoPool:
    global _POOL
    if _POOL is None:
        _POOL = DenoPool(size=2)
    return _POOL


class TestDenoConformance(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self) -> InterpreterFactory:
        return lambda: DenoInterpreter()


class TestDenoPooledConformance(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self) -> InterpreterFactory:
        return lambda: _pool().interpreter()


class TestDenoSharedProcessConformance(InterpreterConformance):
    """Sessions as workers of shared Deno processes (up to four live sessions in each)."""

    @pytest.fixture
    def make_interpreter(self) -> InterpreterFactory:
        return lambda: DenoInterpreter(sessions_per_process=4)

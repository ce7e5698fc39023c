"""The Deno backend passes the shared conformance suite, twice: started cold from the snapshot
(what ``deno`` gives a user by default) and started from a warm pool of booted runners."""

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

"""The blocking facade: ``rlm_core.sync.BlockingInterpreter`` drives the backend from sync code.

If this group fails while the async groups pass, the backend probably binds itself to the event
loop or thread it was created on (a subprocess, socket or SDK client made in ``__init__``); create
such resources in ``start()``, which the facade runs on its own loop thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from rlm_conformance._availability import backend_name_of, report_unavailable
from rlm_conformance._base import ConformanceBase, InterpreterFactory
from rlm_core.errors import InterpreterClosedError, InterpreterUnavailableError
from rlm_core.interpreter import SubmitField
from rlm_core.sync import BlockingInterpreter


class BlockingTests(ConformanceBase):
    """The same contract, called without async."""

    @contextmanager
    def _blocking(
        self, request: pytest.FixtureRequest, make_interpreter: InterpreterFactory
    ) -> Iterator[BlockingInterpreter]:
        interp = make_interpreter()
        repl = BlockingInterpreter(interp)
        try:
            try:
                repl.start()
            except InterpreterUnavailableError as exc:
                report_unavailable(
                    request.config, self.backend_name or backend_name_of(interp), exc
                )
            yield repl
        finally:
            repl.close()

    def test_blocking_round_trip(
        self, request: pytest.FixtureRequest, make_interpreter: InterpreterFactory
    ) -> None:
        """Variables, tools, execution and SUBMIT all work through the blocking facade."""
        with self._blocking(request, make_interpreter) as repl:
            repl.set_variables({"numbers": [1, 2, 3]})
            repl.register({"double": lambda n: n * 2}, [SubmitField(name="total")])
            result = repl.execute("print('sum')\nSUBMIT(double(sum(numbers)))", timeout=30)
            assert result.stdout == "sum\n"
            assert result.submitted == {"total": 12}

    def test_blocking_state_persists(
        self, request: pytest.FixtureRequest, make_interpreter: InterpreterFactory
    ) -> None:
        """Globals persist between blocking execute calls, and errors are data."""
        with self._blocking(request, make_interpreter) as repl:
            repl.execute("x = 20", timeout=30)
            assert repl.execute("x + 1", timeout=30).value == "21"
            error = repl.execute("1 / 0", timeout=30).error
            assert error is not None
            assert error.type == "ZeroDivisionError"

    def test_blocking_close_is_final(
        self, request: pytest.FixtureRequest, make_interpreter: InterpreterFactory
    ) -> None:
        """After the facade closes, the interpreter underneath is closed too."""
        with self._blocking(request, make_interpreter) as repl:
            repl.execute("1", timeout=30)
        try:
            with pytest.raises(InterpreterClosedError):
                repl.execute("1", timeout=30)
        finally:
            repl.close()  # the failed call may have started a fresh portal thread

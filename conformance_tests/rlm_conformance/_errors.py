"""Errors: what the user's code raised is data in the result, and the session carries on.

If this group fails, look at the guest's exception handling around ``exec``: it must catch
``BaseException`` (``SystemExit``, ``KeyboardInterrupt`` too), format the traceback starting at
the cell's own frames, report syntax errors with their line, and survive exceptions whose
arguments are not JSON or whose ``__str__`` raises.
"""

from __future__ import annotations

import pytest

from rlm_conformance._base import ConformanceBase
from rlm_conformance._requires import requires
from rlm_core.errors import SessionError
from rlm_core.interpreter import Interpreter


class ErrorTests(ConformanceBase):
    """Exceptions, syntax errors, exits."""

    async def test_runtime_error_is_data(self, interpreter: Interpreter) -> None:
        """A raised exception is reported as ``error`` (type, message), not raised on the host."""
        result = await self.run(interpreter, "x = 1\n1 / 0")
        assert result.error is not None
        assert not result.ok
        assert result.error.type == "ZeroDivisionError"
        assert result.error.message == "division by zero"

    async def test_session_survives_runtime_error(self, interpreter: Interpreter) -> None:
        """After a failing cell, earlier globals are intact and new cells run."""
        await self.ok(interpreter, "kept = 'yes'")
        await self.run(interpreter, "raise ValueError('boom')")
        assert await self.value(interpreter, "kept") == "'yes'"

    async def test_output_before_error_is_kept(self, interpreter: Interpreter) -> None:
        """Stdout and stderr written before the exception are returned with the error."""
        code = "import sys\nprint('before')\nprint('warn', file=sys.stderr)\nraise KeyError('k')"
        result = await self.run(interpreter, code)
        assert result.stdout == "before\n"
        assert result.stderr == "warn\n"
        assert result.error is not None
        assert result.error.type == "KeyError"

    async def test_statements_before_error_take_effect(self, interpreter: Interpreter) -> None:
        """Assignments that ran before the exception persist (no rollback)."""
        await self.run(interpreter, "done = 1\nraise RuntimeError('later')\ndone = 2")
        assert await self.value(interpreter, "done") == "1"

    async def test_syntax_error_detail(self, interpreter: Interpreter) -> None:
        """A syntax error is data with type SyntaxError, the parser's message and its line."""
        result = await self.run(interpreter, "a = 1\nb = 2\nif b\n    print(b)\n")
        assert result.error is not None
        assert result.error.type == "SyntaxError"
        assert result.error.lineno == 3
        assert result.error.message
        assert "if b" in result.error.traceback

    async def test_syntax_error_runs_nothing(self, interpreter: Interpreter) -> None:
        """A cell with a syntax error anywhere runs none of its lines."""
        result = await self.run(interpreter, "print('early')\nmarker = 1\n)")
        assert result.error is not None
        assert result.error.type == "SyntaxError"
        assert result.stdout == ""
        result = await self.run(interpreter, "marker")
        assert result.error is not None
        assert result.error.type == "NameError"

    async def test_indentation_error_detail(self, interpreter: Interpreter) -> None:
        """An indentation error is reported with its own type and line."""
        result = await self.run(interpreter, "def f():\nreturn 1\n")
        assert result.error is not None
        assert result.error.type == "IndentationError"
        assert result.error.lineno == 2

    async def test_traceback_shows_only_user_frames(self, interpreter: Interpreter) -> None:
        """The traceback names the cell's functions and lines, and none of the runtime's frames."""
        code = (
            "def inner():\n    raise ValueError('deep')\n\ndef outer():\n    inner()\n\nouter()\n"
        )
        result = await self.run(interpreter, code)
        assert result.error is not None
        text = result.error.traceback
        assert "inner" in text
        assert "outer" in text
        assert "ValueError: deep" in text
        assert "raise ValueError('deep')" in text  # source lines are shown
        for runtime in ("guest.py", "rlm_core", "rlm-guest", "_run", "execute("):
            assert runtime not in text, f"runtime frame {runtime!r} leaked:\n{text}"

    async def test_error_line_number(self, interpreter: Interpreter) -> None:
        """``error.lineno`` is the cell line where the exception was raised."""
        result = await self.run(interpreter, "a = 1\nb = 2\nc = a / (b - 2)\n")
        assert result.error is not None
        assert result.error.lineno == 3

    async def test_stdlib_frames_may_appear_but_start_at_cell(
        self, interpreter: Interpreter
    ) -> None:
        """An error raised inside the standard library still reports the cell's line first."""
        result = await self.run(interpreter, "import json\njson.loads('{bad')\n")
        assert result.error is not None
        assert result.error.type == "JSONDecodeError"
        assert result.error.lineno == 2
        assert "json.loads('{bad')" in result.error.traceback

    async def test_sys_exit_is_data(self, interpreter: Interpreter) -> None:
        """``sys.exit(3)`` ends the cell as a SystemExit error; the session survives."""
        await self.ok(interpreter, "alive = True")
        result = await self.run(interpreter, "import sys\nprint('bye')\nsys.exit(3)\nprint('no')")
        assert result.error is not None
        assert result.error.type == "SystemExit"
        assert result.error.message == "3"
        assert result.stdout == "bye\n"
        assert await self.value(interpreter, "alive") == "True"

    async def test_exit_builtin_is_data(self, interpreter: Interpreter) -> None:
        """``raise SystemExit`` with no argument is data too; the session survives."""
        result = await self.run(interpreter, "raise SystemExit")
        assert result.error is not None
        assert result.error.type == "SystemExit"
        assert await self.value(interpreter, "2 + 2") == "4"

    async def test_raised_keyboard_interrupt_is_data(self, interpreter: Interpreter) -> None:
        """A KeyboardInterrupt raised by the code itself is an error, not a timeout."""
        result = await self.run(interpreter, "raise KeyboardInterrupt('by hand')")
        assert result.error is not None
        assert result.error.type == "KeyboardInterrupt"
        assert not result.timed_out
        assert await self.value(interpreter, "'still here'") == "'still here'"

    async def test_exception_with_non_json_args(self, interpreter: Interpreter) -> None:
        """An exception whose args are not JSON (sets, objects) comes back as text."""
        result = await self.run(interpreter, "raise ValueError({1, 2}, object(), b'\\xff')")
        assert result.error is not None
        assert result.error.type == "ValueError"
        assert "{1, 2}" in result.error.message
        assert "b'\\xff'" in result.error.message

    async def test_exception_whose_str_raises(self, interpreter: Interpreter) -> None:
        """An exception whose ``__str__`` itself raises is still reported, with its type name."""
        code = (
            "class Nasty(Exception):\n"
            "    def __str__(self):\n"
            "        raise RuntimeError('no str for you')\n"
            "raise Nasty()\n"
        )
        result = await self.run(interpreter, code)
        assert result.error is not None
        assert result.error.type == "Nasty"
        assert await self.value(interpreter, "1") == "1"

    async def test_unprintable_final_value(self, interpreter: Interpreter) -> None:
        """A final value whose ``__repr__`` raises does not break the cell or the session."""
        code = "class Bad:\n    def __repr__(self):\n        raise RuntimeError('no repr')\nBad()"
        result = await self.run(interpreter, code)
        assert result.value is None or "RuntimeError" in result.value or result.error is not None
        assert await self.value(interpreter, "'ok'") == "'ok'"

    async def test_recursion_error_is_data(self, interpreter: Interpreter) -> None:
        """Unbounded recursion ends as a RecursionError; the session survives."""
        result = await self.run(interpreter, "def f(n):\n    return f(n + 1)\nf(0)")
        assert result.error is not None
        assert result.error.type == "RecursionError"
        assert await self.value(interpreter, "3 * 3") == "9"

    async def test_non_ascii_error_message(self, interpreter: Interpreter) -> None:
        """An error message with non-ASCII text comes back unchanged."""
        result = await self.run(interpreter, "raise ValueError('naïve 漢字 🚀')")
        assert result.error is not None
        assert result.error.message == "naïve 漢字 🚀"

    @requires(isolation_at_least="process")
    async def test_os_exit_ends_session_cleanly(self, interpreter: Interpreter) -> None:
        """``os._exit`` in the guest yields data or SessionError, never a hang or a wrong result."""
        try:
            result = await self.run(interpreter, "import os\nos._exit(7)")
        except SessionError:
            with pytest.raises(SessionError):
                await self.run(interpreter, "1")
            return
        assert result.error is not None
        assert await self.value(interpreter, "1") == "1"

"""Execution and state: what a cell prints, what it evaluates to, and what the next cell sees.

If this group fails, look at output capture (``sys.stdout``/``sys.stderr`` swapped for the
cell, kept separate), at how the final expression is split off and ``repr``-ed apart from
stdout, and at the namespace: one dict of globals must persist across cells.
"""

from __future__ import annotations

import pytest

from rlm_conformance._base import ConformanceBase
from rlm_core.interpreter import Interpreter


class ExecutionTests(ConformanceBase):
    """Stdout, stderr, final values, persistent globals."""

    async def test_stdout_is_captured(self, interpreter: Interpreter) -> None:
        """``print`` output comes back in ``stdout``, exactly, with its true length."""
        result = await self.ok(interpreter, "print('hello')\nprint('world', end='!')")
        assert result.stdout == "hello\nworld!"
        assert result.stdout_chars == len("hello\nworld!")
        assert not result.truncated

    async def test_sys_stdout_write_is_captured(self, interpreter: Interpreter) -> None:
        """Writes through ``sys.stdout`` land in ``stdout`` like ``print``."""
        result = await self.ok(
            interpreter, "import sys\nsys.stdout.write('raw')\nsys.stdout.flush()"
        )
        assert result.stdout == "raw"

    async def test_stderr_is_separate_from_stdout(self, interpreter: Interpreter) -> None:
        """Writes to ``sys.stderr`` come back in ``stderr`` and never in ``stdout``."""
        code = "import sys\nprint('out')\nprint('err', file=sys.stderr)\nprint('out2')"
        result = await self.ok(interpreter, code)
        assert result.stdout == "out\nout2\n"
        assert result.stderr == "err\n"
        assert result.stderr_chars == 4

    async def test_final_expression_value_is_kept_apart(self, interpreter: Interpreter) -> None:
        """A final expression's ``repr`` is ``value``; stdout printed before it stays intact."""
        result = await self.ok(interpreter, "print('shown')\n{'a': [1, 2]}")
        assert result.stdout == "shown\n"
        assert result.value == "{'a': [1, 2]}"

    async def test_final_expression_none_has_no_value(self, interpreter: Interpreter) -> None:
        """A final expression that evaluates to None (such as a print call) gives value None."""
        result = await self.ok(interpreter, "print('only output')")
        assert result.value is None
        assert result.stdout == "only output\n"

    async def test_final_expression_repr_of_string(self, interpreter: Interpreter) -> None:
        """A string's value is its ``repr`` (quoted), so the model can tell types apart."""
        assert await self.value(interpreter, "'abc'") == "'abc'"

    async def test_statement_cell_has_no_value(self, interpreter: Interpreter) -> None:
        """A cell ending in an assignment has no value."""
        result = await self.ok(interpreter, "x = 5")
        assert result.value is None
        assert result.stdout == ""

    async def test_globals_persist_across_cells(self, interpreter: Interpreter) -> None:
        """Variables assigned in one cell are visible, and mutable, in later cells."""
        await self.ok(interpreter, "counter = [1]")
        await self.ok(interpreter, "counter.append(2)")
        assert await self.value(interpreter, "counter") == "[1, 2]"

    async def test_imports_persist_across_cells(self, interpreter: Interpreter) -> None:
        """A module imported in one cell is usable in the next."""
        await self.ok(interpreter, "import json as j")
        assert await self.value(interpreter, "j.dumps([1])") == "'[1]'"

    async def test_functions_and_classes_persist(self, interpreter: Interpreter) -> None:
        """Functions and classes defined in one cell work in later cells, with their globals."""
        await self.ok(
            interpreter,
            "factor = 3\ndef triple(n):\n    return n * factor\n"
            "class Box:\n    def __init__(self, v):\n        self.v = triple(v)\n",
        )
        assert await self.value(interpreter, "Box(4).v") == "12"

    async def test_empty_cell(self, interpreter: Interpreter) -> None:
        """An empty (or comment-only) cell succeeds with no output and no value."""
        for code in ("", "   \n\n", "# just a comment"):
            result = await self.ok(interpreter, code)
            assert (result.stdout, result.stderr, result.value) == ("", "", None)

    async def test_unicode_output(self, interpreter: Interpreter) -> None:
        """Non-ASCII text (accents, CJK, emoji, combining marks) round-trips through stdout."""
        text = "café 漢字 🚀 e\u0301 \u00a0end"
        result = await self.ok(interpreter, f"print({text!r})\n{text!r}")
        assert result.stdout == text + "\n"
        assert result.value == repr(text)
        assert result.stdout_chars == len(text) + 1

    async def test_result_reports_no_error_or_submission(self, interpreter: Interpreter) -> None:
        """A plain cell reports ok, no submission, and no timeout."""
        result = await self.ok(interpreter, "1 + 1")
        assert result.ok
        assert result.submitted is None
        assert not result.timed_out
        assert result.value == "2"

    async def test_output_is_per_cell(self, interpreter: Interpreter) -> None:
        """Each result holds only its own cell's output, never an earlier cell's."""
        await self.ok(interpreter, "print('first')")
        result = await self.ok(interpreter, "print('second')")
        assert result.stdout == "second\n"

    async def test_top_level_names_live_in_main(self, interpreter: Interpreter) -> None:
        """Cells run as ``__main__``, so the usual ``if __name__ == '__main__'`` idiom runs."""
        result = await self.ok(interpreter, "if __name__ == '__main__':\n    print('main')")
        assert result.stdout == "main\n"

    async def test_declared_python_version_is_the_guests(self, interpreter: Interpreter) -> None:
        """``capabilities.python_version``, when declared, is the guest's own major.minor."""
        declared = interpreter.capabilities.python_version
        if declared is None:
            pytest.skip("the backend declares no python_version")
        running = await self.value(interpreter, "'%d.%d' % __import__('sys').version_info[:2]")
        assert running == repr(declared)

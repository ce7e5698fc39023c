"""SUBMIT: the guest's way to return final outputs, ending the cell at once.

If this group fails, look at the guest's ``SUBMIT``: it must raise something ``except
Exception`` cannot swallow (a ``BaseException``), check its values are JSON (else a code error
the model can fix), bind arguments by the registered output names, and the result must carry
the outputs plus every character printed before the call.
"""

from __future__ import annotations

import pytest

from rlm_conformance._base import ConformanceBase
from rlm_core.errors import ConfigError
from rlm_core.interpreter import Interpreter, SubmitField


class SubmitTests(ConformanceBase):
    """Default and typed SUBMIT, where it is called from, what it refuses."""

    async def _typed(self, interp: Interpreter) -> None:
        await interp.register(
            outputs=[SubmitField(name="answer", type="int"), SubmitField(name="why", type="str")]
        )

    async def test_default_submit(self, interpreter: Interpreter) -> None:
        """Without registered outputs, ``SUBMIT(value)`` submits ``{"output": value}``."""
        result = await self.ok(interpreter, "SUBMIT({'total': 3})")
        assert result.submitted == {"output": {"total": 3}}

    async def test_default_submit_by_keyword(self, interpreter: Interpreter) -> None:
        """The default SUBMIT also takes ``output=`` by keyword."""
        result = await self.ok(interpreter, "SUBMIT(output='done')")
        assert result.submitted == {"output": "done"}

    async def test_typed_submit_positional(self, interpreter: Interpreter) -> None:
        """With registered outputs, SUBMIT takes them positionally, in order."""
        await self._typed(interpreter)
        result = await self.ok(interpreter, "SUBMIT(42, 'because')")
        assert result.submitted == {"answer": 42, "why": "because"}

    async def test_typed_submit_keyword(self, interpreter: Interpreter) -> None:
        """With registered outputs, SUBMIT takes them by keyword, in any order."""
        await self._typed(interpreter)
        result = await self.ok(interpreter, "SUBMIT(why='kw', answer=7)")
        assert result.submitted == {"answer": 7, "why": "kw"}

    async def test_submit_wrong_arity_is_a_code_error(self, interpreter: Interpreter) -> None:
        """Missing or extra SUBMIT arguments are a TypeError code error; nothing is submitted."""
        await self._typed(interpreter)
        for code in ("SUBMIT(1)", "SUBMIT(1, 'a', 'extra')", "SUBMIT(answer=1, nope=2)"):
            result = await self.run(interpreter, code)
            assert result.error is not None, code
            assert result.error.type == "TypeError", code
            assert result.submitted is None, code

    async def test_submit_ends_the_cell(self, interpreter: Interpreter) -> None:
        """Code after SUBMIT does not run: no output, no assignments."""
        result = await self.ok(interpreter, "state = 1\nSUBMIT('x')\nstate = 2\nprint('after')")
        assert result.submitted == {"output": "x"}
        assert result.stdout == ""
        assert await self.value(interpreter, "state") == "1"

    async def test_submit_inside_loop(self, interpreter: Interpreter) -> None:
        """SUBMIT inside a loop ends the whole cell, not just the loop."""
        code = "for i in range(10):\n    if i == 3:\n        SUBMIT(i)\nprint('after loop')"
        result = await self.ok(interpreter, code)
        assert result.submitted == {"output": 3}
        assert "after loop" not in result.stdout

    async def test_submit_inside_function(self, interpreter: Interpreter) -> None:
        """SUBMIT from inside nested function calls ends the cell."""
        code = (
            "def inner():\n    SUBMIT('deep')\ndef outer():\n    inner()\n    return 1\nouter()\n"
        )
        result = await self.ok(interpreter, code)
        assert result.submitted == {"output": "deep"}
        assert result.value is None

    async def test_submit_inside_try_except_exception(self, interpreter: Interpreter) -> None:
        """``try/except Exception`` around SUBMIT does not swallow it."""
        code = "try:\n    SUBMIT('kept')\nexcept Exception:\n    print('swallowed')\nprint('after')"
        result = await self.ok(interpreter, code)
        assert result.submitted == {"output": "kept"}
        assert result.stdout == ""

    async def test_stdout_before_submit_is_kept(self, interpreter: Interpreter) -> None:
        """Everything printed before SUBMIT is in the result's stdout and stderr."""
        code = "import sys\nprint('working')\nprint('note', file=sys.stderr)\nSUBMIT(1)"
        result = await self.ok(interpreter, code)
        assert result.stdout == "working\n"
        assert result.stderr == "note\n"
        assert result.submitted == {"output": 1}

    async def test_non_json_submit_is_a_code_error(self, interpreter: Interpreter) -> None:
        """Submitting a non-JSON value is a TypeError code error, the session survives."""
        for value in ("{1, 2}", "object()", "float('nan')", "{1: 'int key'}"):
            result = await self.run(interpreter, f"SUBMIT({value})")
            assert result.error is not None, value
            assert result.error.type == "TypeError", value
            assert result.submitted is None, value
        assert await self.value(interpreter, "'alive'") == "'alive'"

    async def test_non_json_submit_can_be_caught_and_fixed(self, interpreter: Interpreter) -> None:
        """The TypeError from a non-JSON SUBMIT is catchable, so code can submit a fixed value."""
        code = "try:\n    SUBMIT({3, 1})\nexcept TypeError:\n    SUBMIT(sorted({3, 1}))"
        result = await self.ok(interpreter, code)
        assert result.submitted == {"output": [1, 3]}

    async def test_submit_json_values_round_trip(self, interpreter: Interpreter) -> None:
        """Nested JSON values, unicode and tuples (as lists) arrive on the host intact."""
        result = await self.ok(interpreter, "SUBMIT({'a': [1, 2.5, None, True], 'ü': ('t', '🚀')})")
        assert result.submitted == {"output": {"a": [1, 2.5, None, True], "ü": ["t", "🚀"]}}

    async def test_no_submit_means_none(self, interpreter: Interpreter) -> None:
        """A cell that does not call SUBMIT has ``submitted`` None, also after one that did."""
        await self.ok(interpreter, "SUBMIT(1)")
        result = await self.ok(interpreter, "x = 1")
        assert result.submitted is None

    async def test_submit_after_caught_error_wins(self, interpreter: Interpreter) -> None:
        """A cell that handled an exception and then submitted reports the submission, no error."""
        code = "try:\n    1 / 0\nexcept ZeroDivisionError:\n    pass\nSUBMIT('recovered')"
        result = await self.ok(interpreter, code)
        assert result.submitted == {"output": "recovered"}

    async def test_outputs_reregistered(self, interpreter: Interpreter) -> None:
        """Registering new outputs changes SUBMIT's parameters for later cells."""
        await self._typed(interpreter)
        await interpreter.register(outputs=[SubmitField(name="summary")])
        result = await self.ok(interpreter, "SUBMIT(summary='short')")
        assert result.submitted == {"summary": "short"}

    @pytest.mark.parametrize(
        "names", [["bad name"], ["class"], ["answer", "answer"]], ids=["space", "keyword", "twice"]
    )
    async def test_invalid_or_repeated_output_names_rejected(
        self, interpreter: Interpreter, names: list[str]
    ) -> None:
        """Output names that are not identifiers, or repeat, raise ConfigError; SUBMIT works."""
        with pytest.raises(ConfigError):
            await interpreter.register(outputs=[SubmitField(name=n) for n in names])
        result = await self.ok(interpreter, "SUBMIT(1)")
        assert result.submitted == {"output": 1}

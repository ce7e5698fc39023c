"""Unit-testing a program built on RLM: a scripted model and the in-process mock backend.

``ScriptedLM`` replays the replies you write, so the test decides exactly what the model
"says" at each step; ``MockInterpreter`` runs the code for real, in-process, in milliseconds.
Copy the ``test_*`` functions into your own test suite.
"""

from __future__ import annotations

from rlm_core import RLM
from rlm_core.lm import LM
from rlm_core.testing import ScriptedLM
from rlm_mock import MockInterpreter


def count_errors(logs: str, lm: LM, interpreter: object = "deno") -> int:
    """The program under test: count ERROR lines with an RLM."""
    rlm = RLM("logs -> error_count: int", lm=lm, interpreter=interpreter)  # type: ignore[arg-type]
    return int(rlm(logs=logs).error_count)


def reply(code: str) -> str:
    return f"Let me check.\n```python\n{code}\n```"


def test_counts_errors() -> None:
    lm = ScriptedLM(
        [
            reply("lines = logs.splitlines()\nprint(len(lines))"),
            reply("SUBMIT(sum('ERROR' in line for line in lines))"),
        ]
    )
    logs = "INFO ok\nERROR disk\nERROR fan\n"
    assert count_errors(logs, lm, interpreter=MockInterpreter) == 2
    assert "3" in lm.calls[1][-1]["content"]  # the model was shown the printed line count


def test_a_wrong_type_is_sent_back_to_the_model() -> None:
    lm = ScriptedLM([reply("SUBMIT('two')"), reply("SUBMIT(2)")])
    assert count_errors("ERROR a\nERROR b", lm, interpreter=MockInterpreter) == 2
    assert "expected int" in lm.calls[1][-1]["content"]


def main() -> None:
    test_counts_errors()
    test_a_wrong_type_is_sent_back_to_the_model()
    print("both tests passed")


if __name__ == "__main__":
    main()

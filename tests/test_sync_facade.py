"""The blocking facade runs the async contract for sync callers, from any thread."""

from __future__ import annotations

import threading

from rlm_core.interpreter import SubmitField
from rlm_core.sync import BlockingInterpreter


def test_blocking_session_end_to_end() -> None:
    with BlockingInterpreter("subprocess") as repl:
        repl.register({"shout": str.upper}, [SubmitField(name="answer")])
        repl.set_variables({"ctx": "hello"})
        assert repl.execute("shout(ctx)").value == "'HELLO'"
        assert repl.execute("SUBMIT(len(ctx))").submitted == {"answer": 5}


def test_usable_from_another_thread_and_closed_twice() -> None:
    repl = BlockingInterpreter("mock")
    repl.start()
    box: list[str | None] = []
    thread = threading.Thread(target=lambda: box.append(repl.execute("6 * 7").value))
    thread.start()
    thread.join()
    assert box == ["42"]
    repl.close()
    repl.close()

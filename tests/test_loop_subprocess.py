"""The loop over the process bridge: the same behaviours with a real child process."""

import json

from rlm_core.lm import Message
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_subprocess import SubprocessInterpreter


def py(src: str) -> str:
    return f"Step.\n```python\n{src}\n```"


def test_large_input_tools_and_typed_submit_over_the_bridge() -> None:
    def weight(word: str) -> int:
        """Host-side lookup."""
        return len(word) * 10

    context = "needle " + "hay " * 500_000
    lm = ScriptedLM(
        [
            py("import os\nprint(len(context), os.getpid() != 0)"),
            py("w = weight(context.split()[0])\nprint(w)"),
            py("SUBMIT(count=context.count('hay'), weight=w)"),
        ]
    )
    rlm = RLM(
        "context -> count: int, weight: int",
        lm=lm,
        interpreter=SubprocessInterpreter,
        tools=[weight],
    )
    result = rlm(context=context)
    assert (result.count, result.weight) == (500_000, 60)
    assert "2,000,007 characters" in lm.calls[0][1]["content"]
    assert "2000007 True" in lm.calls[1][-1]["content"]


def test_batched_sub_calls_from_a_child_process() -> None:
    def sub(messages: list[Message]) -> str:
        return messages[-1]["content"] + "!"

    lm = ScriptedLM([py("SUBMIT(llm_query_batched([str(i) for i in range(10)]))")])
    rlm = RLM("q -> r: list[str]", lm=lm, sub_lm=ScriptedLM(sub), interpreter=SubprocessInterpreter)
    assert rlm(q="?").r == [f"{i}!" for i in range(10)]


# A process's identity even inside its own PID namespace (where every guest may be pid 2):
# its pid and its start time in clock ticks since boot.
PROCESS_ID = "f\"{os.getpid()}-{open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19]}\""


def test_killed_guest_is_replaced_and_inputs_bound_again() -> None:
    lm = ScriptedLM(
        [
            py(f"x = 1\nimport os\nprint({PROCESS_ID})"),
            py("import os\nos._exit(3)"),
            py(f"import os\nprint('x' in globals(), len(context), {PROCESS_ID})"),
            py("SUBMIT(len(context))"),
        ]
    )
    result = RLM("context -> n: int", lm=lm, interpreter="subprocess")(context="abcdef")
    assert result.n == 6
    assert "session was lost" in lm.calls[2][-1]["content"]
    first_pid = lm.calls[1][-1]["content"].split("\n")[2]
    after = lm.calls[3][-1]["content"].split("\n")[2].split()
    assert after[:2] == ["False", "6"]
    assert after[2] != first_pid


def test_timeout_interrupts_and_keeps_variables() -> None:
    lm = ScriptedLM([py("x = 7"), py("while True:\n    pass"), py("SUBMIT(x)")])
    rlm = RLM("q -> n: int", lm=lm, interpreter=SubprocessInterpreter, cell_timeout_s=0.5)
    assert rlm(q="?").n == 7
    assert "interrupted" in lm.calls[2][-1]["content"]


def test_recursion_on_the_subprocess_backend() -> None:
    def script(messages: list[Message]) -> str:
        if "Variable `prompt`" in messages[1]["content"]:
            return py("SUBMIT(str(sum(context)))")
        if len(messages) == 2:
            return py("a = rlm_query('add these', context=[1, 2, 3, 4])\nprint(a)")
        return py("SUBMIT(int(a))")

    result = RLM("q -> n: int", lm=ScriptedLM(script), interpreter=SubprocessInterpreter)(q="?")
    assert result.n == 10
    json.dumps(result.trajectory)

"""Chaos: 20 concurrent runs on real subprocess guests while random guest processes are SIGKILLed.

Kills land at any moment (while a session starts, registers, binds inputs, or runs a cell);
every run must still finish with its own right answer. Each guest dies with the same small
chance per tick, the number of kills is bounded, and the whole test is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal

import anyio
import pytest

from rlm_conformance.processes import guest_processes
from rlm_core.lm import Message
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_subprocess import SubprocessInterpreter

RUNS = 20
MAX_KILLS = 40
KILL_CHANCE_PER_TICK = 0.05

# Three cells in a row in one session, so a kill between them costs the run real progress.
CELL = (
    "Counting.\n```python\nimport time\ntime.sleep(0.15)\n"
    "k = globals().get('k', 0) + 1\nif k >= 3:\n    SUBMIT(len(context))\n```"
)


@pytest.mark.timeout(300)
def test_twenty_concurrent_runs_survive_random_sigkills() -> None:
    def reply(messages: list[Message]) -> str:
        return CELL

    events: list[dict[str, object]] = []
    rlm = RLM(
        "context -> n: int",
        lm=ScriptedLM(reply),
        interpreter=SubprocessInterpreter,
        max_iterations=40,
        on_event=events.append,
    )
    answers: dict[int, int] = {}
    kills: list[int] = []
    rng = random.Random(1234)

    async def one(i: int) -> None:
        answers[i] = (await rlm.acall(context="x" * (i + 1))).n

    async def killer(done: anyio.Event) -> None:
        # Every guest process has the same chance of dying per tick (independent failures), so
        # the few runs still going near the end are not singled out by a constant kill rate.
        while not done.is_set() and len(kills) < MAX_KILLS:
            await anyio.sleep(0.05)
            for victim in guest_processes(os.getpid()):
                if rng.random() < KILL_CHANCE_PER_TICK:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                        kills.append(victim)

    async def main() -> None:
        done = anyio.Event()
        with anyio.fail_after(240):
            async with anyio.create_task_group() as chaos:
                chaos.start_soon(killer, done)
                async with anyio.create_task_group() as runs:
                    for i in range(RUNS):
                        runs.start_soon(one, i)
                done.set()

    anyio.run(main)
    assert answers == {i: i + 1 for i in range(RUNS)}
    # The chaos really happened, both while sessions opened and while cells ran.
    kinds = [e["event"] for e in events]
    assert kinds.count("session_retry") >= 1
    assert kinds.count("session_restart") >= 1
    assert guest_processes(os.getpid()) == []

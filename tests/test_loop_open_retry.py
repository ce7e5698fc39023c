"""Runs survive sessions lost while opening: real guest processes SIGKILLed in each phase.

A session dies during start, register or set_variables, either the first session of a run or
the replacement for one lost mid-run; the run retries the opening and finishes with the right
answer, or raises a clear :class:`SessionOpenError` with the trajectory when every attempt dies.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

import pytest

from rlm_core.bridge.session import GuestChannel
from rlm_core.errors import SessionLostError, SessionOpenError
from rlm_core.interpreter import HostTool, SubmitField, VariableValue
from rlm_core.loop import OPEN_ATTEMPTS
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_subprocess import SubprocessInterpreter

PHASES = ["start", "register", "set_variables"]


def py(src: str) -> str:
    return f"Next step.\n```python\n{src}\n```"


def kill_group_and_wait(pgid: int) -> None:
    """SIGKILL a guest's process group and wait until none of it runs any more."""
    os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        running = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != b"Z":
                running = True
                break
        if not running:
            return
        time.sleep(0.01)
    raise AssertionError(f"process group {pgid} still runs 10 s after SIGKILL")


class KilledWhileOpening(SubprocessInterpreter):
    """A subprocess guest that is SIGKILLed during the opening phase named in ``kills``.

    ``kills[phase]`` counts how many sessions are still to be killed in that phase; with
    ``spare_first`` the run's first session is left alone (so its replacements are hit).
    """

    kills: ClassVar[dict[str, int]] = {}
    spare_first: ClassVar[bool] = False
    killed: ClassVar[list[str]] = []
    opened: ClassVar[int] = 0

    def _maybe_kill(self, phase: str) -> None:
        spared = KilledWhileOpening.spare_first and self._number == 1
        if not spared and self.kills.get(phase, 0) > 0:
            self.kills[phase] -= 1
            KilledWhileOpening.killed.append(phase)
            kill_group_and_wait(self._pid)

    async def open_channel(self) -> GuestChannel:
        KilledWhileOpening.opened += 1
        self._number = KilledWhileOpening.opened
        channel = await super().open_channel()
        self._pid: int = getattr(channel, "pid")  # noqa: B009 - a ProcessChannel
        self._maybe_kill("start")
        return channel

    async def register(
        self,
        tools: Mapping[str, HostTool] | None = None,
        outputs: Sequence[SubmitField] | None = None,
    ) -> None:
        self._maybe_kill("register")
        await super().register(tools, outputs)

    async def set_variables(self, values: Mapping[str, VariableValue]) -> None:
        self._maybe_kill("set_variables")
        await super().set_variables(values)


@pytest.fixture(autouse=True)
def _reset() -> None:
    KilledWhileOpening.kills = {}
    KilledWhileOpening.spare_first = False
    KilledWhileOpening.killed = []
    KilledWhileOpening.opened = 0


KILL_SELF = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"


@pytest.mark.parametrize("phase", PHASES)
def test_first_session_lost_while_opening_is_retried(phase: str) -> None:
    KilledWhileOpening.kills = {phase: 2}
    events: list[dict[str, object]] = []
    lm = ScriptedLM([py("SUBMIT(len(context))")])
    rlm = RLM("context -> n: int", lm=lm, interpreter=KilledWhileOpening, on_event=events.append)
    assert rlm(context="hello").n == 5
    assert KilledWhileOpening.killed == [phase, phase]
    assert KilledWhileOpening.opened == 3
    retries = [e for e in events if e["event"] == "session_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]


@pytest.mark.parametrize("phase", PHASES)
def test_replacement_session_lost_while_opening_is_retried(phase: str) -> None:
    KilledWhileOpening.kills = {phase: 2}
    KilledWhileOpening.spare_first = True
    lm = ScriptedLM(
        [py("x = 1"), py(KILL_SELF), py("print('x' in globals())\nSUBMIT(len(context))")]
    )
    result = RLM("context -> n: int", lm=lm, interpreter=KilledWhileOpening)(context="hello")
    assert result.n == 5
    assert KilledWhileOpening.killed == [phase, phase]
    assert KilledWhileOpening.opened == 4
    assert [s["session_restarted"] for s in result.trajectory] == [False, True, False]
    assert result.trajectory[2]["stdout"] == "False\n"


def test_every_attempt_lost_is_a_session_open_error_with_the_trajectory() -> None:
    KilledWhileOpening.kills = {"register": 1000}
    KilledWhileOpening.spare_first = True
    lm = ScriptedLM([py("print('step one')"), py(KILL_SELF)])
    rlm = RLM("context -> n: int", lm=lm, interpreter=KilledWhileOpening)
    with pytest.raises(SessionOpenError, match=f"{OPEN_ATTEMPTS} attempts") as caught:
        rlm(context="hello")
    assert isinstance(caught.value.__cause__, SessionLostError)
    trajectory = caught.value.trajectory
    assert trajectory is not None
    assert [step["stdout"] for step in trajectory] == ["step one\n", ""]
    assert KilledWhileOpening.killed == ["register"] * OPEN_ATTEMPTS


def test_a_guest_that_refuses_an_input_is_not_retried() -> None:
    """A guest's own refusal (MemoryError binding an input) would repeat: no second session."""
    from rlm_core.errors import GuestRefusedError
    from rlm_mock import MockInterpreter

    made: list[MockInterpreter] = []

    class RefusesInputs(MockInterpreter):
        async def set_variables(self, values: Mapping[str, VariableValue]) -> None:
            raise GuestRefusedError("MemoryError", "out of memory", request="bind the variables")

    def factory() -> MockInterpreter:
        made.append(RefusesInputs())
        return made[-1]

    rlm = RLM("context -> answer", lm=ScriptedLM([py("SUBMIT('never')")]), interpreter=factory)
    with pytest.raises(GuestRefusedError, match="MemoryError"):
        rlm(context="x")
    assert len(made) == 1

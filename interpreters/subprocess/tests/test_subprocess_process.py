"""Process-level guarantees of the subprocess backend: kills, exits, no leaks, every Python."""

from __future__ import annotations

import glob
import os
import shutil
import time

import anyio
import pytest

from rlm_conformance.processes import descendants, running, wait_until
from rlm_core.errors import InterpreterUnavailableError, SessionLostError
from rlm_subprocess import SubprocessInterpreter

pytestmark = pytest.mark.anyio


def host_pid(interp: SubprocessInterpreter, inner: int) -> int:
    """The host pid of a guest-side pid (the guest may live in its own PID namespace)."""
    channel_pid: int = getattr(interp._channel, "pid")  # noqa: B009 - a ProcessChannel
    for pid in descendants(channel_pid):
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("NSpid:") and int(line.split()[-1]) == inner:
                    return pid
    raise AssertionError(f"no process below {channel_pid} is {inner} in its namespace")


def guest_pythons() -> list[str]:
    """Every CPython 3.8+ on this machine; the guest must run under all of them."""
    found = set(glob.glob("/root/.pyenv/versions/3.*/bin/python3"))
    found.update(p for p in ("/usr/bin/python3", "/usr/bin/python3.11") if os.path.exists(p))
    keep = []
    for path in sorted(found):
        version = os.path.basename(os.path.dirname(os.path.dirname(path)))
        if version.startswith(("3.6", "3.7")):
            continue
        keep.append(path)
    return keep


@pytest.mark.parametrize("python", guest_pythons())
async def test_guest_runs_under_every_python_on_the_machine(python: str) -> None:
    async with SubprocessInterpreter(python=python) as interp:
        await interp.register({"double": lambda x: 2 * x})
        await interp.set_variables({"ctx": "héllo", "raw": b"\x00\xff"})
        result = await interp.execute(
            "import sys\nprint(sys.version_info[:2], double(21), len(ctx), raw)\nSUBMIT(ctx)"
        )
        assert result.error is None, result.error
        assert "42 5 b'\\x00\\xff'" in result.stdout
        assert result.submitted == {"output": "héllo"}
        timed = await interp.execute("while True: pass", timeout=0.5)
        assert timed.timed_out
        assert (await interp.execute("len(ctx)")).value == "5"


async def test_cell_that_ignores_the_interrupt_is_killed_and_the_session_lost() -> None:
    interp = SubprocessInterpreter(interrupt_grace_s=0.5)
    await interp.start()
    pid = host_pid(interp, int(interp.guest_info["pid"]))  # type: ignore[arg-type]
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    started = time.monotonic()
    with pytest.raises(SessionLostError, match="did not stop when interrupted"):
        await interp.execute(code, timeout=0.5)
    assert time.monotonic() - started < 5
    assert not running(pid)
    with pytest.raises(SessionLostError, match="lost earlier"):
        await interp.execute("1")
    await interp.aclose()


async def test_os_exit_is_session_lost_with_the_exit_code() -> None:
    async with SubprocessInterpreter() as interp:
        with pytest.raises(SessionLostError, match="exit code 7"):
            await interp.execute("import os; os._exit(7)")


async def test_close_kills_processes_the_guest_spawned() -> None:
    interp = SubprocessInterpreter()
    await interp.start()
    result = await interp.execute(
        "import subprocess\np = subprocess.Popen(['sleep', '300'])\np.pid"
    )
    child = host_pid(interp, int(result.value or "0"))
    assert running(child)
    await interp.aclose()
    assert await anyio.to_thread.run_sync(wait_until, lambda: not running(child), 5.0)


async def test_guest_environment_holds_no_host_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_TEST_SECRET", "hunter2")
    async with SubprocessInterpreter(env={"VISIBLE": "yes"}) as interp:
        result = await interp.execute("import os; sorted(os.environ)")
        assert "RLM_TEST_SECRET" not in (result.value or "")
        assert "VISIBLE" in (result.value or "")


async def test_writes_to_file_descriptors_are_captured_not_sent_raw() -> None:
    async with SubprocessInterpreter() as interp:
        code = (
            "import os, subprocess\n"
            "os.write(1, b'fd1\\n'); os.write(2, b'fd2\\n')\n"
            "subprocess.run(['echo', 'from-child'])\n"
            "print('py')"
        )
        result = await interp.execute(code)
        assert "fd1" in result.stdout
        assert "from-child" in result.stdout
        assert "py" in result.stdout
        assert "fd2" in result.stderr
        assert (await interp.execute("1 + 1")).value == "2"


async def test_missing_python_is_unavailable_with_the_fix() -> None:
    with pytest.raises(InterpreterUnavailableError, match="python="):
        await SubprocessInterpreter(python="/nonexistent/python3").start()


def test_capabilities_do_not_claim_isolation_it_lacks() -> None:
    caps = SubprocessInterpreter().capabilities
    assert caps.isolation == "process"
    assert caps.network
    assert caps.host_files_visible
    assert shutil.which("python3")

"""The process clauses can fail: backends that leak processes or expose the host are caught.

``Unconfined`` is the subprocess backend as it was before its guests were confined: the guest
is a plain child in its own process group, which ``aclose()`` kills. It claims what the
confined backend claims (``host_env_visible=False``), so the suite must catch both the daemon
that survives the group kill and the host secret it reads through ``/proc``. Each run is a
separate pytest process over a generated module, as a third party would run the suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_conformance.meta import run_suite_module
from rlm_core.bridge.process import local_process_capabilities

BROKEN_BACKENDS = """
from __future__ import annotations

import dataclasses
import os
import sys

import pytest

from rlm_conformance import InterpreterConformance
from rlm_core.bridge.process import LOCAL_PROCESS_CAPABILITIES, open_process_channel
from rlm_core.bridge.protocol import loader_argv
from rlm_subprocess import SubprocessInterpreter


class Unconfined(SubprocessInterpreter):
    # The guest is a plain child process (closing kills only its process group), yet the
    # backend claims the host's environment is out of reach.
    @property
    def capabilities(self):
        return dataclasses.replace(LOCAL_PROCESS_CAPABILITIES, host_env_visible=False)

    async def open_channel(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return await open_process_channel(loader_argv(sys.executable), env=env, cwd=os.getcwd())


class TestUnconfined(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self):
        return Unconfined


class TestConfined(InterpreterConformance):
    @pytest.fixture
    def make_interpreter(self):
        return SubprocessInterpreter
"""

CLAUSES = [
    "test_nothing_the_guest_started_outlives_close",
    "test_host_secret_is_unreachable_through_host_processes",
]


def _run(tmp_path: Path, select: str) -> tuple[dict[tuple[str, str], tuple[str, str]], str]:
    """Run the generated module; return {(class, test): (outcome, message)} and the output."""
    run = run_suite_module(
        BROKEN_BACKENDS,
        tmp_path,
        select=select,
        module_name="test_broken_host_backends.py",
        timeout_s=300,
    )
    return run.outcomes, run.output


@pytest.fixture(scope="module")
def host_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[tuple[str, str], tuple[str, str]], str]:
    select = " or ".join(CLAUSES)
    return _run(tmp_path_factory.mktemp("broken-host"), select)


@pytest.mark.parametrize("clause", CLAUSES)
def test_unconfined_guest_is_caught(
    host_run: tuple[dict[tuple[str, str], tuple[str, str]], str], clause: str
) -> None:
    outcomes, output = host_run
    assert ("TestUnconfined", clause) in outcomes, f"{clause} did not run:\n{output[-3000:]}"
    outcome, message = outcomes["TestUnconfined", clause]
    assert outcome == "failed", f"{clause} did not catch the unconfined guest"
    expected = "still alive after aclose" if "outlives" in clause else "read the host's secret"
    assert expected in message


@pytest.mark.parametrize("clause", CLAUSES)
def test_confined_guest_passes(
    host_run: tuple[dict[tuple[str, str], tuple[str, str]], str], clause: str
) -> None:
    if clause.startswith("test_host_secret") and local_process_capabilities().host_env_visible:
        pytest.skip("this machine allows no PID namespaces: the backend claims no hidden env")
    outcomes, output = host_run
    assert ("TestConfined", clause) in outcomes, f"{clause} did not run:\n{output[-3000:]}"
    outcome, message = outcomes["TestConfined", clause]
    assert outcome == "passed", message

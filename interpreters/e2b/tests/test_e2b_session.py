"""The E2B backend on the real, pinned SDK against the local stand-in: what goes over the wire.

The stand-in records every control-plane request and envd RPC, so these tests pin the exact
sequence a session produces; an SDK upgrade that changes the protocol fails here loudly.
"""

from __future__ import annotations

import pytest

from rlm_conformance.eventloop import loop_gaps
from rlm_conformance.fixtures import context_fixture
from rlm_core.bridge.protocol import bootstrap_frame
from rlm_core.registry import create
from rlm_core.sync import BlockingInterpreter
from rlm_e2b import E2BInterpreter, guest_command
from rlm_e2b.testing import DEBUG_SANDBOX_ID, STANDIN_CAPABILITIES, E2BStandIn

pytestmark = pytest.mark.anyio


standin = context_fixture(E2BStandIn)


async def test_session_rpc_sequence(standin: E2BStandIn) -> None:
    """create, bootstrap, execute with a tool callback, close: one request each, in order."""
    interp = standin.interpreter(
        template="rlm-python",
        timeout_s=120,
        metadata={"job": "t1"},
        envs={"MODE": "x"},
        user="root",
    )
    await interp.start()
    await interp.register({"double": lambda n: 2 * n})
    result = await interp.execute("import os\nprint(double(21), os.environ['MODE'])")
    assert result.stdout == "42 x\n"
    await interp.aclose()

    assert standin.methods(collapse=False) == [
        "POST /v2/sandboxes",  # create
        "Start",  # the guest, in the background with stdin
        "SendInput",  # the boot frame: guest.py itself
        "SendInput",  # register
        "SendInput",  # exec
        "SendInput",  # the tool's reply
        "SendInput",  # shutdown
        "DELETE /sandboxes",  # the sandbox is killed on close
    ]
    create_call, start, boot = standin.calls[:3]
    assert create_call.fields == {
        "templateID": "rlm-python",
        "timeout": 120,
        "metadata": {"job": "t1"},
        "envVars": ["MODE"],
        "allow_internet_access": None,
    }
    assert start.sandbox_id == interp.sandbox_id
    assert start.fields["cmd"] == "/bin/bash"
    assert start.fields["args"] == ["-l", "-c", guest_command("python3")]
    assert start.fields["stdin"] is True
    assert start.fields["user"] == "root"
    assert start.fields["envs"] == ["MODE"]
    assert boot.fields["bytes"] == len(bootstrap_frame())
    assert standin.calls[-1].sandbox_id == interp.sandbox_id
    assert standin.live_sandboxes == []


async def test_debug_mode_makes_no_control_plane_calls(standin: E2BStandIn) -> None:
    """With the SDK's debug mode only envd is used: no create, no kill."""
    interp = E2BInterpreter(**standin.debug_settings(), capabilities=STANDIN_CAPABILITIES)
    async with interp:
        assert (await interp.execute("6 * 7")).value == "42"
    assert interp.sandbox_id == DEBUG_SANDBOX_ID
    assert standin.methods() == ["Start", "SendInput"]


async def test_frames_of_every_length_survive_the_text_only_stdout(standin: E2BStandIn) -> None:
    """The SDK decodes stdout as UTF-8; frame headers holding bytes >= 0x80 must still arrive."""
    async with standin.interpreter() as interp:
        await interp.set_variables({"raw": bytes(range(256))})
        for n in range(0, 400, 7):  # result frames whose length bytes sweep 0x00-0xff
            result = await interp.execute(f"print('é' * {n}, end='')")
            assert result.stdout == "é" * n
        assert (await interp.execute("raw == bytes(range(256))")).value == "True"


async def test_large_input_moves_raw(standin: E2BStandIn) -> None:
    """A 10 MB string crosses in stdin chunks no larger than the configured size."""
    text = "ü" * 5_000_000
    async with standin.interpreter(stdin_chunk_bytes=1 << 20) as interp:
        await interp.set_variables({"big": text})
        assert (await interp.execute("len(big), big[-1]")).value == "(5000000, 'ü')"
    sizes = [c.fields["bytes"] for c in standin.calls_named("SendInput")]
    assert max(sizes) == 1 << 20
    assert sum(sizes) > 10_000_000


async def test_sandbox_io_does_not_block_the_event_loop(standin: E2BStandIn) -> None:
    """While a cell runs in the sandbox, other tasks on the host's loop keep running."""
    async with standin.interpreter() as interp, loop_gaps() as gaps:
        result = await interp.execute("import time; time.sleep(1); 'done'")
    assert result.value == "'done'"
    assert len(gaps) > 20
    assert max(gaps) < 0.8  # a blocking SDK call would stall the loop for the whole second


async def test_close_kills_a_guest_that_does_not_exit(standin: E2BStandIn) -> None:
    """A guest that ignores shutdown is killed with a signal, then the sandbox is deleted."""
    async with standin.interpreter() as interp:
        # A forked child keeps the guest's stdout open, so the command outlives the shutdown.
        await interp.execute(
            "import os, time\nif os.fork() == 0:\n    time.sleep(30)\n    os._exit(0)"
        )
    methods = standin.methods()
    assert methods[-3:] == ["SendInput", "SendSignal", "DELETE /sandboxes"]
    assert standin.calls_named("SendSignal")[0].fields["signal"] == "SIGKILL"
    assert standin.live_sandboxes == []


async def test_registry_spec_builds_a_self_contained_standin_session() -> None:
    """``create('e2b://TEMPLATE?standin=true')`` runs end to end with no credentials."""
    interp = create("e2b://rlm-python?standin=true&timeout_s=900")
    assert isinstance(interp, E2BInterpreter)
    assert (interp.template, interp.timeout_s) == ("rlm-python", 900)
    assert interp.capabilities == STANDIN_CAPABILITIES
    async with interp:
        assert (await interp.execute("1 + 1")).value == "2"


def test_real_e2b_claims_a_microvm_and_follows_the_network_setting() -> None:
    assert E2BInterpreter().capabilities.isolation == "microvm"
    assert E2BInterpreter().capabilities.host_files_visible is False
    assert E2BInterpreter(allow_internet_access=False).capabilities.network is False


def test_blocking_facade_drives_e2b_from_sync_code(standin: E2BStandIn) -> None:
    """Sync callers (scripts, DSPy) use the same async SDK through BlockingInterpreter."""
    with BlockingInterpreter(standin.interpreter()) as repl:
        repl.register({"shout": str.upper})
        assert repl.execute("shout('e2b')").value == "'E2B'"
    assert standin.live_sandboxes == []

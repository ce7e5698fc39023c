"""The Modal backend drives the real, pinned SDK through a whole session against the stand-in.

The exact RPC sequence is asserted so that an SDK upgrade that changes the protocol (a new
control-plane call, line-buffered output, a different exec path) fails here loudly.
"""

from __future__ import annotations

import hashlib
import itertools
import time

import anyio
import pytest
from modal_proto import api_pb2
from modal_proto import task_command_router_pb2 as sr_pb2

from rlm_conformance.eventloop import loop_gaps
from rlm_conformance.fixtures import context_fixture
from rlm_core.bridge.protocol import HEADER, bootstrap_frame, loader_argv
from rlm_modal.testing import ModalStandIn

pytestmark = pytest.mark.anyio

CONTROL_PLANE_START = [
    "AppGetOrCreate",
    "EnvironmentGetOrCreate",
    "ImageGetOrCreate",
    "AuthTokenGet",
    "SandboxCreateV2",
    "TaskExecStart",
]


standin = context_fixture(ModalStandIn)


def split_frames(stream: bytes) -> list[tuple[dict[str, object], int]]:
    """Decode host-to-guest frames: (message, attachment length)."""
    import json

    frames = []
    offset = 0
    while offset < len(stream):
        json_len, blob_len = HEADER.unpack_from(stream, offset)
        body = stream[offset + HEADER.size : offset + HEADER.size + json_len]
        frames.append((json.loads(body), blob_len))
        offset += HEADER.size + json_len + blob_len
    return frames


async def test_session_makes_exactly_the_expected_rpcs(
    standin: ModalStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Create, bootstrap, execute with a tool callback, close: every RPC, in order."""
    # The SDK looks the environment up once per process; start cold, like a fresh process.
    monkeypatch.setattr("modal._environments.ENVIRONMENT_CACHE", {})
    looked_up: list[str] = []

    def lookup(key: str) -> str:
        looked_up.append(key)
        return key.upper()

    interp = standin.interpreter(cpu=0.5, memory=256, timeout=120)
    await interp.start()
    await interp.register({"lookup": lookup})
    result = await interp.execute("print(lookup('abc'))", timeout=30)
    sandbox_id = interp.sandbox_id
    await interp.aclose()

    assert result.stdout == "ABC\n"
    assert looked_up == ["abc"]
    methods = standin.methods()
    assert methods[: len(CONTROL_PLANE_START)] == CONTROL_PLANE_START
    assert methods[-1] == "SandboxTerminateV2"
    # The two output pumps and the writes interleave in any order; how many there are is fixed:
    # one stream each for stdout and stderr, one stdin write per frame sent.
    middle = methods[len(CONTROL_PLANE_START) : -1]
    assert sorted(middle) == ["TaskExecStdinWrite"] * 5 + ["TaskExecStdioRead"] * 2

    calls = standin.calls
    create = next(c.request for c in calls if c.method == "SandboxCreateV2")
    assert create.definition.timeout_secs == 120
    assert create.definition.resources.milli_cpu == 500
    assert create.definition.resources.memory_mb == 256
    assert create.definition.network_access.network_access_type == api_pb2.NetworkAccess.BLOCKED

    start = next(c.request for c in calls if c.method == "TaskExecStart")
    assert list(start.command_args) == loader_argv("python3")
    assert start.stdout_config == sr_pb2.TaskExecStdoutConfig.TASK_EXEC_STDOUT_CONFIG_PIPE

    reads = [c.request for c in calls if c.method == "TaskExecStdioRead"]
    assert {r.file_descriptor for r in reads} == {
        sr_pb2.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT,
        sr_pb2.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR,
    }
    assert all(r.offset == 0 and r.exec_id == start.exec_id for r in reads)

    writes = [c.request for c in calls if c.method == "TaskExecStdinWrite"]
    offsets = [w.offset for w in writes]
    assert offsets == sorted(offsets)
    assert offsets[0] == 0
    assert all(a.offset + len(a.data) == b.offset for a, b in itertools.pairwise(writes))
    stdin = b"".join(w.data for w in writes)
    assert stdin.startswith(bootstrap_frame())
    kinds = [message["t"] for message, _ in split_frames(stdin)]
    assert kinds == ["boot", "register", "exec", "reply", "shutdown"]

    terminate = calls[-1].request
    assert terminate.sandbox_id == sandbox_id
    assert standin.running_sandbox_ids() == []


async def test_binary_data_survives_both_directions(standin: ModalStandIn) -> None:
    """Every byte value and CR/LF/NUL pass unchanged: the exec streams are bytes, not text."""
    blob = bytes(range(256)) * 4096
    text = "é\r\n\x00 ☃ " * 10_000
    async with standin.interpreter() as interp:
        await interp.set_variables({"blob": blob, "text": text})
        result = await interp.execute(
            "import hashlib\n"
            "print('a\\r\\nb é\\x00', end='')\n"
            "hashlib.sha256(blob).hexdigest(), hashlib.sha256(text.encode()).hexdigest()",
            timeout=30,
        )
    assert result.error is None
    assert result.stdout == "a\r\nb é\x00"
    expected = (hashlib.sha256(blob).hexdigest(), hashlib.sha256(text.encode()).hexdigest())
    assert result.value == repr(expected)


async def test_large_variable_moves_in_bounded_stdin_writes(standin: ModalStandIn) -> None:
    """A 10 MB input crosses as raw bytes in 1 MiB stdin RPCs (the SDK buffers at most 16)."""
    async with standin.interpreter() as interp:
        await interp.set_variables({"ctx": "x" * 10_000_000})
        assert (await interp.execute("len(ctx)", timeout=30)).value == "10000000"
    sizes = [len(c.request.data) for c in standin.calls if c.method == "TaskExecStdinWrite"]
    assert max(sizes) == 1 << 20
    assert sum(sizes) > 10_000_000


async def test_sandbox_io_does_not_block_the_event_loop(standin: ModalStandIn) -> None:
    """While a cell sleeps in the sandbox, other tasks on the host's loop keep running."""
    async with standin.interpreter() as interp, loop_gaps(0.05) as gaps:
        started = time.perf_counter()
        result = await interp.execute("import time; time.sleep(1)", timeout=30)
        elapsed = time.perf_counter() - started
    assert result.error is None
    # A blocked loop would tick once or not at all; allow generous slack on a busy machine.
    assert len(gaps) >= int(elapsed / 0.05) // 3


async def test_timed_out_cell_is_interrupted_and_the_session_survives(
    standin: ModalStandIn,
) -> None:
    """The interrupt frame travels over the exec's stdin; globals survive the timeout."""
    async with standin.interpreter() as interp:
        await interp.execute("kept = 41", timeout=30)
        timed_out = await interp.execute("while True: pass", timeout=0.5)
        after = await interp.execute("kept + 1", timeout=30)
    assert timed_out.timed_out
    assert after.value == "42"


async def test_each_interpreter_gets_its_own_sandbox(standin: ModalStandIn) -> None:
    """Concurrent sessions run in separate sandboxes that share nothing, and all are closed."""
    interps = [standin.interpreter() for _ in range(3)]
    async with anyio.create_task_group() as group:
        for interp in interps:
            group.start_soon(interp.start)
    try:
        for n, interp in enumerate(interps):
            await interp.execute(f"mine = {n}", timeout=30)
        values = [(await i.execute("mine", timeout=30)).value for i in interps]
    finally:
        for interp in interps:
            await interp.aclose()
    assert values == ["0", "1", "2"]
    assert len({i.sandbox_id for i in interps}) == 3
    assert standin.running_sandbox_ids() == []

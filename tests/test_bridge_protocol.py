"""The host refuses anything malformed a guest sends, and ends the session cleanly."""

from __future__ import annotations

import json
import struct

import anyio
import pytest

from rlm_core.bridge.guest import HEADER, PROTOCOL_VERSION, encode_frame
from rlm_core.bridge.session import ChannelInterpreter, GuestChannel
from rlm_core.errors import BridgeProtocolError, GuestRefusedError, SessionError, SessionLostError
from rlm_core.interpreter import Capabilities

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


READY = encode_frame({"t": "ready", "protocol": PROTOCOL_VERSION})


class ScriptedChannel:
    """Plays back canned guest output, one reply per host frame after the boot frame."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = list(replies)
        self.sent: list[bytes] = []
        self.closed = False
        self._pending = bytearray()
        self._event = anyio.Event()

    async def send(self, data: bytes | memoryview) -> None:
        self.sent.append(bytes(data))
        if self.replies:
            self._pending += self.replies.pop(0)
            self._event.set()

    async def receive(self) -> bytes:
        while not self._pending:
            if self.closed or (not self.replies and not self._pending and self._eof):
                return b""
            self._event = anyio.Event()
            await self._event.wait()
        data = bytes(self._pending)
        self._pending.clear()
        return data

    _eof = False

    async def aclose(self) -> None:
        self.closed = True
        self._event.set()

    def diagnostics(self) -> str:
        return "scripted channel"


class Scripted(ChannelInterpreter):
    start_timeout_s = 2.0

    def __init__(self, channel: ScriptedChannel) -> None:
        super().__init__()
        self.channel = channel

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            isolation="process",
            network=False,
            writable_filesystem=False,
            survives_timeout=True,
            max_variable_bytes=None,
        )

    async def open_channel(self) -> GuestChannel:
        return self.channel


def result_frame(exec_id: int = 1, **overrides: object) -> bytes:
    message: dict[str, object] = {
        "t": "result",
        "id": exec_id,
        "stdout": "",
        "stderr": "",
        "stdout_chars": 0,
        "stderr_chars": 0,
        "value": None,
        "error": None,
        "submitted": None,
        "truncated": False,
        "timed_out": False,
    }
    message.update(overrides)
    return encode_frame(message)


async def run_exec(reply: bytes) -> Scripted:
    interp = Scripted(ScriptedChannel([READY, reply]))
    await interp.start()
    return interp


async def test_well_formed_result_is_accepted() -> None:
    interp = await run_exec(result_frame(stdout="hi\n", stdout_chars=3, guest_duration_s=0.25))
    result = await interp.execute("print('hi')")
    assert result.stdout == "hi\n"
    assert result.extra == {"guest_duration_s": 0.25}  # the guest's own timing, kept apart
    await interp.aclose()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (encode_frame({"t": "bogus"}), "unknown message type"),
        (result_frame(exec_id=99), "unexpected 'result'"),
        (result_frame(stdout=5), "invalid 'stdout'"),
        (result_frame(stdout_chars=True), "invalid 'stdout_chars'"),
        (result_frame(submitted=[1, 2]), "invalid 'submitted'"),
        (result_frame(guest_duration_s="soon"), "invalid 'guest_duration_s'"),
        (result_frame(error={"type": "X"}), "invalid 'message'"),
        (HEADER.pack(5, 0) + b"nope!", "not JSON"),
        (HEADER.pack(4, 0) + b"[1 ]", "not a JSON object"),
        (HEADER.pack(2, 3) + b"{}abc", "attachment"),
        (HEADER.pack(2**31, 0), "limit"),
        (encode_frame({"t": "call", "id": "x", "name": "f", "args": [], "kwargs": {}}), "'id'"),
    ],
)
async def test_malformed_guest_messages_end_the_session(reply: bytes, expected: str) -> None:
    interp = await run_exec(reply)
    with pytest.raises(BridgeProtocolError, match=expected):
        await interp.execute("1")
    assert interp.channel.closed
    with pytest.raises(SessionError):
        await interp.execute("1")


async def test_wrong_protocol_version_is_refused_at_start() -> None:
    channel = ScriptedChannel([encode_frame({"t": "ready", "protocol": PROTOCOL_VERSION + 1})])
    with pytest.raises(BridgeProtocolError, match="expected protocol"):
        await Scripted(channel).start()
    assert channel.closed


async def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    interp = await run_exec(struct.pack(">IQ", 500_000_000, 0))
    with pytest.raises(BridgeProtocolError, match="500,000,000-byte frame"):
        await interp.execute("1")


async def test_guest_that_never_announces_itself_is_lost() -> None:
    channel = ScriptedChannel([b""])
    interp = Scripted(channel)
    interp.start_timeout_s = 0.2
    with pytest.raises(SessionLostError, match="did not start"):
        await interp.start()


async def test_eof_mid_cell_is_session_lost_with_diagnostics() -> None:
    channel = ScriptedChannel([READY, b""])
    channel._eof = True
    interp = Scripted(channel)
    await interp.start()
    with pytest.raises(SessionLostError, match="scripted channel"):
        await interp.execute("1")


async def test_call_to_unknown_tool_gets_a_name_error_reply() -> None:
    call = encode_frame({"t": "call", "id": 7, "name": "nope", "args": [], "kwargs": {}})
    channel = ScriptedChannel([READY, call, result_frame()])
    interp = Scripted(channel)
    await interp.start()
    await interp.execute("nope()")
    reply = channel.sent[-1]
    json_len, _ = HEADER.unpack_from(reply)
    body = json.loads(reply[HEADER.size : HEADER.size + json_len])
    assert body == {
        "t": "reply",
        "id": 7,
        "ok": False,
        "error": {"type": "NameError", "message": "no host tool 'nope'"},
    }


async def test_unencodable_string_is_refused_before_anything_is_sent() -> None:
    channel = ScriptedChannel([READY])
    interp = Scripted(channel)
    await interp.start()
    sent_before = len(channel.sent)
    with pytest.raises(TypeError, match="not valid Unicode"):
        await interp.set_variables({"ok": "fine", "bad": "x\ud800y"})
    # Past the first 4 MiB piece the text is measured in, the index is still the text's own.
    far = 5 * 1024 * 1024
    with pytest.raises(TypeError, match=f"at index {far}\\)"):
        await interp.set_variables({"bad": "é" + "x" * (far - 1) + "\ud800"})
    assert len(channel.sent) == sent_before
    await interp.aclose()


async def test_tool_result_over_the_frame_limit_is_a_guest_error_not_a_lost_session() -> None:
    from rlm_subprocess import SubprocessInterpreter

    interp = SubprocessInterpreter()
    interp.max_frame_bytes = 100_000
    async with interp:
        await interp.register({"big": lambda n: "x" * n})
        result = await interp.execute("big(200_000)")
        assert result.error is not None
        assert result.error.type == "ValueError"
        assert "frame limit" in result.error.message
        assert (await interp.execute("len(big(1000))")).value == "1000"


async def test_a_result_over_the_frame_limit_is_an_error_and_the_session_goes_on() -> None:
    from rlm_subprocess import SubprocessInterpreter

    interp = SubprocessInterpreter()
    interp.max_frame_bytes = 100_000
    async with interp:
        result = await interp.execute("SUBMIT('x' * 200_000)")
        assert result.submitted is None
        assert result.error is not None
        assert result.error.type == "ValueError"
        assert "too large to return" in result.error.message
        assert (await interp.execute("1 + 1")).value == "2"


async def test_a_guest_that_cannot_bind_a_variable_keeps_its_error_type() -> None:
    """A guest's refusal (a MemoryError binding an input) is a session error with its type."""
    refusal = encode_frame(
        {"t": "done", "id": 1, "error": {"type": "MemoryError", "message": "out of memory"}}
    )
    interp = await run_exec(refusal)
    with pytest.raises(GuestRefusedError) as caught:
        await interp.set_variables({"context": "x" * 1000})
    assert caught.value.guest_type == "MemoryError"
    assert "could not bind the variables: MemoryError: out of memory" in str(caught.value)
    assert interp.channel.closed  # what the guest holds after a half-done bind is unknown
    with pytest.raises(SessionError, match="could not bind"):
        await interp.execute("1")


async def test_a_refusal_without_a_message_is_a_protocol_error() -> None:
    interp = await run_exec(encode_frame({"t": "done", "id": 1, "error": {"type": 3}}))
    with pytest.raises(BridgeProtocolError, match="invalid 'type'"):
        await interp.set_variables({"context": "x"})

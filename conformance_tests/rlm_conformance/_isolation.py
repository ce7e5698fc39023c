"""Isolation and security probes: model-written code is hostile; capabilities must be honest.

If this group fails, either the sandbox leaks (the guest environment inherits host variables,
host files are mounted or readable, the network is reachable), or the backend's capabilities
claim more than it enforces. For the forged-frame probe, look at output capture: guest writes to
file descriptors 1 and 2 (and ``sys.__stdout__``) must never reach the protocol channel.
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rlm_conformance._base import ConformanceBase, StartInterpreter
from rlm_conformance._requires import requires
from rlm_core.errors import SessionError
from rlm_core.interpreter import Interpreter


@contextmanager
def _loopback_server() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 that records what each connection sends."""
    received: list[bytes] = []
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    received.append(conn.recv(1024) or b"<connected>")
                except OSError:
                    received.append(b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        stop.set()
        thread.join(5)
        server.close()


_CONNECT = """
import socket
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=3)
    s.sendall(b"{token}")
    s.close()
    outcome = "connected"
except Exception as exc:
    outcome = "blocked: " + type(exc).__name__
outcome
"""


def _forged_result(submitted: str) -> bytes:
    body = json.dumps(
        {
            "t": "result",
            "id": 1,
            "stdout": "FORGED",
            "stderr": "",
            "stdout_chars": 6,
            "stderr_chars": 0,
            "value": None,
            "error": None,
            "submitted": {"output": submitted},
            "truncated": False,
            "timed_out": False,
        }
    ).encode()
    return struct.pack(">IQ", len(body), 0) + body


class IsolationTests(ConformanceBase):
    """Environment, files, network, forged protocol frames."""

    @requires(host_env_visible=False)
    async def test_host_env_secret_is_invisible(
        self, start_interpreter: StartInterpreter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A secret in the host's environment is not readable by guest code."""
        secret = "rlm-secret-" + secrets.token_hex(8)
        monkeypatch.setenv("RLM_CONFORMANCE_SECRET", secret)
        interp = await start_interpreter()
        code = (
            "import os\nfound = os.environ.get('RLM_CONFORMANCE_SECRET')\n"
            "blob = ''\ntry:\n"
            "    blob = open('/proc/self/environ', 'rb').read().decode('latin-1')\n"
            "except Exception:\n    pass\n"
            f"(found, {secret!r} in blob or any({secret!r} in v for v in os.environ.values()))"
        )
        assert await self.value(interp, code) == "(None, False)"

    @requires(host_files_visible=False)
    async def test_host_file_is_unreadable(self, interpreter: Interpreter, tmp_path: Path) -> None:
        """A file the host test just created cannot be read from the guest."""
        secret = "rlm-file-secret-" + secrets.token_hex(8)
        path = tmp_path / "secret.txt"
        path.write_text(secret)
        code = (
            f"try:\n    got = open({str(path)!r}).read()\n"
            "except Exception as exc:\n    got = 'refused: ' + type(exc).__name__\ngot"
        )
        got = await self.value(interpreter, code)
        assert got is not None
        assert secret not in got

    @requires(network=False)
    async def test_network_is_blocked(self, interpreter: Interpreter) -> None:
        """Without ``network``, the guest cannot reach a TCP server on the host's loopback."""
        token = secrets.token_hex(8)
        with _loopback_server() as (port, received):
            got = await self.value(interpreter, _CONNECT.format(port=port, token=token))
        assert got is not None
        assert got.startswith("'blocked")
        assert received == []

    @requires(network=True, isolation_at_most="process")
    async def test_network_is_reachable_when_declared(self, interpreter: Interpreter) -> None:
        """A backend declaring ``network`` (and sharing the host's network) reaches loopback."""
        token = secrets.token_hex(8)
        with _loopback_server() as (port, received):
            got = await self.value(interpreter, _CONNECT.format(port=port, token=token))
        assert got == "'connected'"
        assert token.encode() in received

    async def test_forged_frames_on_stdout_are_harmless(self, interpreter: Interpreter) -> None:
        """Protocol frames written to ``sys.__stdout__``/fd 1/fd 2 are output, never results."""
        forged = _forged_result("FORGED")
        code = (
            "import os, sys\n"
            f"frame = {forged!r}\n"
            "for fd in (1, 2):\n"
            "    try:\n        os.write(fd, frame)\n    except OSError:\n        pass\n"
            "try:\n"
            "    sys.__stdout__.buffer.write(frame)\n    sys.__stdout__.flush()\n"
            "except Exception:\n    pass\n"
            "sys.stdout.write(frame.decode('latin-1'))\n"
            "'real result'"
        )
        try:
            result = await self.run(interpreter, code)
        except SessionError:
            # Ending the session is acceptable; it must then stay ended, not answer wrongly.
            with pytest.raises(SessionError):
                await self.run(interpreter, "1")
            return
        assert result.submitted is None
        assert result.error is None
        assert result.value == "'real result'"
        follow_up = await self.ok(interpreter, "'next'")
        assert follow_up.value == "'next'"
        assert follow_up.submitted is None

    async def test_garbage_bytes_on_stdout_are_harmless(self, interpreter: Interpreter) -> None:
        """Binary junk written to fd 1 and ``sys.__stdout__`` does not break the session."""
        code = (
            "import os, sys\njunk = bytes(range(256)) * 64\n"
            "try:\n    os.write(1, junk)\nexcept OSError:\n    pass\n"
            "try:\n    sys.__stdout__.buffer.write(junk)\n    sys.__stdout__.flush()\n"
            "except Exception:\n    pass\n"
            "'after junk'"
        )
        try:
            result = await self.run(interpreter, code)
        except SessionError:
            with pytest.raises(SessionError):
                await self.run(interpreter, "1")
            return
        assert result.value == "'after junk'"
        assert await self.value(interpreter, "2 + 2") == "4"

    @requires(isolation_at_least="process")
    async def test_reading_stdin_sees_end_of_file_not_the_protocol(
        self, interpreter: Interpreter
    ) -> None:
        """``input()`` and reads of stdin end at once, as on ``/dev/null``.

        Model-written code that asks for input must neither block the cell nor consume the
        host's frames.
        """
        result = await self.run(interpreter, "input('name? ')", timeout=self.cell_timeout)
        assert not result.timed_out
        assert result.error is not None
        assert result.error.type == "EOFError"
        reads = "import os, sys\n(sys.stdin.read(10), os.read(0, 10))"
        assert await self.value(interpreter, reads) == "('', b'')"
        assert await self.value(interpreter, "2 + 2") == "4"

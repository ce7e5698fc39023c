"""Robustness: ordinary and hostile programs that must neither break the protocol nor the session.

If this group fails, look at the guest runtime's driver (``rlm_core/bridge/guest.py``): tool
replies must reach the thread that made the call, a forked child must never write a frame, a
value or error too large for a frame must come back as a code error, and the capture must
accept bytes like real stdio. On a WebAssembly guest, look at what the JavaScript runtime
leaves reachable (entropy sources, ``js.process``).
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any, ClassVar

import anyio

from rlm_conformance._base import ConformanceBase
from rlm_conformance._requires import requires
from rlm_core.interpreter import Interpreter

_SYNC_MARKER = "rlm-sync"

# Starts `count` threads that each run `body(i)` and records, per thread, what it returned or
# the exception it raised. A guest that cannot start threads (Pyodide) reports that instead.
_THREADS = """
import threading
outcomes = {}
def _run(i):
    try:
        outcomes[i] = body(i)
    except BaseException as exc:
        outcomes[i] = exc
threads = [threading.Thread(target=_run, args=(i,)) for i in range(COUNT)]
try:
    for t in threads:
        t.start()
except RuntimeError as exc:
    no_threads = str(exc) or 'no threads'
else:
    no_threads = None
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.05)
"""


def _keyword_only(*, key: str) -> str:
    return f"kw:{key}"


def _lookup(key: str) -> str:
    return f"fruit:{key}"


@functools.wraps(_lookup)
def _wrapped_lookup(**kwargs: Any) -> Any:  # how DSPy wraps every tool: keywords only
    return _lookup(**kwargs)


class RobustnessTests(ConformanceBase):
    """Entropy, guest threads and fork, oversized results, bytes output, keyword tool calls."""

    thread_count: ClassVar[int] = 16
    """How many guest threads call a host tool at once."""
    thread_tool_calls: ClassVar[int] = 300
    """How many calls each of those threads makes."""
    huge_error_chars: ClassVar[int] = 200_000_000
    """The length of the exception message a cell raises in the oversized-error test."""
    huge_submit_chars: ClassVar[int] = 300_000_000
    """The length of the string a cell submits in the oversized-SUBMIT test."""
    deep_nesting: ClassVar[int] = 100_000
    """How deeply nested the list is that a cell submits in the deep-SUBMIT test."""

    # ---- entropy -------------------------------------------------------------------------

    async def test_entropy_sources_return_values(self, interpreter: Interpreter) -> None:
        """``os.urandom``, ``uuid.uuid4``, ``secrets``, ``random.seed``, ``SystemRandom`` work."""
        result = await self.ok(
            interpreter,
            "import os, uuid, secrets, random\n"
            "random.seed()\n"
            "print(len(os.urandom(8)), len(str(uuid.uuid4())), len(secrets.token_hex(4)),"
            " 0 <= random.SystemRandom().random() < 1, os.urandom(8) != os.urandom(8))",
        )
        assert result.stdout == "8 36 8 True True\n"
        assert await self.value(interpreter, "'still here'") == "'still here'"

    @requires(writable_filesystem=True)
    async def test_temporary_files_can_be_made(self, interpreter: Interpreter) -> None:
        """``tempfile.mkstemp`` (random names from the OS's entropy) returns a usable file."""
        result = await self.ok(
            interpreter,
            "import os, tempfile\n"
            "fd, path = tempfile.mkstemp()\n"
            "os.write(fd, b'kept')\n"
            "os.close(fd)\n"
            "with open(path) as kept:\n"
            "    print(kept.read())\n"
            "os.unlink(path)",
        )
        assert result.stdout == "kept\n"

    # ---- threads and fork ----------------------------------------------------------------

    async def test_threads_each_get_their_own_tool_reply(self, interpreter: Interpreter) -> None:
        """Guest threads calling a host tool at once each get the reply to their own call.

        A guest that cannot start threads at all (Pyodide) must say so with ``RuntimeError``
        and keep working.
        """

        def square(n: int) -> int:
            return n * n

        await interpreter.register({"square": square})
        calls = self.thread_tool_calls
        code = (
            f"COUNT = {self.thread_count}\n"
            "def body(i):\n"
            f"    base = i * {calls}\n"
            f"    return sum(1 for n in range(base, base + {calls}) if square(n) == n * n)\n"
            + _THREADS
            + "print(no_threads or sorted(outcomes.items()))"
        )
        result = await self.run(interpreter, code, timeout=max(self.cell_timeout, 120.0))
        assert result.error is None, f"the cell failed:\n{result.error}"
        expected = str(sorted((i, calls) for i in range(self.thread_count)))
        if not result.stdout.startswith("["):
            assert "thread" in result.stdout, result.stdout
        else:
            assert result.stdout == expected + "\n"
        assert await self.value(interpreter, "square(7)") == "49"

    @requires(survives_timeout=True)
    async def test_timeout_while_a_thread_waits_on_a_tool_keeps_the_session(
        self, interpreter: Interpreter
    ) -> None:
        """A cell timed out while a guest thread waits for a tool reply keeps the session."""

        async def slow() -> str:
            await anyio.sleep(3.0)
            return "late"

        await interpreter.register({"slow": slow})
        await self.ok(interpreter, "kept = 'yes'")
        code = (
            "import threading\n"
            "def wait():\n"
            "    try:\n"
            "        slow()\n"
            "    except BaseException:\n"
            "        pass\n"
            "waiter = threading.Thread(target=wait)\n"
            "try:\n"
            "    waiter.start()\n"
            "except RuntimeError:\n"
            "    print('no threads')\n"
            "else:\n"
            "    while True:\n"
            "        waiter.join(0.05)"
        )
        result = await self.run(interpreter, code, timeout=self.timeout_probe_s)
        if result.stdout != "no threads\n":  # a guest without threads has nothing to test here
            assert result.timed_out, f"expected a timeout, got {result.error}"
        for _ in range(2):
            assert await self.value(interpreter, "kept") == "'yes'"

    @requires(isolation_at_least="process")
    async def test_forked_child_never_reaches_the_host(self, interpreter: Interpreter) -> None:
        """A child forked in a cell that runs the cell to its end sends nothing to the host.

        The parent's result is the cell's result, no protocol marker leaks into the output,
        and the session keeps working.
        """
        code = (
            "import os, sys\n"
            "try:\n"
            "    pid = os.fork()\n"
            "except (AttributeError, OSError):  # no fork here (WebAssembly)\n"
            "    pid = -1\n"
            "if pid == 0:\n"
            "    print('from the child')\n"
            "    sys.stdout.flush()\n"
            "    SUBMIT('child')\n"
            "if pid > 0:\n"
            "    os.waitpid(pid, 0)\n"
            "print('from the parent')"
        )
        result = await self.ok(interpreter, code)
        assert result.submitted is None
        assert "from the parent" in result.stdout
        for text in (result.stdout, result.stderr):
            assert _SYNC_MARKER not in text, repr(text[-300:])
            assert "\x00" not in text, repr(text[-300:])
        result = await self.ok(interpreter, "print('next')\n1 + 1")
        assert (result.stdout, result.value) == ("next\n", "2")
        for text in (result.stdout, result.stderr):
            assert _SYNC_MARKER not in text, repr(text[-300:])
            assert "\x00" not in text, repr(text[-300:])

    # ---- oversized things ------------------------------------------------------------------

    async def test_huge_exception_message_is_a_code_error(self, interpreter: Interpreter) -> None:
        """An exception with a message of hundreds of MB comes back as a bounded code error."""
        result = await self.run(interpreter, f"raise ValueError('x' * {self.huge_error_chars})")
        assert result.error is not None
        assert result.error.type == "ValueError"
        assert result.error.message.startswith("xxx")
        assert len(result.error.message) < 10_000_000
        assert len(result.error.traceback) < 10_000_000
        assert await self.value(interpreter, "'still here'") == "'still here'"

    async def test_deeply_nested_submit_is_a_code_error(self, interpreter: Interpreter) -> None:
        """SUBMIT of a value nested far deeper than JSON allows is a code error, not a crash."""
        result = await self.run(
            interpreter,
            f"value = []\nfor _ in range({self.deep_nesting}):\n    value = [value]\nSUBMIT(value)",
        )
        assert result.submitted is None
        assert result.error is not None, "a value nested this deep cannot be returned"
        assert "nested" in result.error.message, result.error.message
        assert await self.value(interpreter, "'still here'") == "'still here'"

    async def test_oversized_submit_is_a_code_error(self, interpreter: Interpreter) -> None:
        """SUBMIT of a value larger than a frame is a code error that says so."""
        result = await self.run(interpreter, f"SUBMIT('y' * {self.huge_submit_chars})")
        assert result.submitted is None
        assert result.error is not None, "a value this large cannot be returned"
        assert "too large" in result.error.message, result.error.message
        assert await self.value(interpreter, "'still here'") == "'still here'"

    # ---- capture -------------------------------------------------------------------------

    async def test_bytes_written_to_the_std_streams_are_captured(
        self, interpreter: Interpreter
    ) -> None:
        """``sys.stdout.buffer`` and ``sys.stderr.buffer`` accept bytes, captured as text."""
        result = await self.ok(
            interpreter,
            "import sys\n"
            "sys.stdout.buffer.write('bytes out é\\n'.encode())\n"
            "sys.stdout.buffer.flush()\n"
            "sys.stderr.buffer.write(b'bytes err\\n')\n"
            "sys.stdout.write('text out\\n')",
        )
        assert result.stdout == "bytes out é\ntext out\n"
        assert result.stderr == "bytes err\n"

    @requires(host_files_visible=False)
    async def test_host_paths_are_not_visible(self, interpreter: Interpreter) -> None:
        """Neither the host's working directory nor its home path is readable inside.

        Includes what a JavaScript runtime leaves reachable (``from js import process``).
        """
        result = await self.ok(
            interpreter,
            "import os\n"
            "seen = [os.getcwd(), os.path.expanduser('~'), str(os.environ)]\n"
            "try:\n"
            "    from pyodide.code import run_js\n"
            "except ImportError:\n"
            "    pass\n"
            "else:\n"
            "    for probe in ('process.cwd()', 'process.argv', 'process.execPath',\n"
            "                  'JSON.stringify(process.env)', 'process.execArgv'):\n"
            "        try:\n"
            "            seen.append(str(run_js('String(' + probe + ')')))\n"
            "        except Exception:\n"
            "            pass\n"
            "print(seen)",
        )
        home = str(pathlib.Path.home())
        for private in {os.getcwd(), home} - {"/", ""}:
            assert private not in result.stdout, f"{private!r} is visible: {result.stdout[:500]}"

    # ---- keyword arguments -----------------------------------------------------------------

    async def test_keyword_arguments_reach_tools_as_keywords(
        self, interpreter: Interpreter
    ) -> None:
        """Keywords arrive as keywords: keyword-only and ``functools.wraps`` tools both work."""
        await interpreter.register({"exact": _keyword_only, "lookup": _wrapped_lookup})
        result = await self.ok(interpreter, "print(exact(key='a'), lookup(key='apple'))")
        assert result.stdout == "kw:a fruit:apple\n"

"""E2BInterpreter: the bridge's guest in an E2B cloud sandbox, driven by the async ``e2b`` SDK."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from rlm_core.bridge.protocol import loader_argv
from rlm_core.bridge.session import ChannelInterpreter, GuestChannel
from rlm_core.errors import (
    BridgeProtocolError,
    ConfigError,
    InterpreterUnavailableError,
    SessionLostError,
)
from rlm_core.interpreter import Capabilities

if TYPE_CHECKING:
    from e2b import AsyncSandbox
    from e2b.sandbox_async.commands.command_handle import AsyncCommandHandle

__all__ = ["E2BInterpreter"]

_INSTALL_HINT = 'pip install "rlmbox[e2b]" (it pins e2b==2.63.0)'
_STDERR_TAIL = 4000
_MAX_LINE_CHARS = 1 << 20

# envd's command API hands stdout to the SDK as bytes, but the SDK's AsyncCommandHandle decodes
# it as UTF-8 with errors="replace" before any callback sees it, which would corrupt the
# protocol's binary frame headers. So the guest runs under this stdlib-only wrapper (Python
# 3.8+): it relays the guest's stdout as base64 lines, which survive that decoding unchanged.
# It is a separate process so that nothing the guest does to its own process (os._exit, closed
# fds, signals) can drop bytes the wrapper already read. It exits with the guest's status.
_STDOUT_ENCODER = """\
import base64, os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
fd = p.stdout.fileno()
while True:
    data = os.read(fd, 49152)
    if not data:
        break
    out = memoryview(base64.b64encode(data) + b"\\n")
    while out:
        out = out[os.write(1, out):]
code = p.wait()
sys.exit(code if code >= 0 else 128 - code)
"""


def guest_command(python: str = "python3") -> str:
    """The shell command that starts the guest in the sandbox, behind the stdout encoder."""
    return "exec " + shlex.join([python, "-I", "-c", _STDOUT_ENCODER, *loader_argv(python)])


class E2BChannel:
    """A :class:`~rlm_core.bridge.session.GuestChannel` over a background E2B command.

    ``send`` is ``commands.send_stdin``; ``receive`` yields the command's stdout, decoded from
    the wrapper's base64 lines; ``aclose`` kills the command and then the sandbox.
    """

    exit_grace_s: float = 0.5
    """How long ``aclose`` waits for the guest to exit by itself before killing it."""

    def __init__(self, sandbox: AsyncSandbox, *, stdin_chunk_bytes: int, request_timeout_s: float):
        self.sandbox = sandbox
        self._chunk = stdin_chunk_bytes
        self._request_timeout = request_timeout_s
        self._handle: AsyncCommandHandle[Any] | None = None
        self._pending = ""
        self._chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._stderr = ""
        self._watcher: asyncio.Task[None] | None = None
        self._ended: str | None = None
        self._send_error: str | None = None
        self._kill_error: str | None = None
        self._closed = False
        self.exit_code: int | None = None

    # ---- wiring (the SDK's callbacks run in its event task, one at a time) -------------

    def on_stdout(self, text: str) -> None:
        """Collect base64 lines from the command's stdout."""
        self._pending += text
        if "\n" not in self._pending:
            if len(self._pending) > _MAX_LINE_CHARS:  # the encoder's lines are 64K; this is not
                self._pending = ""
                self._chunks.put_nowait(
                    BridgeProtocolError("the sandbox's stdout sent an over-long unencoded line")
                )
            return
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            try:
                self._chunks.put_nowait(base64.b64decode(line, validate=True))
            except (binascii.Error, ValueError):
                self._chunks.put_nowait(
                    BridgeProtocolError(
                        f"the sandbox's stdout carried something other than the guest's "
                        f"encoded frames: {line[:80]!r}"
                    )
                )

    def on_stderr(self, text: str) -> None:
        """Keep the tail of the guest's stderr for error messages."""
        self._stderr = (self._stderr + text)[-_STDERR_TAIL:]

    def attach(self, handle: AsyncCommandHandle[Any]) -> None:
        """Follow the started command until it ends."""
        self._handle = handle
        self._watcher = asyncio.get_running_loop().create_task(self._watch(handle))

    async def _watch(self, handle: AsyncCommandHandle[Any]) -> None:
        from e2b.sandbox.commands.command_handle import CommandExitException

        try:
            result = await handle.wait()
            self.exit_code = result.exit_code
            self._ended = f"the guest exited with code {result.exit_code}"
        except CommandExitException as exc:
            self.exit_code = exc.exit_code
            self._ended = f"the guest exited with code {exc.exit_code}"
            if exc.error:
                self._ended += f" ({exc.error})"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the SDK's stream failed: the sandbox is gone or unreachable
            self._ended = f"the sandbox connection failed: {type(exc).__name__}: {exc}"
        finally:
            self._chunks.put_nowait(b"")

    # ---- GuestChannel ------------------------------------------------------------------

    async def send(self, data: bytes | memoryview) -> None:
        """Write to the guest's stdin in chunks of at most ``stdin_chunk_bytes``."""
        assert self._handle is not None
        view = memoryview(data)
        try:
            for offset in range(0, len(view), self._chunk):
                await self.sandbox.commands.send_stdin(
                    self._handle.pid,
                    bytes(view[offset : offset + self._chunk]),
                    request_timeout=self._request_timeout,
                )
        except Exception as exc:
            self._send_error = f"{type(exc).__name__}: {exc}"
            raise

    async def receive(self) -> bytes:
        """The next decoded bytes of the guest's stdout; ``b""`` once the command ended."""
        item = await self._chunks.get()
        if isinstance(item, BaseException):
            raise item
        if not item:
            self._chunks.put_nowait(b"")  # stay at end of stream for later readers
        return item

    async def aclose(self) -> None:
        """Kill the command, then the sandbox; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            handle = self._handle
            if self._watcher is not None and self._ended is None:
                # A guest told to shut down exits within milliseconds; a kill is for the rest.
                await asyncio.wait({self._watcher}, timeout=self.exit_grace_s)
            if handle is not None and self._ended is None:
                with anyio.move_on_after(self._request_timeout):
                    try:
                        await handle.kill()
                    except Exception as exc:  # the sandbox may be gone already
                        self._kill_error = f"{type(exc).__name__}: {exc}"
            if handle is not None:
                with contextlib.suppress(Exception):
                    await handle.disconnect()
            if self._watcher is not None:
                self._watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._watcher
            self._chunks.put_nowait(b"")
            await kill_sandbox(self.sandbox, self._request_timeout)

    def diagnostics(self) -> str:
        """The sandbox id, how the command ended, and the tail of its stderr."""
        parts = [f"sandbox {self.sandbox.sandbox_id}"]
        if self._ended:
            parts.append(self._ended)
        if self._send_error:
            parts.append(f"sending to the sandbox failed: {self._send_error}")
        if self._kill_error:
            parts.append(f"killing the command failed: {self._kill_error}")
        tail = self._stderr.strip()
        if tail:
            parts.append(f"stderr: {tail}")
        return "; ".join(parts)


async def kill_sandbox(sandbox: AsyncSandbox, timeout_s: float) -> None:
    """Kill a sandbox, giving up after ``timeout_s``; never raises (E2B reaps it at its timeout)."""
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(timeout_s),
        contextlib.suppress(Exception),
    ):
        await sandbox.kill(request_timeout=timeout_s)


class E2BInterpreter(ChannelInterpreter):
    """Runs the guest in an E2B sandbox (a Firecracker microVM) through the ``e2b`` SDK.

    Credentials and endpoints come from the arguments or the SDK's own environment variables:
    ``E2B_API_KEY`` (required unless ``debug``), ``E2B_DOMAIN``, ``E2B_API_URL``,
    ``E2B_SANDBOX_URL`` and ``E2B_DEBUG``.

    Args:
        template: The sandbox template (any with ``python3`` 3.8+); E2B's ``base`` by default.
        timeout_s: The sandbox's lifetime in seconds; E2B kills it after that.
        metadata: Metadata attached to the sandbox (visible when listing sandboxes).
        envs: Environment variables for the sandbox and the guest.
        allow_internet_access: False blocks the sandbox's outbound network.
        python: The Python command inside the sandbox.
        cwd: The guest's working directory; the sandbox user's home by default.
        user: The sandbox user to run as (``"user"`` or ``"root"``); envd's default if None.
        api_key: E2B API key; ``E2B_API_KEY`` if None.
        domain: E2B domain; ``E2B_DOMAIN`` or the SDK's default if None.
        api_url: Control-plane URL (the SDK marks it internal); ``E2B_API_URL`` if None.
        sandbox_url: URL of every sandbox's envd (the SDK marks it deprecated; for stand-ins).
        debug: The SDK's debug mode: no control-plane calls, envd on ``localhost``.
        retries: Control-plane retries on 429/502/503/504; the SDK's default (3) if None.
        request_timeout_s: Timeout of each SDK request (create, stdin write, kill).
        stdin_chunk_bytes: The most bytes sent per ``send_stdin`` request.
        interrupt_grace_s: Seconds a timed-out cell gets to stop before the sandbox is killed.
        capabilities: Override what this interpreter claims (for stand-ins and self-hosted E2B);
            never claim more than the sandbox enforces.
        standin: Run against the process-wide local stand-in,
            :meth:`rlm_e2b.testing.E2BStandIn.shared` (for tests; needs no credentials and
            claims only what the stand-in enforces).
    """

    def __init__(
        self,
        *,
        template: str | None = None,
        timeout_s: int = 600,
        metadata: Mapping[str, str] | None = None,
        envs: Mapping[str, str] | None = None,
        allow_internet_access: bool | None = None,
        python: str = "python3",
        cwd: str | None = None,
        user: str | None = None,
        api_key: str | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        sandbox_url: str | None = None,
        debug: bool | None = None,
        retries: int | None = None,
        request_timeout_s: float = 30.0,
        stdin_chunk_bytes: int = 1 << 20,
        interrupt_grace_s: float | None = None,
        capabilities: Capabilities | None = None,
        standin: bool = False,
    ) -> None:
        super().__init__(interrupt_grace_s=interrupt_grace_s)
        if timeout_s <= 0:
            raise ConfigError("timeout_s must be a positive number of seconds")
        if stdin_chunk_bytes <= 0:
            raise ConfigError("stdin_chunk_bytes must be positive")
        if user not in (None, "user", "root"):
            raise ConfigError(f"user must be 'user' or 'root', not {user!r}")
        self.template = template
        self.timeout_s = timeout_s
        self.metadata = dict(metadata or {})
        self.envs = dict(envs or {})
        self.allow_internet_access = allow_internet_access
        self.python = python
        self.cwd = cwd
        self.user = user
        self.api_key = api_key
        self.domain = domain
        self.api_url = api_url
        self.sandbox_url = sandbox_url
        self.debug = debug
        self.retries = retries
        self.request_timeout_s = request_timeout_s
        self.stdin_chunk_bytes = stdin_chunk_bytes
        self.standin = standin
        self._capabilities = capabilities
        self._channel_for_errors: E2BChannel | None = None
        self.sandbox_id: str | None = None
        """The id of this interpreter's sandbox, once started."""

    @classmethod
    def from_url(cls, target: str, **options: Any) -> E2BInterpreter:
        """``e2b://TEMPLATE?timeout_s=900`` picks the sandbox template."""
        return cls(template=target or None, **options)

    @property
    def capabilities(self) -> Capabilities:
        """A microVM per session; network unless ``allow_internet_access=False``."""
        if self._capabilities is not None:
            return self._capabilities
        if self.standin:
            from rlm_e2b.testing import STANDIN_CAPABILITIES

            return STANDIN_CAPABILITIES
        return Capabilities(
            isolation="microvm",
            network=self.allow_internet_access is not False,
            writable_filesystem=True,
            survives_timeout=True,
            max_variable_bytes=None,
            host_env_visible=False,
            host_files_visible=False,
        )

    # ---- lifecycle ---------------------------------------------------------------------

    def diagnose_failed_start(self, lost: SessionLostError) -> InterpreterUnavailableError | None:
        """Exit status 127 before ready: the template has no such Python command."""
        channel = self._channel_for_errors
        if channel is None or channel.exit_code != 127:
            return None
        return InterpreterUnavailableError(
            f"the E2B template {self.template or 'base'!r} has no {self.python!r} "
            f"command ({channel.diagnostics()}); choose a template with Python 3.8+ "
            "(template=...) or name its interpreter (python=...)"
        )

    async def open_channel(self) -> GuestChannel:
        """Create a sandbox and start the guest in it as a background command with stdin."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise InterpreterUnavailableError(
                "the e2b SDK runs on asyncio only; run this interpreter under asyncio "
                "(anyio's default backend, or BlockingInterpreter)"
            ) from None
        settings = await self._connection_settings()
        try:
            from e2b import AsyncSandbox
        except ImportError as exc:
            raise InterpreterUnavailableError(
                f"the e2b SDK is not installed: {exc}. {_INSTALL_HINT}"
            ) from exc
        sandbox = await self._create_sandbox(AsyncSandbox, settings)
        self.sandbox_id = sandbox.sandbox_id
        channel = E2BChannel(
            sandbox,
            stdin_chunk_bytes=self.stdin_chunk_bytes,
            request_timeout_s=self.request_timeout_s,
        )
        self._channel_for_errors = channel
        try:
            handle = await sandbox.commands.run(
                guest_command(self.python),
                background=True,
                stdin=True,
                envs=self.envs or None,
                cwd=self.cwd,
                user=self.user,
                on_stdout=channel.on_stdout,
                on_stderr=channel.on_stderr,
                timeout=0,  # the command lives as long as the session, not 60 s
                request_timeout=self.request_timeout_s,
                retain_output=False,
            )
        except BaseException as exc:
            await kill_sandbox(sandbox, self.request_timeout_s)
            if isinstance(exc, Exception):
                raise InterpreterUnavailableError(
                    f"E2B sandbox {sandbox.sandbox_id} could not start the guest: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            raise
        channel.attach(handle)
        return channel

    async def _connection_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "api_key": self.api_key,
            "domain": self.domain,
            "api_url": self.api_url,
            "sandbox_url": self.sandbox_url,
            "debug": self.debug,
            "request_timeout": self.request_timeout_s,
        }
        if self.retries is not None:
            settings["retries"] = self.retries
        if self.standin:
            from rlm_e2b.testing import E2BStandIn

            standin = await anyio.to_thread.run_sync(E2BStandIn.shared)
            settings.update(standin.settings())
        debug = settings["debug"]
        if debug is None:
            debug = os.environ.get("E2B_DEBUG", "false").lower() == "true"
        # Checked before importing the SDK so a missing key fails at once, with the fix.
        if not debug and not (settings["api_key"] or os.environ.get("E2B_API_KEY")):
            raise InterpreterUnavailableError(
                "E2B needs an API key: set E2B_API_KEY (or pass api_key=...); get one from your "
                "E2B dashboard. To run against a local stand-in instead, use "
                "E2BInterpreter(standin=True) (spec 'e2b?standin=true'), or point E2B_API_URL "
                "and E2B_SANDBOX_URL at a running rlm_e2b.testing.E2BStandIn."
            )
        return {k: v for k, v in settings.items() if v is not None}

    async def _create_sandbox(
        self, sandbox_class: type[AsyncSandbox], settings: dict[str, Any]
    ) -> AsyncSandbox:
        from e2b.exceptions import (
            AuthenticationException,
            RateLimitException,
            SandboxException,
            ServiceBusyException,
            TemplateException,
        )

        template = self.template or sandbox_class.default_template
        try:
            return await sandbox_class.create(
                template=template,
                timeout=self.timeout_s,
                metadata=self.metadata or None,
                envs=self.envs or None,
                allow_internet_access=self.allow_internet_access,
                **settings,
            )
        except AuthenticationException as exc:
            raise InterpreterUnavailableError(
                f"E2B rejected the credentials ({exc}); set E2B_API_KEY (or api_key=...) to a "
                "valid key"
            ) from exc
        except RateLimitException as exc:
            raise InterpreterUnavailableError(
                f"E2B refused to start another sandbox ({exc}): your account's concurrent-"
                "sandbox quota or rate limit is reached. Lower the concurrency (the `limit` "
                "of rlm_core.parallel.run_many), close idle sandboxes, or raise the quota of "
                "your E2B plan"
            ) from exc
        except ServiceBusyException as exc:
            raise InterpreterUnavailableError(f"E2B is busy ({exc}); retry later") from exc
        except (TemplateException, SandboxException) as exc:
            status = getattr(exc, "status_code", None)
            text = str(exc)
            if isinstance(exc, TemplateException) or status == 404 or "template" in text.lower():
                raise InterpreterUnavailableError(
                    f"E2B cannot start template {template!r} ({text}); set template=... (or "
                    "RLM_E2B_TEMPLATE) to a template of yours that has Python 3.8+, such as "
                    "'base'"
                ) from exc
            if "timeout" in text.lower():
                raise ConfigError(
                    f"E2B refused the sandbox timeout of {self.timeout_s} s ({text}); lower "
                    "timeout_s (or RLM_E2B_TIMEOUT_S) to what your E2B plan allows"
                ) from exc
            raise InterpreterUnavailableError(f"E2B could not create a sandbox: {text}") from exc
        except Exception as exc:  # transport failures: DNS, refused connection, TLS, timeouts
            where = settings.get("api_url") or os.environ.get("E2B_API_URL") or "the E2B API"
            raise InterpreterUnavailableError(
                f"cannot reach {where} to create a sandbox ({type(exc).__name__}: {exc}); check "
                "network access, E2B_DOMAIN and E2B_API_URL"
            ) from exc

"""ModalInterpreter: the bridge's guest in a Modal cloud sandbox, through the real ``modal`` SDK.

``start()`` checks credentials locally, looks up (or creates) the app, builds the image,
creates the sandbox and execs the guest loader in it; the session then speaks frames over the
exec's stdin and stdout. Every phase is bounded in time and its failures name the setting to
change. All SDK calls use the ``.aio`` interfaces, which run on the SDK's own event loop
thread, so sandbox I/O never blocks the caller's loop (an asyncio loop; the SDK needs one).
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from rlm_core.bridge.process import LOCAL_PROCESS_CAPABILITIES, local_process_capabilities
from rlm_core.bridge.protocol import loader_argv
from rlm_core.bridge.session import ChannelInterpreter, GuestChannel
from rlm_core.errors import ConfigError, InterpreterUnavailableError
from rlm_core.interpreter import Capabilities
from rlm_modal._channel import ModalChannel, terminate_quietly

if TYPE_CHECKING:
    from modal import Image as ModalImage
else:
    # Resolvable at run time without importing the SDK, so the registry can read the
    # constructor's type hints to coerce "key=value" options.
    ModalImage = Any

__all__ = ["ModalInterpreter"]

_T = TypeVar("_T")

_CREDENTIALS_HINT = (
    "set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (create a token with `modal token new`), "
    "or pass token_id= and token_secret="
)


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlparse(url).hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _modal_config_file_exists() -> bool:
    """Whether the SDK has a profile file to read (the same path rule as ``modal.config``)."""
    path = _env("MODAL_CONFIG_PATH") or os.path.expanduser("~/.modal.toml")
    return os.path.exists(path)


def _modal_config() -> Any:
    """``modal.config.config`` (MODAL_* variables, then the active profile), if importable."""
    try:
        import modal.config
    except ImportError:
        return None
    return modal.config.config


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


class ModalInterpreter(ChannelInterpreter):
    """Runs the guest in a Modal sandbox, over ``Sandbox.exec`` stdin and stdout.

    Created by name (``RLM(interpreter="modal")``, ``modal://IMAGE?cpu=2``), every option can
    also come from configuration: ``RLM_MODAL_<OPTION>`` variables or ``[interpreters.modal]``
    in ``rlm.toml`` (docs/configuration.md), e.g. ``RLM_MODAL_IMAGE=python:3.12-slim``.

    Args:
        app_name: The Modal app the sandboxes belong to, created if missing.
        image: A registry image with ``python3`` (3.8+), such as ``"python:3.12-slim"``, or a
            ``modal.Image`` (default Modal's ``debian_slim`` image).
        cpu: CPU cores to request (default Modal's).
        memory: Memory to request, in MiB (default Modal's).
        timeout: Seconds the sandbox may live before Modal stops it; it bills until then if
            the host dies without closing it.
        block_network: Cut the sandbox off from the network.
        python: The guest interpreter's command inside the image (default ``python3``).
        token_id: Modal token id (``MODAL_TOKEN_ID``, or the active profile in ``~/.modal.toml``).
        token_secret: Modal token secret (``MODAL_TOKEN_SECRET``, or the profile).
        server_url: Modal's API address (``MODAL_SERVER_URL``); tests point it at the stand-in
            in :mod:`rlm_modal.testing`.
        connect_timeout_s: How long reaching Modal may take before start() gives up; the SDK
            alone would retry for a minute.
        create_timeout_s: How long building the image and scheduling the sandbox may take.
        capabilities: What the sandbox truly enforces, when the server is not Modal's cloud:
            the stand-in runs commands as local processes, so its tests pass
            ``rlm_modal.testing.STANDIN_CAPABILITIES``. Leave unset against Modal.
        interrupt_grace_s: Seconds a timed-out cell gets to stop before the sandbox is stopped.
        standin: Run against a process-wide local stand-in server (``rlm_modal.testing``)
            with dummy credentials, for tests and offline development.
    """

    def __init__(
        self,
        *,
        app_name: str = "rlm-sandboxes",
        image: str | ModalImage | None = None,
        cpu: float | None = None,
        memory: int | None = None,
        timeout: int = 1800,
        block_network: bool = True,
        python: str = "python3",
        token_id: str | None = None,
        token_secret: str | None = None,
        server_url: str | None = None,
        connect_timeout_s: float = 15.0,
        create_timeout_s: float = 600.0,
        capabilities: Capabilities | None = None,
        interrupt_grace_s: float | None = None,
        standin: bool = False,
    ) -> None:
        super().__init__(interrupt_grace_s=interrupt_grace_s)
        self.standin = standin
        self.app_name = app_name
        self.image = image
        self.cpu = cpu
        self.memory = memory
        self.timeout = timeout
        self.block_network = block_network
        self.python = python
        self.token_id = token_id
        self.token_secret = token_secret
        self.server_url = server_url
        self.connect_timeout_s = connect_timeout_s
        self.create_timeout_s = create_timeout_s
        if self.cpu is not None and self.cpu <= 0:
            raise ConfigError(f"cpu must be positive, got {self.cpu}")
        if self.memory is not None and self.memory <= 0:
            raise ConfigError(f"memory must be a positive number of MiB, got {self.memory}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout}")
        self._capabilities = capabilities
        self.sandbox_id: str | None = None
        """Modal's id of the running sandbox, once started."""
        self.start_timings: dict[str, float] = {}
        """Seconds spent in each phase of the last start(): connect, image, sandbox, exec."""

    @classmethod
    def from_url(cls, target: str, **options: Any) -> ModalInterpreter:
        """``modal://python:3.12-slim?cpu=1&memory=1024&block_network=false`` runs that image."""
        return cls(image=target or None, **options)

    @property
    def capabilities(self) -> Capabilities:
        """A gVisor container in Modal's cloud: no host access, network as configured.

        A server on this machine (the test stand-in, or anything else on loopback) is not
        Modal's cloud, so without an explicit ``capabilities=`` the interpreter then claims
        only what a local process is sure to give: no isolation beyond a process, no promise
        about the network, the host's files or its environment.
        """
        if self._capabilities is not None:
            return self._capabilities
        if self.standin:  # our own stand-in: a confined local process, clean environment
            return local_process_capabilities()
        if _is_loopback(self._server_url_setting() or ""):
            # A Modal API served from this machine runs sandboxes we know nothing about:
            # claim only what any local process gets.
            return LOCAL_PROCESS_CAPABILITIES
        return Capabilities(
            isolation="container",
            network=not self.block_network,
            writable_filesystem=True,
            survives_timeout=True,
            max_variable_bytes=None,
            python_version=None,
            host_env_visible=False,
            host_files_visible=False,
        )

    def _server_url_setting(self) -> str | None:
        """The configured API address (argument, MODAL_SERVER_URL, profile); None: Modal's."""
        if self.server_url:
            return self.server_url
        from_env = _env("MODAL_SERVER_URL")
        if from_env or not _modal_config_file_exists():
            return from_env
        profile_config = _modal_config()
        return str(profile_config.get("server_url")) if profile_config is not None else None

    def _credentials(self) -> tuple[str, str]:
        """Arguments, then MODAL_TOKEN_ID/SECRET, then the profile in ~/.modal.toml.

        Checked before the SDK is even imported (which alone takes about a second): with no
        token the SDK would fail fast too, but the caller is promised an answer at once.
        """
        token_id = self.token_id or _env("MODAL_TOKEN_ID")
        token_secret = self.token_secret or _env("MODAL_TOKEN_SECRET")
        if not (token_id and token_secret) and _modal_config_file_exists():
            profile_config = _modal_config()
            if profile_config is not None:
                token_id = token_id or profile_config.get("token_id")
                token_secret = token_secret or profile_config.get("token_secret")
        if not token_id or not token_secret:
            missing = [
                name
                for name, value in (
                    ("MODAL_TOKEN_ID", token_id),
                    ("MODAL_TOKEN_SECRET", token_secret),
                )
                if not value
            ]
            raise InterpreterUnavailableError(
                f"Modal credentials are missing ({', '.join(missing)} not set): "
                f"{_CREDENTIALS_HINT}."
            )
        return str(token_id), str(token_secret)

    async def open_channel(self) -> GuestChannel:
        """Create the sandbox and exec the guest loader in it."""
        # Before anything slow: with a token but no route to Modal, the SDK alone would
        # retry for about a minute, so every network phase below is bounded too.
        if self.standin:
            from rlm_modal.testing import ModalStandIn

            standin = (await anyio.to_thread.run_sync(ModalStandIn.shared)).settings()
            self.server_url = standin["server_url"]
            self.token_id = self.token_id or standin["token_id"]
            self.token_secret = self.token_secret or standin["token_secret"]
        credentials = self._credentials()
        try:
            import modal
            import modal.config
            import modal.exception
        except ImportError as exc:
            raise InterpreterUnavailableError(
                f"the modal SDK is not importable ({exc}); install it: "
                '`pip install "rlmbox[modal]"`'
            ) from exc
        server_url = self._server_url_setting() or str(modal.config.config.get("server_url"))
        self.start_timings.clear()
        client: Any = None
        sandbox: Any = None
        try:
            client, app = await self._timed("connect", self._connect(server_url, credentials))
            image = self._image(modal)
            await self._timed("image", self._build_image(image, app))
            sandbox = await self._timed("sandbox", self._create_sandbox(client, app, image))
            self.sandbox_id = str(sandbox.object_id)
            process = await self._timed("exec", self._exec_guest(sandbox))
        except BaseException:
            # Nothing may outlive a failed start: a sandbox bills until its timeout.
            await terminate_quietly(sandbox, client)
            raise
        return ModalChannel(client=client, sandbox=sandbox, process=process)

    async def _timed(self, phase: str, step: Awaitable[_T]) -> _T:
        started = time.perf_counter()
        result = await step
        self.start_timings[phase] = time.perf_counter() - started
        return result

    async def _connect(self, server_url: str, credentials: tuple[str, str]) -> tuple[Any, Any]:
        import modal
        import modal.exception
        from modal_proto import api_pb2

        # A client of our own, not the process-wide from_env() singleton: server_url and the
        # credentials are per interpreter, and closing it is ours to do.
        # (modal.Client's __aenter__ is untyped, hence Any.)
        client: Any = modal.Client(server_url, api_pb2.CLIENT_TYPE_CLIENT, credentials)
        try:
            with anyio.fail_after(self.connect_timeout_s):
                await client.__aenter__()
                app = await modal.App.lookup.aio(
                    self.app_name, create_if_missing=True, client=client
                )
        except BaseException as exc:
            await terminate_quietly(None, client)
            if isinstance(exc, TimeoutError):
                raise InterpreterUnavailableError(
                    f"could not reach Modal at {server_url} within {self.connect_timeout_s:g} s; "
                    "check the network and MODAL_SERVER_URL, or raise connect_timeout_s "
                    "(RLM_MODAL_CONNECT_TIMEOUT_S)"
                ) from None
            if isinstance(exc, modal.exception.AuthError):
                raise InterpreterUnavailableError(
                    f"Modal rejected the credentials: {exc}. Check MODAL_TOKEN_ID and "
                    "MODAL_TOKEN_SECRET (create a token with `modal token new`)"
                ) from exc
            if isinstance(exc, modal.exception.Error):
                raise InterpreterUnavailableError(
                    f"could not open the Modal app {self.app_name!r} at {server_url}: "
                    f"{_describe(exc)}. Check app_name (RLM_MODAL_APP_NAME) and MODAL_SERVER_URL"
                ) from exc
            raise
        return client, app

    async def _build_image(self, image: Any, app: Any) -> None:
        import modal.exception

        try:
            with anyio.fail_after(self.create_timeout_s):
                await image.build.aio(app)
        except TimeoutError:
            raise InterpreterUnavailableError(
                f"the Modal image {self._image_label()} was not ready within "
                f"{self.create_timeout_s:g} s; raise create_timeout_s (RLM_MODAL_CREATE_TIMEOUT_S) "
                "or choose a smaller image (image=, RLM_MODAL_IMAGE)"
            ) from None
        except modal.exception.Error as exc:
            raise InterpreterUnavailableError(
                f"Modal could not provide the image {self._image_label()}: {_describe(exc)}. "
                "Change image= (RLM_MODAL_IMAGE) to an image that exists and has python3"
            ) from exc

    async def _create_sandbox(self, client: Any, app: Any, image: Any) -> Any:
        import modal
        import modal.exception

        try:
            with anyio.fail_after(self.create_timeout_s):
                return await modal.Sandbox.create.aio(
                    app=app,
                    image=image,
                    timeout=self.timeout,
                    cpu=self.cpu,
                    memory=self.memory,
                    block_network=self.block_network,
                    client=client,
                )
        except TimeoutError:
            raise InterpreterUnavailableError(
                f"Modal did not schedule the sandbox within {self.create_timeout_s:g} s; raise "
                "create_timeout_s (RLM_MODAL_CREATE_TIMEOUT_S) or request less cpu= "
                "(RLM_MODAL_CPU) and memory= (RLM_MODAL_MEMORY)"
            ) from None
        except modal.exception.ResourceExhaustedError as exc:
            raise InterpreterUnavailableError(
                f"Modal refused the sandbox for lack of quota or capacity ({exc}); request "
                f"less cpu= (RLM_MODAL_CPU, now {self.cpu or 'default'}) or memory= "
                f"(RLM_MODAL_MEMORY, now {self.memory or 'default'} MiB), run fewer sandboxes "
                "at once, or raise the workspace's limits in Modal"
            ) from exc
        except modal.exception.InvalidError as exc:
            raise ConfigError(
                f"Modal rejected the sandbox settings: {exc}. Check cpu= (RLM_MODAL_CPU), "
                "memory= (RLM_MODAL_MEMORY) and timeout= (RLM_MODAL_TIMEOUT)"
            ) from exc
        except modal.exception.Error as exc:
            raise InterpreterUnavailableError(
                f"Modal could not create the sandbox: {_describe(exc)}"
            ) from exc

    async def _exec_guest(self, sandbox: Any) -> Any:
        import modal.exception

        try:
            with anyio.fail_after(self.create_timeout_s):
                # text=False: frames are binary, never decoded. bufsize=-1: raw chunks as they
                # arrive, never re-cut at newlines.
                return await sandbox.exec.aio(*loader_argv(self.python), text=False, bufsize=-1)
        except TimeoutError:
            raise InterpreterUnavailableError(
                f"the Modal sandbox {self.sandbox_id} did not start the guest within "
                f"{self.create_timeout_s:g} s; raise create_timeout_s (RLM_MODAL_CREATE_TIMEOUT_S)"
            ) from None
        except modal.exception.Error as exc:
            raise InterpreterUnavailableError(
                f"could not run {self.python!r} in the Modal sandbox: {_describe(exc)}. Use an "
                "image with python3 (image=, RLM_MODAL_IMAGE) or set python= to its path"
            ) from exc

    def _image(self, modal: Any) -> Any:
        if self.image is None:
            return modal.Image.debian_slim()
        if isinstance(self.image, str):
            return modal.Image.from_registry(self.image)
        return self.image

    def _image_label(self) -> str:
        if self.image is None:
            return "debian_slim (the default)"
        return repr(self.image) if isinstance(self.image, str) else "passed as image="


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"

"""DockerInterpreter: the bridge's guest in a locked-down container, over the attach socket."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread
import docker
import docker.errors
import docker.types
import docker.utils

from rlm_core.bridge.protocol import loader_argv
from rlm_core.bridge.session import ChannelInterpreter, GuestChannel
from rlm_core.errors import ConfigError, InterpreterUnavailableError, SessionLostError
from rlm_core.interpreter import Capabilities
from rlm_docker import _engine
from rlm_docker._channel import AttachChannel

__all__ = ["DEFAULT_IMAGE", "DockerInterpreter"]

DEFAULT_IMAGE = "rlm-python:3.11"
"""The image ``scripts/docker-engine.sh build-image`` builds without a registry."""

_MIB = 1 << 20
# What the guest runtime and the interpreter need besides the variables themselves.
_GUEST_OVERHEAD = 256 * _MIB


def _parse_size(name: str, value: int | str | None) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        size = int(docker.utils.parse_bytes(value.strip() if isinstance(value, str) else value))
    except (docker.errors.DockerException, ValueError, TypeError) as exc:
        raise ConfigError(f"{name}={value!r} is not a size such as '512m' or '2g': {exc}") from None
    if size <= 0:
        raise ConfigError(f"{name} must be positive or None (no limit), not {value!r}")
    return size


def _names(value: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)


class DockerInterpreter(ChannelInterpreter):
    """Runs the guest as ``python3`` in a fresh container on a Docker-compatible engine.

    The guest is bootstrapped over the container's attached stdin, so any image with CPython
    3.8+ on its PATH works and nothing is baked into it. Every default below is a hardening
    choice and each can be relaxed.

    Args:
        image: The image to run; ``scripts/docker-engine.sh build-image`` builds the default.
        memory: Memory limit (``"3g"``, ``"512m"``, bytes, or None for none). A variable needs
            about twice its size in the guest, so the default lets a 1 GB input bind;
            ``capabilities.max_variable_bytes`` states the resulting bound.
        cpus: CPU limit in cores (None: no limit).
        pids_limit: Most processes and threads in the container (None: no limit).
        network_mode: The container's network; ``"none"`` means no network at all.
        read_only: Mount the image's root filesystem read-only.
        tmpfs_size: Size of the writable tmpfs at ``/tmp`` (None: no tmpfs).
        user: The user the guest runs as; by default ``nobody`` (65534), never root.
        cap_drop: Linux capabilities to drop (a list, or a comma-separated string).
        no_new_privileges: Forbid gaining privileges through setuid binaries.
        runtime: An OCI runtime configured in the engine, such as gVisor's ``runsc``.
        base_url: The engine's socket (``unix:///run/podman.sock``, ``tcp://...``); default
            ``DOCKER_HOST`` or the standard socket.
        python: The guest interpreter's command inside the image.
        environment: Environment variables for the guest; nothing of the host's is passed.
        ulimits: Resource limits as ``{"nofile": 1024}``, set as both soft and hard limits
            (Podman on hosts with low hard limits needs ``nofile`` and ``nproc``).
        api_timeout_s: Timeout in seconds of each request to the engine.
        interrupt_grace_s: Seconds a timed-out cell gets to stop before the container is killed.
    """

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        memory: int | str | None = "3g",
        cpus: float | None = 1.0,
        pids_limit: int | None = 128,
        network_mode: str = "none",
        read_only: bool = True,
        tmpfs_size: int | str | None = "256m",
        user: str | None = "65534:65534",
        cap_drop: Sequence[str] | str = ("ALL",),
        no_new_privileges: bool = True,
        runtime: str | None = None,
        base_url: str | None = None,
        python: str = "python3",
        environment: Mapping[str, str] | None = None,
        ulimits: Mapping[str, int] | None = None,
        api_timeout_s: int = 60,
        interrupt_grace_s: float | None = None,
    ) -> None:
        super().__init__(interrupt_grace_s=interrupt_grace_s)
        if not image:
            raise ConfigError("image must name an image, such as 'rlm-python:3.11'")
        self.image = image
        self.memory_bytes = _parse_size("memory", memory)
        self.tmpfs_bytes = _parse_size("tmpfs_size", tmpfs_size)
        if cpus is not None and cpus <= 0:
            raise ConfigError(f"cpus must be positive or None, not {cpus!r}")
        if pids_limit is not None and pids_limit <= 0:
            raise ConfigError(f"pids_limit must be positive or None, not {pids_limit!r}")
        if self.memory_bytes is not None and self.memory_bytes < 64 * _MIB:
            raise ConfigError(f"memory={memory!r} is too small for a Python guest (64m at least)")
        self.cpus = cpus
        self.pids_limit = pids_limit
        self.network_mode = network_mode
        self.read_only = read_only
        self.user = user or None
        self.cap_drop = _names(cap_drop)
        self.no_new_privileges = no_new_privileges
        self.runtime = runtime or None
        self.base_url = base_url or None
        self.python = python
        self.environment = dict(environment or {})
        self.ulimits = dict(ulimits or {})
        if api_timeout_s <= 0:
            raise ConfigError(f"api_timeout_s must be positive, not {api_timeout_s!r}")
        self.api_timeout_s = api_timeout_s
        self.container_id: str | None = None
        """The running container's id (None before start and after close)."""
        self.orphans_removed: list[str] = []
        """Ids of dead processes' containers that :meth:`start` removed."""
        self._killed_from_outside = False
        self._client: docker.APIClient | None = None

    @classmethod
    def from_url(cls, target: str, **options: Any) -> DockerInterpreter:
        """``docker://IMAGE?memory=1g&cpus=1`` runs IMAGE with those options."""
        return cls(image=target, **options)

    @property
    def capabilities(self) -> Capabilities:
        """A container with no network by default; survives timeouts via SIGINT."""
        if self.memory_bytes is None:
            max_variable_bytes = None
        else:
            # The guest holds the received bytes and the decoded value at once.
            max_variable_bytes = max(0, (self.memory_bytes - _GUEST_OVERHEAD) // 2)
        return Capabilities(
            isolation="container",
            network=self.network_mode != "none",
            writable_filesystem=not self.read_only or self.tmpfs_bytes is not None,
            survives_timeout=True,
            max_variable_bytes=max_variable_bytes,
            python_version=None,
            host_env_visible=False,
            host_files_visible=False,
        )

    def _host_config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "network_mode": self.network_mode,
            "read_only": self.read_only,
            "cap_drop": list(self.cap_drop) or None,
            "security_opt": ["no-new-privileges"] if self.no_new_privileges else None,
            "pids_limit": self.pids_limit,
            "nano_cpus": int(self.cpus * 1e9) if self.cpus is not None else None,
            # The engine reads the runtime from the host config only.
            "runtime": self.runtime,
        }
        if self.memory_bytes is not None:
            # Swap equal to memory: the limit is a limit, not a hint to start swapping.
            config["mem_limit"] = self.memory_bytes
            config["memswap_limit"] = self.memory_bytes
        if self.tmpfs_bytes is not None:
            config["tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_bytes},mode=1777"}
        if self.ulimits:
            config["ulimits"] = [
                docker.types.Ulimit(name=name, soft=value, hard=value)
                for name, value in self.ulimits.items()
            ]
        return config

    def _spec(self) -> _engine.ContainerSpec:
        return _engine.ContainerSpec(
            image=self.image,
            command=loader_argv(self.python),
            user=self.user,
            working_dir="/tmp" if self.tmpfs_bytes is not None or not self.read_only else "/",
            environment=self.environment,
            labels={**_engine.owner_labels(), "rlm.backend": "docker"},
            runtime=self.runtime,
            host_config=self._host_config(),
        )

    def _launch(self, pending: list[object]) -> _engine.Attached:
        client = self._client = _engine.connect(self.base_url, self.api_timeout_s)
        self.orphans_removed = _engine.remove_orphans(client)
        return _engine.launch(client, self._spec(), self.base_url, pending)

    async def open_channel(self) -> GuestChannel:
        """Create, attach and start the container, with every engine call in a worker thread."""
        pending: list[object] = []
        try:
            attached = await anyio.to_thread.run_sync(self._launch, pending)
        except BaseException:
            # Cancelled or failed half-way: a container and a connection may exist that no one
            # else will remove or close (a cancelled thread's return value is lost).
            with anyio.CancelScope(shield=True):
                await self._discard(pending)
            raise
        self.container_id = attached.container_id
        return AttachChannel(
            attached.sock,
            attached.keep_alive,
            functools.partial(self._remove_container, attached.container_id),
        )

    async def _discard(self, pending: list[object]) -> None:
        for item in pending:
            if isinstance(item, str):
                await self._remove_container(item)
            elif callable(close := getattr(item, "close", None)):
                with contextlib.suppress(Exception):
                    close()
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    async def _remove_container(self, container_id: str) -> str:
        client = self._client
        if client is None:
            return ""
        ending = await anyio.to_thread.run_sync(_engine.remove, client, container_id)
        self._killed_from_outside = ending.killed
        if self.container_id == container_id:
            self.container_id = None
        return ending.text

    def diagnose_failed_start(self, lost: SessionLostError) -> InterpreterUnavailableError | None:
        """A guest that never ran in a container nobody killed means the image has no Python."""
        if self.guest_info or self._killed_from_outside:
            return None  # a container killed while starting is a lost session, not a bad image
        return InterpreterUnavailableError(
            f"the image {self.image!r} started but its {self.python!r} did not run the guest "
            f"({lost}). The image needs CPython 3.8 or newer on its PATH as {self.python!r}."
        )

    async def aclose(self) -> None:
        """Stop the guest, remove its container and close the engine connection."""
        try:
            await super().aclose()
        finally:
            client, self._client = self._client, None
            if client is not None:
                client.close()

"""Blocking conversations with the engine through the ``docker`` SDK; callers run them in threads.

Every container this package creates carries labels naming the host process that owns it, so
that a later process can remove the orphans of one that died, and an ``atexit`` hook removes
the containers of a process that exits without closing its interpreters.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import docker.utils
import requests

from rlm_core.errors import InterpreterUnavailableError

__all__ = [
    "LABEL_MANAGED",
    "LABEL_OWNER_HOST",
    "LABEL_OWNER_PID",
    "LABEL_OWNER_STARTED",
    "Attached",
    "ContainerSpec",
    "connect",
    "launch",
    "owner_labels",
    "remove",
    "remove_orphans",
]

LABEL_MANAGED = "rlm.managed"
LABEL_OWNER_PID = "rlm.owner_pid"
LABEL_OWNER_HOST = "rlm.owner_host"
LABEL_OWNER_STARTED = "rlm.owner_started"

START_ENGINE_HINT = (
    "Start an engine: on Debian or Ubuntu as root, `scripts/docker-engine.sh start` from the rlm "
    "repository (it installs docker.io if needed and runs `dockerd --bridge=none "
    "--iptables=false --ip6tables=false` in the background); or point DOCKER_HOST or the "
    "base_url setting at any Docker-compatible socket, such as Podman's "
    "(`podman system service --time=0 unix:///run/podman.sock`)."
)


def _process_started(pid: int) -> str:
    """The kernel's start time of ``pid`` in clock ticks ("" if unknown): guards against reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return ""
    # The command name (field 2) may contain spaces and parentheses; fields after it do not.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


def owner_labels() -> dict[str, str]:
    """Labels that tie a new container to this host process."""
    pid = os.getpid()
    return {
        LABEL_MANAGED: "1",
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_OWNER_STARTED: _process_started(pid),
    }


def _owner_alive(labels: Mapping[str, str]) -> bool:
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    started = labels.get(LABEL_OWNER_STARTED, "")
    return not started or started == _process_started(pid)


def _probe_unix_socket(url: str) -> None:
    """Connect to a ``unix://`` engine socket once, so a dead one fails here, cleanly."""
    path = (
        url.removeprefix("unix://")
        if url.startswith("unix://")
        else url.removeprefix("http+unix://")
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        probe.connect(path)


def connect(base_url: str | None, timeout: int) -> docker.APIClient:
    """A low-level client for ``base_url`` (or DOCKER_HOST), checked with a ping.

    Raises:
        InterpreterUnavailableError: No engine answers there; the message says how to start one.
    """
    kwargs: dict[str, Any] = (
        {"base_url": base_url} if base_url else dict(docker.utils.kwargs_from_env())
    )
    url = str(kwargs.get("base_url") or "unix:///var/run/docker.sock")
    client = None
    try:
        if url.startswith(("unix://", "http+unix://")):
            _probe_unix_socket(url)
        client = docker.APIClient(timeout=timeout, **kwargs)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        if client is not None:
            client.close()
        raise InterpreterUnavailableError(
            f"no Docker engine answers at {url}: {exc}. {START_ENGINE_HINT}"
        ) from exc
    return client


def remove_orphans(client: docker.APIClient) -> list[str]:
    """Remove containers of ours whose owner process on this host is gone; return their ids."""
    host = socket.gethostname()
    removed = []
    for info in client.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"}):
        labels = info.get("Labels") or {}
        if labels.get(LABEL_OWNER_HOST) != host or _owner_alive(labels):
            continue
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.remove_container(info["Id"], force=True)
            removed.append(str(info["Id"]))
    return removed


@dataclass(frozen=True, kw_only=True)
class ContainerSpec:
    """Everything needed to create one sandbox container."""

    image: str
    command: list[str]
    user: str | None
    working_dir: str | None
    environment: Mapping[str, str]
    labels: Mapping[str, str]
    runtime: str | None
    host_config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Attached:
    """A started container and the socket attached to its stdio."""

    container_id: str
    sock: socket.socket
    keep_alive: list[object]


_live: dict[str, str | None] = {}
_live_lock = threading.Lock()


def _track(container_id: str, base_url: str | None) -> None:
    with _live_lock:
        _live[container_id] = base_url


def _untrack(container_id: str) -> None:
    with _live_lock:
        _live.pop(container_id, None)


@atexit.register
def _remove_live_containers() -> None:
    """Remove containers a process leaves behind when it exits without closing them."""
    with _live_lock:
        leftovers = dict(_live)
        _live.clear()
    for container_id, base_url in leftovers.items():
        with contextlib.suppress(Exception):
            kwargs = {"base_url": base_url} if base_url else docker.utils.kwargs_from_env()
            client = docker.APIClient(timeout=10, **kwargs)
            client.remove_container(container_id, force=True)
            client.close()


def launch(
    client: docker.APIClient, spec: ContainerSpec, base_url: str | None, pending: list[object]
) -> Attached:
    """Create the container, attach to its stdio, then start it.

    Attaching before starting means not one byte of output can be missed or left in the HTTP
    client's buffer. The new container's id (a str) and then the attach connection's objects
    are appended to ``pending`` as soon as they exist: when this raises, or its caller is
    cancelled meanwhile, the caller removes and closes them.

    Raises:
        InterpreterUnavailableError: The image is missing, the runtime unknown, or the image
            has no ``python3`` to run.
    """
    host_config = client.create_host_config(**spec.host_config)
    try:
        created = client.create_container(
            spec.image,
            command=spec.command,
            user=spec.user,
            working_dir=spec.working_dir,
            environment=dict(spec.environment),
            labels=dict(spec.labels),
            stdin_open=True,
            tty=False,
            host_config=host_config,
            use_config_proxy=False,
            name=f"rlm-{os.getpid()}-{os.urandom(4).hex()}",
        )
    except docker.errors.ImageNotFound as exc:
        raise InterpreterUnavailableError(
            f"the image {spec.image!r} is not in the engine. Build the registry-free local "
            "image with `scripts/docker-engine.sh build-image` (it tags rlm-python:3.11), or "
            f"`docker pull {spec.image}` / `docker load` an image with Python 3.8+ on PATH."
        ) from exc
    except docker.errors.APIError as exc:
        raise InterpreterUnavailableError(
            f"the engine refused to create the container: {exc.explanation or exc}"
            + (
                f" (is the runtime {spec.runtime!r} configured in the engine's daemon.json?)"
                if spec.runtime
                else ""
            )
        ) from exc
    container_id = str(created["Id"])
    pending.append(container_id)
    _track(container_id, base_url)
    sock_io = client.attach_socket(
        container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
    )
    raw = getattr(sock_io, "_sock", sock_io)
    keep_alive: list[object] = [sock_io, getattr(sock_io, "_response", None)]
    pending.extend([raw, *keep_alive])
    if not isinstance(raw, socket.socket):
        raise InterpreterUnavailableError(
            f"the engine connection ({type(raw).__name__}) is not a socket this backend can "
            "drive without blocking; use a unix:// or tcp:// base_url (for ssh, forward the "
            "socket with `ssh -L`)."
        )
    try:
        client.start(container_id)
    except docker.errors.APIError as exc:
        explanation = str(exc.explanation or exc)
        if "executable file not found" in explanation or "no such file" in explanation.lower():
            raise InterpreterUnavailableError(
                f"the image {spec.image!r} has no usable {spec.command[0]!r} on its PATH: "
                f"{explanation}. Use an image with CPython 3.8+ installed as python3 (or set "
                "the python option), or build one with `scripts/docker-engine.sh build-image`."
            ) from exc
        raise InterpreterUnavailableError(
            f"the engine could not start the container: {explanation}"
        ) from exc
    return Attached(container_id=container_id, sock=raw, keep_alive=keep_alive)


_REMOVE_ATTEMPTS = 4


@dataclass(frozen=True, kw_only=True)
class Ending:
    """How a removed container had ended."""

    text: str
    """The exit code or OOM kill, for error messages ("" if it was still running)."""
    killed: bool
    """Stopped from outside (a signal, the OOM killer, removed by someone else), not by itself."""


def remove(client: docker.APIClient, container_id: str) -> Ending:
    """Stop and remove the container; report how it ended (exit code, OOM kill) if it had."""
    ending, killed = "", False
    with contextlib.suppress(docker.errors.DockerException, requests.RequestException, OSError):
        try:
            state = client.inspect_container(container_id).get("State") or {}
        except docker.errors.NotFound:
            state, ending, killed = {}, "the container was removed from outside", True
        code = state.get("ExitCode")
        if state.get("OOMKilled"):
            ending, killed = "the container was killed for exceeding its memory limit", True
        elif state.get("Status") == "exited":
            ending = f"the container exited with code {code}"
            killed = isinstance(code, int) and code >= 128  # 128 + signal: killed, e.g. 137
    # A busy engine may refuse a removal for a moment (409 "removal already in progress", a
    # read timeout): try a few times before leaving it to the atexit hook.
    for attempt in range(_REMOVE_ATTEMPTS):
        try:
            client.remove_container(container_id, force=True)
            break
        except docker.errors.NotFound:
            break
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            if attempt == _REMOVE_ATTEMPTS - 1:
                problem = f"could not remove container {container_id[:12]}: {exc}"
                # A container left running is a leak the user should hear about.
                warnings.warn(problem + " (retried at exit)", RuntimeWarning, stacklevel=2)
                return Ending(text=(f"{ending}; " if ending else "") + problem, killed=killed)
            time.sleep(0.25 * (attempt + 1))
    _untrack(container_id)
    return Ending(text=ending, killed=killed)

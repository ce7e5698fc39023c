"""DenoInterpreter and DenoPool: the guest runtime inside Pyodide, inside a locked-down Deno."""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_core.bridge.protocol import bootstrap_frame, encode_frame
from rlm_core.bridge.session import ChannelInterpreter, GuestChannel
from rlm_core.errors import ConfigError, InterpreterUnavailableError, SessionLostError
from rlm_core.interpreter import Capabilities
from rlm_deno import _setup, _shared
from rlm_deno._channel import DenoProcess
from rlm_deno._shared import SharedSession

__all__ = ["DenoInterpreter", "DenoPool"]

# Measured on a 2-core machine: the heap after a 500 MB string bound is ~1.1 GB of the 4 GB
# wasm32 address space, and user code needs room to work on it. Larger inputs are refused on
# the host before anything is sent.
MAX_VARIABLE_BYTES = 512 * 1024 * 1024
# Deno, V8 and Pyodide's own heap before user data: the RSS backstop adds this to the limit.
_PROCESS_OVERHEAD_BYTES = 400 * 1024 * 1024
_MAX_WASM_BYTES = 4 * 1024 * 1024 * 1024


def _names(value: str | Sequence[str] | None, separator: str = ",") -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(separator) if part.strip())
    return tuple(value)


@dataclass(frozen=True, slots=True)
class _Settings:
    """Everything that decides how a runner process is started (pooled runners share it)."""

    allow_net: tuple[str, ...]
    read_paths: tuple[str, ...]
    env_vars: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    memory_limit_mb: int | None
    packages: tuple[str, ...]
    pyodide_dir: str | None
    cache_dir: str | None
    deno_path: str | None
    snapshot: bool
    sessions_per_process: int = 1


class DenoInterpreter(ChannelInterpreter):
    """Python in Pyodide (WebAssembly) in a Deno process with every permission denied.

    Deno may read only the Pyodide files (and its snapshot); network, environment,
    subprocesses, writes, FFI and system information are denied, and ``import js`` sees a
    short list of harmless JavaScript globals. Pyodide is fetched from the npm registry into
    the per-user cache on first use, and boots from a memory snapshot made on first use.

    Args:
        allow_net: Hosts (``host`` or ``host:port``) guest code may reach with ``await
            pyodide.http.pyfetch(...)``; empty (the default) means no network at all.
        read_paths: Host files or directories copied into the sandbox, read-only, at the same
            paths when the session starts (each file must be under 128 MB).
        env_vars: Names of host environment variables whose values are passed in
            (``os.environ`` inside); no other host variable is visible.
        env: Extra environment variables for the guest, with explicit values.
        memory_limit_mb: Caps the Python heap (a cell that needs more gets ``MemoryError``
            and the session lives on) and, as a backstop, the whole Deno process's memory
            (over that plus an overhead allowance, the process is killed and the session lost).
        packages: Pyodide packages to load at start from ``pyodide_dir`` (the npm
            distribution carries none; use a full Pyodide release directory for numpy & co.).
        pyodide_dir: A local Pyodide directory (or one holding ``node_modules/pyodide``) to use
            instead of the cache; also ``RLM_DENO_PYODIDE_DIR``. For air-gapped machines.
        cache_dir: Where Pyodide, snapshots and Deno's cache live; also ``RLM_DENO_CACHE_DIR``;
            default ``~/.cache/rlm/deno``.
        deno_path: A deno executable to use instead of the pinned ``deno`` package's.
        snapshot: Boot from a Pyodide memory snapshot (made once per version; falls back to
            a normal boot if it is missing, stale or fails).
        pool: A :class:`DenoPool` with booted runners to start from (its settings win).
        warm_pool: Instead of ``pool``: keep this many booted runners ready in a process-wide
            pool shared by interpreters with the same settings (``deno://?warm_pool=2``).
        sessions_per_process: Up to this many live sessions (with the same settings) share
            one Deno process, each in its own worker: ~65 MB a session instead of ~107 MB, for
            many concurrent sessions (``deno://?sessions_per_process=16``). They are then
            isolated from each other by WebAssembly and the locked-down worker, not by the
            kernel, and the memory limit is the Python heap cap alone.
        interrupt_grace_s: Seconds a timed-out cell gets to stop before it is killed.
    """

    interrupt_grace_s = 3.0
    """The interrupt buffer stops pure-Python loops within milliseconds; 3 s covers a busy host."""
    start_timeout_s = 120.0
    """A first boot without a snapshot takes 4-9 s on two cores; leave room for slow machines."""

    def __init__(
        self,
        *,
        allow_net: str | Sequence[str] | None = None,
        read_paths: str | Sequence[str] | None = None,
        env_vars: str | Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        memory_limit_mb: int | None = None,
        packages: str | Sequence[str] | None = None,
        pyodide_dir: str | None = None,
        cache_dir: str | None = None,
        deno_path: str | None = None,
        snapshot: bool = True,
        pool: DenoPool | None = None,
        warm_pool: int = 0,
        sessions_per_process: int = 1,
        interrupt_grace_s: float | None = None,
    ) -> None:
        super().__init__(interrupt_grace_s=interrupt_grace_s)
        if isinstance(sessions_per_process, bool) or not isinstance(sessions_per_process, int):
            raise ConfigError("sessions_per_process must be a whole number >= 1")
        if sessions_per_process < 1:
            raise ConfigError("sessions_per_process must be >= 1")
        if memory_limit_mb is not None and memory_limit_mb < 64:
            raise ConfigError("memory_limit_mb must be at least 64 (Pyodide alone needs ~40)")
        if warm_pool < 0:
            raise ConfigError("warm_pool must be >= 0")
        if pool is not None and warm_pool:
            raise ConfigError("pass either pool or warm_pool, not both")
        hosts = _names(allow_net)
        for host in hosts:
            if not host or "/" in host or " " in host:
                raise ConfigError(f"allow_net entries are host or host:port, not {host!r}")
        paths = tuple(str(Path(p).expanduser().resolve()) for p in _names(read_paths))
        for path in paths:
            if not os.path.exists(path):
                raise ConfigError(f"read_paths entry {path!r} does not exist")
        self.settings = _Settings(
            allow_net=hosts,
            read_paths=paths,
            env_vars=_names(env_vars),
            env=tuple(sorted((env or {}).items())),
            memory_limit_mb=memory_limit_mb,
            packages=_names(packages),
            pyodide_dir=pyodide_dir,
            cache_dir=cache_dir,
            deno_path=deno_path,
            snapshot=snapshot,
            sessions_per_process=sessions_per_process,
        )
        if pool is None and warm_pool:
            pool = _shared_pool(self.settings, warm_pool)
        elif pool is not None:
            self.settings = pool.settings
        self.pool = pool
        self.snapshot_used: bool | None = None

    @classmethod
    def from_url(cls, target: str, **options: Any) -> DenoInterpreter:
        """``deno://`` takes no target; options go in the query (``deno://?warm_pool=2``)."""
        if target:
            raise ConfigError(
                f"the deno interpreter takes no target (got {target!r}); use options, e.g. "
                "deno://?allow_net=example.org&memory_limit_mb=1024"
            )
        return cls(**options)

    @property
    def capabilities(self) -> Capabilities:
        """WebAssembly isolation; state survives timeouts through Pyodide's interrupt buffer."""
        return Capabilities(
            isolation="wasm",
            network=bool(self.settings.allow_net),
            # Pyodide's in-memory filesystem is writable, but nothing reaches the host.
            writable_filesystem=True,
            survives_timeout=True,
            max_variable_bytes=MAX_VARIABLE_BYTES,
            python_version=_setup.PYODIDE_PYTHON,
            packages=self.settings.packages,
            host_env_visible=bool(self.settings.env_vars),
            host_files_visible=bool(self.settings.read_paths),
        )

    async def start(self) -> None:
        """Boot (or take a booted runner from the pool) and load the guest runtime."""
        await super().start()
        self.snapshot_used = bool(self.guest_info.get("snapshot"))
        if self.guest_info.get("snapshot_error"):
            _forget_snapshot(self.settings)

    def diagnose_failed_start(self, lost: SessionLostError) -> InterpreterUnavailableError:
        """The runner died before it said ready: a set-up problem, not a lost session."""
        return InterpreterUnavailableError(f"the Deno sandbox did not start: {lost}")

    async def open_channel(self) -> GuestChannel:
        """A pooled runner if one is ready, else a new ``deno run`` of the runner."""
        if self.pool is not None:
            process = self.pool.take()
            if process is not None:
                return process
        import anyio

        return await anyio.to_thread.run_sync(_spawn, self.settings)


# ---- spawning -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    deno: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    rss_limit: int | None


def _deno_env(cache: Path) -> dict[str, str]:
    # A clean environment: Deno gets its own cache dir and nothing of the host's.
    return {
        "DENO_DIR": str(_setup.deno_dir(cache)),
        "DENO_NO_PACKAGE_JSON": "1",
        "DENO_NO_UPDATE_CHECK": "1",
        "DENO_NO_PROMPT": "1",
        "NO_COLOR": "1",
        # glibc otherwise raises its mmap threshold to the largest buffer freed (the 30 MB
        # snapshot copy), and later large buffers stay in the heap after they are freed.
        "MALLOC_MMAP_THRESHOLD_": str(128 * 1024),
    }


def _base_argv(
    deno: str, reads: Sequence[str], writes: str | None, settings: _Settings
) -> list[str]:
    argv = [
        deno,
        "run",
        "--no-prompt",
        "--no-config",
        "--no-lock",
        "--no-npm",
        "--no-remote",
        "--cached-only",
        "--deny-import",
        f"--allow-read={','.join(reads)}",
        "--deny-env",
        "--deny-run",
        "--deny-ffi",
        "--deny-sys",
    ]
    argv.append(f"--allow-write={writes}" if writes else "--deny-write")
    argv.append(
        f"--allow-net={','.join(settings.allow_net)}" if settings.allow_net else "--deny-net"
    )
    # V8 sizes each isolate's young generation for this machine's memory (up to 3 x 16 MB
    # each for the runner and the worker); Pyodide's JavaScript allocates little, so 2 MB
    # semi-spaces save ~35 MB a session at no measurable cost.
    v8_flags = ["--max-semi-space-size=2"]
    if settings.memory_limit_mb is not None:
        v8_flags.append(f"--max-old-space-size={max(64, settings.memory_limit_mb // 2)}")
    argv.append(f"--v8-flags={','.join(v8_flags)}")
    return argv


def _runner_config(
    pyodide: _setup.PyodideFiles,
    settings: _Settings,
    *,
    snapshot: Path | None,
    make_snapshot: Path | None,
    shared: bool = False,
) -> str:
    memory = None
    if settings.memory_limit_mb is not None:
        memory = min(settings.memory_limit_mb * 1024 * 1024, _MAX_WASM_BYTES)
    return json.dumps(
        {
            "pyodideDir": str(pyodide.directory),
            "pyodideModule": (pyodide.directory / "pyodide.mjs").as_uri(),
            "network": bool(settings.allow_net),
            "mounts": list(settings.read_paths),
            "packages": list(settings.packages),
            "memoryLimit": memory,
            "snapshot": str(snapshot) if snapshot else None,
            "makeSnapshot": str(make_snapshot) if make_snapshot else None,
            "shared": shared,
        }
    )


def _plan(settings: _Settings, pipes: Path | None = None) -> _Plan:
    """How to start a runner: of one session, or shared by sessions whose pipes are in ``pipes``."""
    deno = _setup.find_deno(settings.deno_path)
    cache = _setup.cache_root(settings.cache_dir)
    pyodide = _setup.pyodide_files(settings.pyodide_dir, cache, deno)
    snapshot = _ensure_snapshot(settings, deno, cache, pyodide) if settings.snapshot else None
    reads = [str(pyodide.directory), str(_setup.WORKER), *settings.read_paths]
    if snapshot is not None:
        reads.append(str(snapshot))
    if pipes is not None:
        reads.append(str(pipes))
    argv = _base_argv(deno, reads, str(pipes) if pipes else None, settings)
    config = _runner_config(
        pyodide, settings, snapshot=snapshot, make_snapshot=None, shared=pipes is not None
    )
    argv += [str(_setup.RUNNER), config]
    rss = None
    if settings.memory_limit_mb is not None and pipes is None:
        rss = settings.memory_limit_mb * 1024 * 1024 + _PROCESS_OVERHEAD_BYTES
    return _Plan(deno, argv, _deno_env(cache), str(cache), rss)


def _guest_env(settings: _Settings) -> dict[str, str]:
    env = {name: os.environ[name] for name in settings.env_vars if name in os.environ}
    env.update(dict(settings.env))
    return env


_Runner = DenoProcess | SharedSession
"""A session's channel: a runner process of its own, or a worker in a shared one."""


def _start_process(settings: _Settings, pipes: Path | None = None) -> DenoProcess:
    plan = _plan(settings, pipes)
    return DenoProcess(plan.argv, env=plan.env, cwd=plan.cwd, rss_limit_bytes=plan.rss_limit)


def _spawn(settings: _Settings) -> _Runner:
    process: _Runner
    if settings.sessions_per_process > 1:
        process = _shared.open_session(
            settings,
            settings.sessions_per_process,
            lambda pipes: _start_process(settings, pipes),
        )
    else:
        process = _start_process(settings)
    try:
        # Values travel in a frame, never on the command line where `ps` would show them.
        process.send_now(encode_frame({"t": "deno-config", "env": _guest_env(settings)}))
    except BaseException:
        process.close_now()
        raise
    return process


# ---- snapshots --------------------------------------------------------------------------

_snapshot_lock = threading.Lock()


_PRUNE_S = 14 * 24 * 3600
"""Snapshots of other versions unused for this long are deleted when a new one is made."""


def _ensure_snapshot(
    settings: _Settings, deno: str, cache: Path, pyodide: _setup.PyodideFiles
) -> Path | None:
    path = _setup.snapshot_path(cache, pyodide, deno)
    if path.is_file():
        with contextlib.suppress(OSError):
            os.utime(path)  # in use: another version's pruning keeps it
        return path
    failed = path.with_suffix(".failed")
    with contextlib.suppress(OSError):
        # A failed attempt is not retried by every start, but an hour later it is.
        if time.time() - failed.stat().st_mtime < 3600:
            return None
    with _snapshot_lock, _setup._locked(cache, "snapshot"):
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        sys.stderr.write(
            f"rlm-deno: making a Pyodide {pyodide.version} memory snapshot for fast starts "
            "(first use only, a few seconds)...\n"
        )
        sys.stderr.flush()
        error = _make_snapshot(settings, deno, cache, pyodide, path)
        for other in path.parent.glob("pyodide-*"):
            # Another runner, guest or Deno version's snapshot: another environment may still
            # use it (two checkouts, two virtualenvs), so only long-unused ones go.
            with contextlib.suppress(OSError):
                if other not in (path, failed) and time.time() - other.stat().st_mtime > _PRUNE_S:
                    other.unlink()
        if error is not None:
            failed.write_text(error, "utf-8")
            sys.stderr.write(f"rlm-deno: no snapshot ({error}); booting normally instead.\n")
            return None
    return path


def _make_snapshot(
    settings: _Settings, deno: str, cache: Path, pyodide: _setup.PyodideFiles, path: Path
) -> str | None:
    fd, scratch = tempfile.mkstemp(prefix=".snapshot-", dir=path.parent)
    os.close(fd)
    try:
        plain = _Settings((), (), (), (), None, (), None, None, None, snapshot=False)
        reads = [str(pyodide.directory), str(_setup.WORKER)]
        argv = _base_argv(deno, reads, scratch, plain)
        argv += [
            str(_setup.RUNNER),
            _runner_config(pyodide, plain, snapshot=None, make_snapshot=Path(scratch)),
        ]
        frames = encode_frame({"t": "deno-config", "env": {}}) + bootstrap_frame()
        try:
            done = subprocess.run(
                argv,
                input=frames,
                env=_deno_env(cache),
                cwd=str(cache),
                capture_output=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode != 0 or os.path.getsize(scratch) == 0:
            return (
                done.stderr.decode("utf-8", "replace").strip()[-500:] or f"exit {done.returncode}"
            )
        os.replace(scratch, path)
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(scratch)


def _forget_snapshot(settings: _Settings) -> None:
    """Drop a snapshot the runner could not load, so the next start makes a fresh one."""
    with contextlib.suppress(Exception):
        deno = _setup.find_deno(settings.deno_path)
        cache = _setup.cache_root(settings.cache_dir)
        pyodide = _setup.pyodide_files(settings.pyodide_dir, cache, deno)
        _setup.snapshot_path(cache, pyodide, deno).unlink(missing_ok=True)


# ---- the warm pool ----------------------------------------------------------------------


class DenoPool:
    """Keeps ``size`` runner processes booted so that ``start()`` does not wait for Pyodide.

    Each runner has already loaded Pyodide (from the snapshot) when an interpreter takes it;
    a replacement starts booting at once, in a background thread. Runners are started from
    threads and are not tied to an event loop, so one pool serves any number of loops.
    An idle runner holds about 110 MB of memory.

    Example::

        pool = DenoPool(size=2)                  # boots two runners in the background
        async with pool.interpreter() as interp: # start() takes a booted runner
            ...
        pool.close()

    ``DenoInterpreter(warm_pool=2)`` (or ``deno://?warm_pool=2``, or ``warm_pool = 2`` under
    ``[tool.rlm.interpreters.deno]``) uses a process-wide pool per settings instead.

    Args:
        size: How many booted runners to keep ready.
        **options: :class:`DenoInterpreter` settings every pooled runner is started with.
    """

    def __init__(self, size: int = 1, **options: Any) -> None:
        if size < 1:
            raise ConfigError("a DenoPool needs size >= 1")
        if "pool" in options or "warm_pool" in options:
            raise ConfigError("a DenoPool's options cannot name another pool")
        template = DenoInterpreter(**options)
        self._init(size, template.settings)

    def _init(self, size: int, settings: _Settings) -> None:
        self.size = size
        self.settings = settings
        self._ready: collections.deque[_Runner] = collections.deque()
        self._starting = 0
        self._closed = False
        self._lock = threading.Lock()
        self.last_error: BaseException | None = None
        _live_pools.add(self)
        self._refill()

    @classmethod
    def _for_settings(cls, size: int, settings: _Settings) -> DenoPool:
        pool = cls.__new__(cls)
        pool._init(size, settings)
        return pool

    def interpreter(self, *, interrupt_grace_s: float | None = None) -> DenoInterpreter:
        """A new, unstarted interpreter whose ``start()`` takes a runner from this pool."""
        return DenoInterpreter(pool=self, interrupt_grace_s=interrupt_grace_s)

    def take(self) -> _Runner | None:
        """A booted (or booting) runner, or None if none is ready; starts a replacement."""
        taken = None
        with self._lock:
            while self._ready:
                candidate = self._ready.popleft()
                if candidate.alive():
                    taken = candidate
                    break
                candidate.close_now()
        self._refill()
        return taken

    def ready_count(self) -> int:
        """How many runners are waiting to be taken."""
        with self._lock:
            return len(self._ready)

    def _refill(self) -> None:
        with self._lock:
            missing = self.size - len(self._ready) - self._starting
            if self._closed or missing <= 0:
                return
            self._starting += missing
        for _ in range(missing):
            threading.Thread(target=self._start_one, name="rlm-deno-pool", daemon=True).start()

    def _start_one(self) -> None:
        process = None
        try:
            process = _spawn(self.settings)
        except BaseException as exc:  # remembered for the interpreter that falls back
            self.last_error = exc
        with self._lock:
            self._starting -= 1
            if process is not None and not self._closed:
                self._ready.append(process)
                process = None
        if process is not None:
            process.close_now()

    def close(self) -> None:
        """Stop every idle runner; interpreters already started keep theirs."""
        with self._lock:
            self._closed = True
            idle, self._ready = list(self._ready), collections.deque()
        for process in idle:
            process.close_now()

    def __enter__(self) -> DenoPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_live_pools: weakref.WeakSet[DenoPool] = weakref.WeakSet()
_shared_pools: dict[tuple[_Settings, int], DenoPool] = {}
_shared_lock = threading.Lock()


def _shared_pool(settings: _Settings, size: int) -> DenoPool:
    with _shared_lock:
        pool = _shared_pools.get((settings, size))
        if pool is None or pool._closed:
            pool = DenoPool._for_settings(size, settings)
            _shared_pools[(settings, size)] = pool
        return pool


@atexit.register
def _close_pools() -> None:
    for pool in list(_live_pools):
        pool.close()
    _shared.close_all()

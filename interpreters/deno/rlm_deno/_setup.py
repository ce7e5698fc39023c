"""Finding Deno, installing Pyodide into the per-user cache, and making memory snapshots.

Everything here runs on the host, outside the sandbox, and only on first use (or when a
version pin changes): later starts find the files in place and pay nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rlm_core.bridge import guest
from rlm_core.errors import InterpreterUnavailableError

__all__ = [
    "DENO_VERSION",
    "PYODIDE_PYTHON",
    "PYODIDE_VERSION",
    "PyodideFiles",
    "cache_root",
    "find_deno",
    "pyodide_files",
    "snapshot_path",
]

PYODIDE_VERSION = "314.0.7"
"""The Pyodide release rlm-deno runs (npm package ``pyodide``); snapshots are made per version."""
PYODIDE_PYTHON = f"{PYODIDE_VERSION[0]}.{PYODIDE_VERSION.split('.')[0][1:]}"
"""The Python that Pyodide release runs: its major version is the Python's ("314" is 3.14)."""
DENO_VERSION = "2.9.8"
"""The ``deno`` PyPI package version this backend is pinned to (the pin in its pyproject.toml,
which a test holds this to)."""

PACKAGE_DIR = Path(__file__).resolve().parent
RUNNER = PACKAGE_DIR / "runner.mjs"
WORKER = PACKAGE_DIR / "worker.mjs"
_REQUIRED_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip")
_NPM_SPEC = f"npm:pyodide@{PYODIDE_VERSION}"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where rlm-deno keeps Pyodide, its Deno cache and snapshots.

    ``cache_dir``, else ``RLM_DENO_CACHE_DIR``, else ``$XDG_CACHE_HOME/rlm/deno``
    (``~/.cache/rlm/deno``).
    """
    chosen = cache_dir or os.environ.get("RLM_DENO_CACHE_DIR")
    if chosen:
        return Path(chosen).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).resolve() / "rlm" / "deno"


def find_deno(deno_path: str | None = None) -> str:
    """The deno executable: ``deno_path``, ``RLM_DENO_BIN``, or the pinned ``deno`` package's.

    Raises:
        InterpreterUnavailableError: No usable deno binary; the message says what to install.
    """
    chosen = deno_path or os.environ.get("RLM_DENO_BIN")
    if chosen:
        found = shutil.which(chosen) or chosen
        if not os.access(found, os.X_OK):
            raise InterpreterUnavailableError(
                f"the deno binary {chosen!r} does not exist or is not executable; fix "
                "deno_path / RLM_DENO_BIN, or unset it to use the pinned `deno` package"
            )
        return found
    try:
        import deno  # type: ignore[import-untyped]  # the PyPI package shipping the binary
    except ImportError as exc:
        raise InterpreterUnavailableError(
            f"Deno is not installed: run `pip install deno=={DENO_VERSION}` (or reinstall "
            "rlmbox-deno, which depends on it), or set RLM_DENO_BIN to a deno executable"
        ) from exc
    try:
        path = str(deno.find_deno_bin())
    except Exception as exc:  # the package exists but its binary is missing or broken
        raise InterpreterUnavailableError(
            f"the `deno` package is installed but its binary was not found ({exc}); "
            f"reinstall it with `pip install --force-reinstall deno=={DENO_VERSION}`"
        ) from exc
    if not os.access(path, os.X_OK):
        raise InterpreterUnavailableError(
            f"the deno binary at {path} is not executable; reinstall `deno=={DENO_VERSION}`"
        )
    return path


@dataclass(frozen=True, slots=True)
class PyodideFiles:
    """A Pyodide distribution on disk that the sandbox may read."""

    directory: Path
    version: str


@contextlib.contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    """Serialise first-use work between processes sharing one cache."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _version_of(directory: Path) -> str | None:
    try:
        data = json.loads((directory / "package.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in _REQUIRED_FILES)


def pyodide_files(
    pyodide_dir: str | os.PathLike[str] | None, cache_dir: Path, deno: str
) -> PyodideFiles:
    """Locate Pyodide: the configured directory, else the cache (installed on first use).

    Raises:
        InterpreterUnavailableError: The configured directory is not Pyodide
            {PYODIDE_VERSION}, or the download failed.
    """
    chosen = pyodide_dir or os.environ.get("RLM_DENO_PYODIDE_DIR")
    if chosen:
        return _configured(Path(chosen).expanduser().resolve())
    target = cache_dir / f"pyodide-{PYODIDE_VERSION}"
    if _complete(target) and _version_of(target) == PYODIDE_VERSION:
        return PyodideFiles(target, PYODIDE_VERSION)
    with _locked(cache_dir, "install"):
        if not (_complete(target) and _version_of(target) == PYODIDE_VERSION):
            _install(target, cache_dir, deno)
    return PyodideFiles(target, PYODIDE_VERSION)


def _configured(directory: Path) -> PyodideFiles:
    for candidate in (directory, directory / "node_modules" / "pyodide"):
        if _complete(candidate):
            version = _version_of(candidate)
            if version != PYODIDE_VERSION:
                raise InterpreterUnavailableError(
                    f"{candidate} holds Pyodide {version or 'of an unknown version'}, but "
                    f"rlm-deno runs Pyodide {PYODIDE_VERSION}: run `npm install "
                    f"pyodide@{PYODIDE_VERSION}` in {directory}, or unset pyodide_dir / "
                    "RLM_DENO_PYODIDE_DIR to let rlm-deno download it"
                )
            return PyodideFiles(candidate, version)
    raise InterpreterUnavailableError(
        f"no Pyodide distribution in {directory} (expected {', '.join(_REQUIRED_FILES)} there "
        f"or in node_modules/pyodide): run `npm install pyodide@{PYODIDE_VERSION}` in it"
    )


def _install(target: Path, cache_dir: Path, deno: str) -> None:
    sys.stderr.write(
        f"rlm-deno: downloading Pyodide {PYODIDE_VERSION} (about 14 MB) from the npm registry "
        f"into {target} (first use only)...\n"
    )
    sys.stderr.flush()
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache_dir))
    try:
        # Deno's own npm client does the download, into a throwaway DENO_DIR; it honours the
        # user's npm registry settings (.npmrc, NPM_CONFIG_REGISTRY) and proxy variables.
        env = dict(os.environ)
        env.update(DENO_DIR=str(staging / "deno"), DENO_NO_PACKAGE_JSON="1", NO_COLOR="1")
        env["DENO_NO_UPDATE_CHECK"] = "1"
        try:
            done = subprocess.run(
                [deno, "cache", "--no-config", "--no-lock", _NPM_SPEC],
                env=env,
                cwd=staging,
                capture_output=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InterpreterUnavailableError(
                f"downloading Pyodide {PYODIDE_VERSION} failed: {exc}"
            ) from exc
        found = [
            p
            for p in (staging / "deno" / "npm").glob(f"*/pyodide/{PYODIDE_VERSION}")
            if _complete(p)
        ]
        if done.returncode != 0 or not found:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-1500:]
            raise InterpreterUnavailableError(
                f"downloading Pyodide {PYODIDE_VERSION} from the npm registry failed "
                f"(`deno cache {_NPM_SPEC}` exited with {done.returncode}): {detail}\n"
                "Without network access, install it elsewhere with `npm install "
                f"pyodide@{PYODIDE_VERSION}` and point pyodide_dir (or RLM_DENO_PYODIDE_DIR) "
                "at that directory."
            )
        copy = staging / "pyodide"
        shutil.copytree(found[0], copy)
        if target.exists():
            shutil.rmtree(target)
        os.replace(copy, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    sys.stderr.write(f"rlm-deno: Pyodide {PYODIDE_VERSION} is ready.\n")
    sys.stderr.flush()


def snapshot_path(cache_dir: Path, pyodide: PyodideFiles, deno: str) -> Path:
    """The snapshot file for this exact Pyodide, Deno, runner and guest runtime."""
    digest = hashlib.sha256()
    digest.update(pyodide.version.encode())
    digest.update(str(pyodide.directory).encode())
    digest.update(_deno_identity(deno).encode())
    for source in (RUNNER, WORKER, Path(guest.__file__)):
        digest.update(source.read_bytes())
    return cache_dir / "snapshots" / f"pyodide-{pyodide.version}-{digest.hexdigest()[:20]}.bin"


@functools.cache
def _deno_identity(deno: str) -> str:
    """What a snapshot is keyed on for this deno binary.

    The ``deno`` package's version for that package's own binary, so that every environment
    (each clone's virtualenv) shares one snapshot; for any other binary, its path, size, mtime.
    """
    with contextlib.suppress(Exception):  # no package, or a broken one: identify the file
        import deno as package

        if os.path.samefile(deno, package.find_deno_bin()):
            return f"deno=={importlib.metadata.version('deno')}"
    try:
        info = os.stat(deno)
    except OSError:
        return deno
    return f"{deno}:{info.st_size}:{info.st_mtime_ns}"


def deno_dir(cache_dir: Path) -> Path:
    """The Deno cache the sandbox process uses: ours alone, never the user's ~/.cache/deno."""
    path = cache_dir / "deno-dir"
    path.mkdir(parents=True, exist_ok=True)
    return path

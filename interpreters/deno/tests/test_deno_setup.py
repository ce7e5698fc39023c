"""Installation and start-up: clear errors for a missing Deno, a Pyodide of another version and
a failed download; the snapshot's fallback; and a surrounding project that cannot interfere."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from rlm_core.errors import InterpreterUnavailableError
from rlm_deno import DENO_VERSION, PYODIDE_VERSION, DenoInterpreter, _setup

pytestmark = pytest.mark.anyio


@pytest.fixture
def pyodide_dir() -> Path:
    """The Pyodide the default cache holds (installed on first use)."""
    deno = _setup.find_deno()
    return _setup.pyodide_files(None, _setup.cache_root(), deno).directory


async def test_missing_deno_names_the_fix(tmp_path: Path) -> None:
    interp = DenoInterpreter(deno_path=str(tmp_path / "no-deno-here"))
    with pytest.raises(InterpreterUnavailableError, match="RLM_DENO_BIN"):
        await interp.start()
    await interp.aclose()


async def test_a_pyodide_directory_of_another_version_is_refused(
    tmp_path: Path, pyodide_dir: Path
) -> None:
    other = tmp_path / "node_modules" / "pyodide"
    shutil.copytree(pyodide_dir, other)
    meta = json.loads((other / "package.json").read_text())
    meta["version"] = "0.27.7"
    (other / "package.json").write_text(json.dumps(meta))
    interp = DenoInterpreter(pyodide_dir=str(tmp_path))
    with pytest.raises(InterpreterUnavailableError) as caught:
        await interp.start()
    message = str(caught.value)
    assert "0.27.7" in message
    assert PYODIDE_VERSION in message
    assert f"npm install pyodide@{PYODIDE_VERSION}" in message
    await interp.aclose()


async def test_an_npm_installed_directory_is_used_as_is(
    tmp_path: Path, pyodide_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(pyodide_dir, tmp_path / "project" / "node_modules" / "pyodide")
    monkeypatch.setenv("RLM_DENO_PYODIDE_DIR", str(tmp_path / "project"))
    async with DenoInterpreter(cache_dir=str(tmp_path / "cache"), snapshot=False) as interp:
        assert (await interp.execute("1 + 1")).value == "2"
    # Nothing was downloaded into the fresh cache.
    assert not (tmp_path / "cache" / f"pyodide-{PYODIDE_VERSION}").exists()


async def test_a_failed_download_says_what_failed_and_how_to_work_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A registry on a closed loopback port: the download fails at once, nothing leaves the host.
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://127.0.0.1:9/")
    monkeypatch.setenv("HOME", str(tmp_path))  # no user .npmrc overriding the registry
    interp = DenoInterpreter(cache_dir=str(tmp_path / "cache"))
    with pytest.raises(InterpreterUnavailableError) as caught:
        await interp.start()
    message = str(caught.value)
    assert f"downloading Pyodide {PYODIDE_VERSION}" in message
    assert "RLM_DENO_PYODIDE_DIR" in message
    await interp.aclose()
    assert not (tmp_path / "cache" / f"pyodide-{PYODIDE_VERSION}").exists()


async def test_a_corrupt_snapshot_falls_back_to_a_normal_boot_and_is_replaced(
    tmp_path: Path, pyodide_dir: Path
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(pyodide_dir, cache / f"pyodide-{PYODIDE_VERSION}")
    deno = _setup.find_deno()
    files = _setup.pyodide_files(None, cache, deno)
    snapshot = _setup.snapshot_path(cache, files, deno)
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"not a snapshot" * 1000)
    async with DenoInterpreter(cache_dir=str(cache)) as interp:
        assert interp.snapshot_used is False
        assert (await interp.execute("'still' + ' works'")).value == "'still works'"
    assert not snapshot.exists()
    async with DenoInterpreter(cache_dir=str(cache)) as again:  # makes a good one
        assert again.snapshot_used is True
    assert snapshot.stat().st_size > 1_000_000


async def test_making_a_snapshot_keeps_other_versions_in_use_and_prunes_unused_ones(
    tmp_path: Path, pyodide_dir: Path
) -> None:
    # Two checkouts or virtualenvs with different guest code share the cache: neither may
    # delete the other's snapshot, or each start would make its own again.
    cache = tmp_path / "cache"
    shutil.copytree(pyodide_dir, cache / f"pyodide-{PYODIDE_VERSION}")
    snapshots = cache / "snapshots"
    snapshots.mkdir()
    in_use, abandoned = snapshots / "pyodide-other-in-use.bin", snapshots / "pyodide-old.bin"
    in_use.write_bytes(b"another version's snapshot")
    abandoned.write_bytes(b"a snapshot nobody loaded for a month")
    month_ago = time.time() - 30 * 24 * 3600
    os.utime(abandoned, (month_ago, month_ago))
    async with DenoInterpreter(cache_dir=str(cache)) as interp:
        assert interp.snapshot_used is True
    assert in_use.exists()
    assert not abandoned.exists()


async def test_a_surrounding_project_cannot_change_what_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"pyodide": "0.0.1"}}))
    (tmp_path / "deno.json").write_text(json.dumps({"imports": {"pyodide": "./evil.mjs"}}))
    (tmp_path / "evil.mjs").write_text("throw new Error('the project was loaded');")
    (tmp_path / "node_modules" / "pyodide").mkdir(parents=True)
    (tmp_path / "node_modules" / "pyodide" / "pyodide.mjs").write_text("throw new Error('evil');")
    monkeypatch.chdir(tmp_path)
    async with DenoInterpreter() as interp:
        assert (await interp.execute("import os; os.getcwd()")).error is None
    assert os.getcwd() == str(tmp_path)


def test_snapshots_are_shared_by_every_environment_with_the_pinned_deno(tmp_path: Path) -> None:
    # Keyed on the package version, not the binary's path: a fresh clone's virtualenv reuses
    # the snapshot another one made. Any other binary is keyed on the file itself.
    pinned = _setup.find_deno()
    assert _setup._deno_identity(pinned) == f"deno=={DENO_VERSION}"
    copy = tmp_path / "deno"
    shutil.copy2(pinned, copy)
    assert str(copy) in _setup._deno_identity(str(copy))


def test_the_pinned_deno_is_the_one_the_package_depends_on() -> None:
    # DENO_VERSION names the pin in install hints and keys the snapshots; it must be the pin.
    import tomllib

    project = Path(_setup.__file__).parents[1] / "pyproject.toml"
    dependencies = tomllib.loads(project.read_text())["project"]["dependencies"]
    assert f"deno=={DENO_VERSION}" in dependencies

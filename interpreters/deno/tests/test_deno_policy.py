"""Opt-in policy settings, each doing what it says and no more: a network allow-list, host
files made visible read-only, named environment variables, and a memory limit."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_core.errors import ConfigError
from rlm_core.registry import create
from rlm_deno import DenoInterpreter

pytestmark = pytest.mark.anyio


def _serve(body: bytes) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture
def two_servers() -> Iterator[tuple[str, str]]:
    allowed, allowed_addr = _serve(b"allowed-body")
    other, other_addr = _serve(b"other-body")
    yield allowed_addr, other_addr
    for httpd in (allowed, other):
        httpd.shutdown()
        httpd.server_close()


async def test_network_allow_list_reaches_listed_hosts_only(two_servers: tuple[str, str]) -> None:
    allowed, other = two_servers
    interp = DenoInterpreter(allow_net=[allowed])
    assert interp.capabilities.network is True
    fetch = "import pyodide.http\nawait (await pyodide.http.pyfetch('http://{}/')).string()"
    async with interp:
        ok = await interp.execute(fetch.format(allowed))
        assert ok.error is None, ok.error
        assert ok.value == "'allowed-body'"
        denied = await interp.execute(fetch.format(other))
        assert denied.error is not None
        assert "Requires net access" in denied.error.message
        assert "other-body" not in f"{denied.value}{denied.stdout}"


async def test_read_paths_are_visible_read_only_and_nothing_else_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "sub").mkdir(parents=True)
    (shared / "sub" / "data.txt").write_text("payload ✓")
    (tmp_path / "private.txt").write_text("private")
    interp = DenoInterpreter(read_paths=[str(shared)])
    assert interp.capabilities.host_files_visible is True
    async with interp:
        read = await interp.execute(f"open({str(shared / 'sub' / 'data.txt')!r}).read()")
        assert read.value == "'payload ✓'"
        hidden = await interp.execute(f"open({str(tmp_path / 'private.txt')!r}).read()")
        assert hidden.error is not None
        assert hidden.error.type == "FileNotFoundError"
        write = await interp.execute(
            f"open({str(shared / 'sub' / 'data.txt')!r}, 'w').write('changed')"
        )
        assert write.error is not None
        assert write.error.type == "PermissionError"
    assert (shared / "sub" / "data.txt").read_text() == "payload ✓"


async def test_named_environment_variables_are_passed_and_no_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RLM_DENO_PASSED", "visible-value")
    monkeypatch.setenv("RLM_DENO_NOT_PASSED", "hidden-value")
    interp = DenoInterpreter(env_vars=["RLM_DENO_PASSED"], env={"EXTRA": "1"})
    async with interp:
        result = await interp.execute(
            "import os\n(os.environ.get('RLM_DENO_PASSED'), os.environ.get('RLM_DENO_NOT_PASSED'),"
            " os.environ.get('EXTRA'))"
        )
    assert result.value == "('visible-value', None, '1')"


async def test_memory_limit_turns_an_oversized_allocation_into_memory_error() -> None:
    async with DenoInterpreter(memory_limit_mb=256) as interp:
        await interp.execute("kept = 'still here'")
        result = await interp.execute("block = bytearray(400_000_000)")
        assert result.error is not None
        assert result.error.type == "MemoryError"
        small = await interp.execute("len(bytearray(50_000_000))")
        assert small.value == "50000000"
        assert (await interp.execute("kept")).value == "'still here'"
    async with DenoInterpreter() as unlimited:
        assert (await unlimited.execute("len(bytearray(400_000_000))")).value == "400000000"


def test_options_arrive_from_an_interpreter_spec(tmp_path: Path) -> None:
    made = create(
        f"deno://?allow_net=a.example,b.example:8080&memory_limit_mb=512&read_paths={tmp_path}"
    )
    assert isinstance(made, DenoInterpreter)
    assert made.settings.allow_net == ("a.example", "b.example:8080")
    assert made.settings.memory_limit_mb == 512
    assert made.settings.read_paths == (str(tmp_path.resolve()),)


def test_bad_settings_are_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="host or host:port"):
        DenoInterpreter(allow_net=["http://example.org/"])
    with pytest.raises(ConfigError, match="does not exist"):
        DenoInterpreter(read_paths=[str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match="at least 64"):
        DenoInterpreter(memory_limit_mb=1)
    with pytest.raises(ConfigError, match="takes no target"):
        create("deno://somewhere")

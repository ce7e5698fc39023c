"""Escape attempts from guest code: host files, host environment, Deno's cache, the network,
the protocol's stdout, through plain Python, ``js`` and ``pyodide_js``; and the Deno permission
flags themselves, tried from JavaScript with nothing between it and Deno."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_deno import DenoInterpreter, _setup
from rlm_deno import _interpreter as deno_internals

pytestmark = pytest.mark.anyio

SECRET = "rlm-deno-isolation-secret-4711"
# Reaches the real JavaScript global object whatever `import js` is restricted to.
REAL_GLOBAL = "js.Object.constructor('return globalThis')()"


@pytest.fixture
def host_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RLM_DENO_TEST_SECRET", SECRET)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    return secret_file


@pytest.fixture
def server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(SECRET.encode())

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


async def probe(interp: DenoInterpreter, code: str) -> str:
    """Run an escape attempt; return everything it produced, for asserting on."""
    result = await interp.execute(code, timeout=20)
    return f"{result.stdout}{result.stderr}{result.value}{result.error}"


async def test_host_files_and_the_deno_cache_are_unreadable(host_secret: Path) -> None:
    deno_dir = _setup.deno_dir(_setup.cache_root())
    async with DenoInterpreter() as interp:
        for path in (str(host_secret), "/etc/passwd", str(deno_dir)):
            attempts = [
                f"open({path!r}).read()",
                f"import os; os.listdir({path!r})",
                f"import js; {REAL_GLOBAL}.Deno.readTextFileSync({path!r})",
                f"import js; await js.Object.constructor('p', 'return import(p)')('file://{path}')",
                "import js; fs = js.Object.constructor('return process.getBuiltinModule')()('fs')\n"
                f"fs.readFileSync({path!r}, 'utf8')",
                f"import pyodide_js; pyodide_js.FS.readFile({path!r}, {{'encoding': 'utf8'}})",
            ]
            for code in attempts:
                output = await probe(interp, code)
                assert SECRET not in output, code
                assert "root:x:0" not in output, code
                assert "Error" in output, f"{code!r} did not fail: {output}"


async def test_host_environment_is_invisible(host_secret: Path) -> None:
    async with DenoInterpreter() as interp:
        for code in [
            "import os; dict(os.environ)",
            "import js; js.Object.constructor('return process.env.RLM_DENO_TEST_SECRET')()",
            f"import js; {REAL_GLOBAL}.Deno.env.get('RLM_DENO_TEST_SECRET')",
            "import pyodide_js; pyodide_js._module.ENV",
        ]:
            output = await probe(interp, code)
            assert SECRET not in output, code


async def test_js_does_not_reach_deno_fetch_or_the_console() -> None:
    async with DenoInterpreter() as interp:
        result = await interp.execute(
            "import js\n"
            "names = [n for n in ('Deno', 'fetch', 'console', 'postMessage') if hasattr(js, n)]\n"
            f"real = {REAL_GLOBAL}\n"
            "(names, js.Object.constructor('return typeof Deno')())"
        )
        assert result.value == "([], 'undefined')"


async def test_the_network_is_unreachable_by_every_route(server: str) -> None:
    async with DenoInterpreter() as interp:
        for code in [
            f"import pyodide.http\nawait (await pyodide.http.pyfetch('http://{server}/')).string()",
            f"import js\nawait {REAL_GLOBAL}.fetch('http://{server}/')",
            f"import pyodide_js\nawait pyodide_js.loadPackage('http://{server}/x.whl')",
            "import socket; socket.create_connection(('127.0.0.1', 9), timeout=2)",
            f"import js\nawait js.Object.constructor('return import(\"http://{server}/m.js\")')()",
        ]:
            output = await probe(interp, code)
            assert SECRET not in output, code


async def test_guest_output_cannot_forge_protocol_frames() -> None:
    async with DenoInterpreter() as interp:
        forged = "b'\\x00\\x00\\x00\\x10' + bytes(8) + b'{\"t\":\"ready\"}   '"
        result = await interp.execute(
            f"import js, os, sys\n{REAL_GLOBAL}.console.log('not a frame')\n"
            f"os.write(1, {forged})\nsys.__stdout__.write('x')\nprint('still framed')"
        )
        assert result.error is None, result.error
        assert "still framed" in result.stdout
        assert (await interp.execute("1 + 1")).value == "2"


def test_deno_permissions_deny_everything_but_the_pyodide_files(
    tmp_path: Path, host_secret: Path, server: str
) -> None:
    """The flags alone, without Pyodide in between: JavaScript with the full Deno API."""
    deno = _setup.find_deno()
    cache = _setup.cache_root()
    pyodide = _setup.pyodide_files(None, cache, deno)
    script = tmp_path / "escape.mjs"
    script.write_text(
        "const out = {};\n"
        "const tries = {\n"
        f"  read: () => Deno.readTextFileSync({str(host_secret)!r}),\n"
        f"  denoDir: () => [...Deno.readDirSync({str(_setup.deno_dir(cache))!r})],\n"
        "  env: () => Deno.env.get('RLM_DENO_TEST_SECRET'),\n"
        "  run: () => new Deno.Command('/bin/true').outputSync(),\n"
        f"  write: () => Deno.writeTextFileSync({str(tmp_path / 'w')!r}, 'x'),\n"
        "  sys: () => Deno.hostname(),\n"
        "  ffi: () => Deno.dlopen('libc.so.6', {}),\n"
        f"  pyodide: () => Deno.statSync({str(pyodide.directory / 'pyodide.mjs')!r}).isFile,\n"
        "};\n"
        "for (const [name, fn] of Object.entries(tries)) {\n"
        "  try { fn(); out[name] = 'allowed'; } catch (e) { out[name] = e.name; }\n"
        "}\n"
        f"try {{ await fetch('http://{server}/'); out.net = 'allowed'; }} "
        "catch (e) { out.net = e.name; }\n"
        "console.log(JSON.stringify(out));\n"
    )
    settings = DenoInterpreter().settings
    argv = deno_internals._base_argv(deno, [str(pyodide.directory), str(script)], None, settings)
    env = deno_internals._deno_env(cache)
    done = subprocess.run([*argv, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome.pop("pyodide") == "allowed"
    assert outcome == dict.fromkeys(
        ["read", "denoDir", "env", "run", "write", "sys", "ffi", "net"], "NotCapable"
    ), outcome
    assert "-A" not in argv
    assert "--allow-all" not in argv
    assert os.environ.get("RLM_DENO_TEST_SECRET") == SECRET

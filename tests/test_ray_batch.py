"""``rlm batch --executor ray`` on a local two-node Ray cluster, with a worker killed mid-row.

The test starts the cluster itself on 127.0.0.1 (a head and a worker node, one CPU each, no
dashboard, no usage stats) and stops it by process group. Each row's guest code notes which
row it runs, then waits on a slow model call; the test finds the Ray worker above a running
guest, SIGKILLs it, and every row must still land in the output exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_core.testing import OpenAIStubServer

ROWS = 6
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        # Under `uv run` (as scripts/test runs pytest) Ray would give the workers a virtualenv
        # built from a copy of the project (~1 GB on disk, 12 s here); the nodes already run
        # this environment.
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        # On a busy 2-core machine a node's agents and workers start slowly: the defaults
        # (tens of seconds) kill the node or the worker before it is up.
        "RAY_agent_register_timeout_ms": "300000",
        "RAY_raylet_start_wait_time_s": "300",
        "RAY_worker_register_timeout_seconds": "300",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


def _start_node(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    # --block keeps `ray start` in the foreground as the leader of a new process group that
    # holds the node's daemons and workers, so teardown stops exactly this cluster.
    with log.open("wb") as out:
        return subprocess.Popen(
            # Ray's raylet gives its agents a fixed ~15 s to start; on a shared, busy 2-core
            # machine they can take longer, so the nodes get a higher CPU priority (as root;
            # elsewhere `nice` warns and runs them at the normal one).
            [
                "nice",
                "-n",
                "-10",
                str(BIN / "ray"),
                "start",
                "--block",
                "--disable-usage-stats",
                *args,
            ],
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            time.sleep(0.5)  # let the group's other members exit too
        except subprocess.TimeoutExpired:
            continue


def _wait_for_nodes(address: str, count: int, nodes: list[subprocess.Popen[bytes]]) -> None:
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(sum(1 for n in ray.nodes() if n['Alive']))"
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for node in nodes:
            assert node.poll() is None, "a Ray node exited while starting; see its log"
        out = subprocess.run(
            [sys.executable, "-c", probe, address],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(1)
    raise AssertionError(f"the Ray cluster did not reach {count} nodes within 180 s")


def _guest_and_its_ray_worker(started: Path) -> tuple[str, int] | None:
    """A running guest that has written its start file, and the Ray worker above it.

    Guests see only their own PID namespace, so each names its file after its start time (the
    same inside and out); the host finds the guest among its processes by that time.
    """
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or "<rlm-guest>" not in _cmdline(int(entry)):
            continue
        mark = _start_time(int(entry))
        pid = int(entry)
        while pid > 1 and (started / mark).exists():
            if _cmdline(pid).startswith("ray::"):
                return mark, pid
            pid = _parent(pid)
    return None


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    temp = Path(tempfile.mkdtemp(prefix="rlmray-", dir="/tmp"))  # short: Ray's socket paths
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0"]
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        nodes.append(
            _start_node(
                [
                    "--head",
                    "--port",
                    str(port),
                    "--include-dashboard=false",
                    "--temp-dir",
                    str(temp),
                    *common,
                ],
                temp / "head.log",
            )
        )
        _wait_for_nodes(address, 1, nodes)
        nodes.append(_start_node(["--address", address, *common], temp / "worker.log"))
        _wait_for_nodes(address, 2, nodes)
        yield address
    finally:
        for node in reversed(nodes):
            _stop(node)
    # Each run leaves its session files and logs here (Ray even builds a virtualenv under
    # them); a straggling Ray process may still hold some, which must not fail the run. A
    # cluster that did not start raised above and keeps its node logs for the reader.
    shutil.rmtree(temp, ignore_errors=True)


def test_rows_land_once_when_a_ray_worker_dies(ray_cluster: str, tmp_path: Path) -> None:
    started = tmp_path / "started"
    started.mkdir()
    # Guest code: note which row this guest runs, then wait on a slow model call.
    mark = "open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19]"
    reply = (
        "```python\nimport os\n"
        f"open(os.path.join({str(started)!r}, {mark}), 'w').write(str(len(text)))\n"
        "note = llm_query('say hi')\nSUBMIT(len(text))\n```"
    )
    rows, out = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    rows.write_text(
        "".join(json.dumps({"id": f"r{i}", "text": "x" * i}) + "\n" for i in range(ROWS))
    )
    with OpenAIStubServer([reply], latency_s=1.5) as stub:
        command = [
            sys.executable,
            "-c",
            "import sys; from rlm_core.cli import main; sys.exit(main(sys.argv[1:]))",
            "batch",
            str(rows),
            "--output",
            str(out),
            "--signature",
            "text -> n: int",
            "--model",
            "openai/stub",
            "--api-base",
            stub.api_base,
            "--interpreter",
            "subprocess",
            "--executor",
            "ray",
            "--rpm",
            "6000",  # every model call reserves from the cluster-wide limits actor
            "--max-tokens",
            "10000000",
        ]
        driver = subprocess.Popen(
            command,
            env={**_env(), "RAY_ADDRESS": ray_cluster},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 240
            while (found := _guest_and_its_ray_worker(started)) is None:
                assert driver.poll() is None, driver.communicate()[1]
                assert time.monotonic() < deadline, "no row started on the cluster"
                time.sleep(0.05)
            victim, worker = found
            os.kill(worker, signal.SIGKILL)  # the worker dies mid-row
            _, stderr = driver.communicate(timeout=300)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    assert driver.returncode == 0, stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(f"r{i}" for i in range(ROWS))
    assert all(r["ok"] for r in records), records
    assert {r["id"]: r["outputs"]["n"] for r in records} == {f"r{i}": i for i in range(ROWS)}
    # The killed worker's row ran again in another worker process.
    killed_row = (started / victim).read_text()
    reran = [p for p in started.iterdir() if p.name != victim and p.read_text() == killed_row]
    assert reran, f"row with text length {killed_row} was not rerun"

"""The Docker backend against a real engine: hardening, limits, timeouts, leaks, errors, size.

Start an engine and build the image first (``scripts/docker-engine.sh start build-image``).
Without one these tests skip with the reason, or fail when ``RLM_REQUIRED_BACKENDS`` names
docker (as in CI).
"""

from __future__ import annotations

import ast
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import docker
import docker.errors
import pytest

from rlm_conformance import REQUIRED_ENV
from rlm_conformance.eventloop import loop_gaps
from rlm_core.bridge.session import GuestChannel
from rlm_core.errors import ConfigError, InterpreterUnavailableError, SessionLostError
from rlm_docker import DEFAULT_IMAGE, DockerInterpreter
from rlm_docker._engine import LABEL_MANAGED, LABEL_OWNER_PID, connect

pytestmark = pytest.mark.anyio


def _unavailable(reason: str) -> None:
    required = {p.strip().lower() for p in os.environ.get(REQUIRED_ENV, "").split(",")}
    if "docker" in required:
        pytest.fail(f"{reason} ({REQUIRED_ENV} requires docker)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.APIClient]:
    """A client of the default engine with the default image present, or a skip/fail."""
    try:
        client = connect(None, 30)
    except InterpreterUnavailableError as exc:
        _unavailable(str(exc))
        raise AssertionError("unreachable") from None
    if not client.images(name=DEFAULT_IMAGE):
        client.close()
        _unavailable(f"image {DEFAULT_IMAGE} is missing: run scripts/docker-engine.sh build-image")
    yield client
    client.close()


def ours(client: docker.APIClient, pid: int | None = None) -> list[dict[str, Any]]:
    """This process's (or ``pid``'s) containers, running or not."""
    label = f"{LABEL_OWNER_PID}={pid or os.getpid()}"
    found: list[dict[str, Any]] = client.containers(
        all=True, filters={"label": [f"{LABEL_MANAGED}=1", label]}
    )
    return found


@pytest.fixture(autouse=True)
def no_leaked_containers(engine: docker.APIClient) -> Iterator[None]:
    """Every test must leave no container of this process behind."""
    yield
    leaked = ours(engine)
    for info in leaked:
        engine.remove_container(info["Id"], force=True)
    assert not leaked, f"containers left behind: {[info['Names'] for info in leaked]}"


@pytest.fixture
async def sandbox() -> AsyncIterator[DockerInterpreter]:
    async with DockerInterpreter() as interp:
        yield interp


async def probe(interp: DockerInterpreter, code: str) -> dict[str, object]:
    """Run ``code`` (which sets ``out``, a dict) and return ``out``."""
    result = await interp.execute(code + "\nimport json as _j\nprint(_j.dumps(out))", timeout=30)
    assert result.error is None, str(result.error)
    probed: dict[str, object] = json.loads(result.stdout)
    return probed


SANDBOX_PROBE = textwrap.dedent(
    """
    import os, errno
    def cgroup(*names):
        for name in names:
            for root in ("/sys/fs/cgroup/", "/sys/fs/cgroup/unified/"):
                try:
                    with open(root + name) as f:
                        return f.read().strip()
                except OSError:
                    pass
        return None
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
                  if ":\\t" in line)
    def can_write(path):
        try:
            with open(path, "w") as f:
                f.write("x")
            os.remove(path)
            return "ok"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))
    mounts = [line.split() for line in open("/proc/mounts")]
    tmp = [m for m in mounts if m[1] == "/tmp"]
    root = [m for m in mounts if m[1] == "/"]
    out = {
        "uid": os.getuid(), "gid": os.getgid(),
        "cap_eff": int(status["CapEff"].strip(), 16), "cap_bnd": int(status["CapBnd"].strip(), 16),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "write_root": can_write("/rlm-probe"), "write_usr": can_write("/usr/rlm-probe"),
        "write_tmp": can_write("/tmp/rlm-probe"),
        "tmp_fs": tmp[-1][2] if tmp else None, "tmp_opts": tmp[-1][3] if tmp else None,
        "root_opts": root[-1][3] if root else None,
        "memory": cgroup("memory/memory.limit_in_bytes", "memory.max"),
        "pids": cgroup("pids/pids.max", "pids.max"),
        "cpu_quota": cgroup("cpu/cpu.cfs_quota_us", "cpu,cpuacct/cpu.cfs_quota_us", "cpu.max"),
        "env": sorted(os.environ),
    }
    """
)


# ---- hardened defaults, and each one relaxed ----------------------------------------------


async def test_the_default_container_is_locked_down(sandbox: DockerInterpreter) -> None:
    os.environ["RLM_DOCKER_TEST_SECRET"] = "s3cret"  # set after start: must not matter either
    out = await probe(sandbox, SANDBOX_PROBE)
    del os.environ["RLM_DOCKER_TEST_SECRET"]
    assert (out["uid"], out["gid"]) == (65534, 65534), "runs as nobody, not root"
    assert out["cap_eff"] == 0, "every capability dropped"
    assert out["cap_bnd"] == 0, "and none can come back"
    assert out["no_new_privs"] == "1"
    assert out["interfaces"] == ["lo"], "no network but loopback"
    assert out["write_root"] == "EROFS", "read-only root"
    assert out["write_usr"] == "EROFS", "read-only root"
    assert out["write_tmp"] == "ok", "a writable /tmp"
    assert out["tmp_fs"] == "tmpfs", "which is a tmpfs"
    assert out["memory"] == str(3 << 30)
    assert out["pids"] == "128"
    assert out["cpu_quota"] in ("100000", "100000 100000"), "one CPU"
    assert isinstance(out["env"], list)
    assert not any("SECRET" in name for name in out["env"])


async def test_every_default_can_be_relaxed(engine: docker.APIClient) -> None:
    relaxed = DockerInterpreter(
        network_mode="host",
        read_only=False,
        user="0:0",
        cap_drop=(),
        no_new_privileges=False,
        memory=None,
        cpus=None,
        pids_limit=None,
        tmpfs_size=None,
    )
    assert relaxed.capabilities.network is True
    async with relaxed:
        out = await probe(relaxed, SANDBOX_PROBE)
    assert out["uid"] == 0
    assert out["cap_eff"] != 0
    assert out["no_new_privs"] == "0"
    assert out["interfaces"] != ["lo"]
    assert out["write_root"] == "ok"
    assert out["tmp_fs"] is None, "no tmpfs mounted at /tmp"
    assert out["pids"] == "max"
    assert out["cpu_quota"] in ("-1", "max 100000")
    assert int(str(out["memory"]).replace("max", str(1 << 62))) > 1 << 40


async def test_limits_take_the_configured_values(engine: docker.APIClient) -> None:
    async with DockerInterpreter(
        memory="300m", cpus=0.5, pids_limit=40, tmpfs_size="8m", cap_drop="NET_RAW"
    ) as interp:
        out = await probe(interp, SANDBOX_PROBE)
        full = await interp.execute("open('/tmp/fill', 'wb').write(b'x' * 12_000_000)", timeout=30)
    assert out["memory"] == str(300 << 20)
    assert out["pids"] == "40"
    assert out["cpu_quota"] in ("50000", "50000 100000")
    assert "size=8192k" in str(out["tmp_opts"])
    assert full.error is not None
    assert "No space left" in full.error.message


async def test_a_cell_over_the_memory_limit_loses_the_session_and_says_why(
    engine: docker.APIClient,
) -> None:
    async with DockerInterpreter(memory="128m") as interp:
        container_id = interp.container_id
        assert container_id is not None
        with pytest.raises(SessionLostError, match="memory limit"):
            await interp.execute("hog = b'x' * 400_000_000", timeout=60)
        with pytest.raises(SessionLostError):
            await interp.execute("1")
    with pytest.raises(docker.errors.NotFound):
        engine.inspect_container(container_id)


async def test_the_process_limit_stops_a_thread_bomb(engine: docker.APIClient) -> None:
    async with DockerInterpreter(pids_limit=16) as interp:
        result = await interp.execute(
            "import threading, time\n"
            "for _ in range(64):\n"
            "    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()",
            timeout=30,
        )
        assert result.error is not None
        assert "thread" in result.error.message
        assert (await interp.execute("6 * 7", timeout=30)).value == "42"


async def test_settings_reach_the_engine(engine: docker.APIClient) -> None:
    async with DockerInterpreter(memory="1g", cpus=1.5, ulimits={"nofile": 512}) as interp:
        assert interp.container_id is not None
        host_config = engine.inspect_container(interp.container_id)["HostConfig"]
        limit = await interp.execute("import resource; resource.getrlimit(resource.RLIMIT_NOFILE)")
    assert host_config["NetworkMode"] == "none"
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["SecurityOpt"] == ["no-new-privileges"]
    assert host_config["Memory"] == host_config["MemorySwap"] == 1 << 30
    assert host_config["NanoCpus"] == 1_500_000_000
    assert limit.value == "(512, 512)"


# ---- life cycle, timeouts and leaks -------------------------------------------------------


async def test_containers_are_labelled_and_removed_on_close(engine: docker.APIClient) -> None:
    interp = DockerInterpreter()
    await interp.start()
    assert interp.container_id is not None
    labels = engine.inspect_container(interp.container_id)["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == "1"
    assert labels[LABEL_OWNER_PID] == str(os.getpid())
    assert len(ours(engine)) == 1
    await interp.aclose()
    assert ours(engine) == []


@pytest.mark.parametrize("after_s", [0.0, 0.05, 0.2])
async def test_a_start_cancelled_half_way_leaves_no_container(
    engine: docker.APIClient, after_s: float
) -> None:
    interp = DockerInterpreter()
    with anyio.move_on_after(after_s):
        await interp.start()
    await interp.aclose()
    # The autouse fixture checks that no container of this process is left.


async def test_a_timeout_interrupts_the_cell_and_keeps_the_session(
    sandbox: DockerInterpreter,
) -> None:
    await sandbox.execute("kept = 'still here'")
    result = await sandbox.execute("while True: pass", timeout=0.5)
    assert result.timed_out
    assert (await sandbox.execute("kept", timeout=30)).value == "'still here'"


async def test_a_container_that_ignores_the_interrupt_is_killed(engine: docker.APIClient) -> None:
    interp = DockerInterpreter(interrupt_grace_s=1.0)
    async with interp:
        container_id = interp.container_id
        assert container_id is not None
        stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
        with pytest.raises(SessionLostError, match="did not stop"):
            await interp.execute(stubborn, timeout=0.5)
        with pytest.raises(SessionLostError):
            await interp.execute("1")
        with pytest.raises(docker.errors.NotFound):
            engine.inspect_container(container_id)


async def test_a_crashing_guest_reports_its_stderr_and_exit_code(
    sandbox: DockerInterpreter,
) -> None:
    # The runtime's own stderr (not the cell's, which is captured) is the attach stream's
    # stderr; it must come back demultiplexed in the error, not mixed into the protocol.
    crash = (
        "import gc, os\n"
        "driver = [o for o in gc.get_objects() if type(o).__name__ == 'StdioDriver'][0]\n"
        "os.write(driver.diag_fd, b'guest is going down\\n')\n"
        "os._exit(3)"
    )
    with pytest.raises(SessionLostError) as caught:
        await sandbox.execute(crash, timeout=30)
    assert "guest is going down" in str(caught.value)
    assert "code 3" in str(caught.value)


CHILD = textwrap.dedent(
    """
    import anyio, sys
    from rlm_docker import DockerInterpreter

    async def main() -> None:
        interp = DockerInterpreter()
        await interp.start()
        print(interp.container_id, flush=True)
        if sys.argv[1] == "hang":
            await interp.execute("while True: pass")

    anyio.run(main)
    """
)


def run_child(mode: str) -> tuple[subprocess.Popen[str], str]:
    """Start a host process that opens a DockerInterpreter; return it and its container id."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    with child.stdout:
        return child, child.stdout.readline().strip()


async def test_orphans_of_a_killed_host_process_are_removed_by_the_next_start(
    engine: docker.APIClient,
) -> None:
    child, orphan = await anyio.to_thread.run_sync(run_child, "hang")
    try:
        assert orphan, "the child did not start its container"
        await anyio.sleep(0.3)  # let the cell start spinning
        child.send_signal(signal.SIGKILL)
        await anyio.to_thread.run_sync(child.wait)
        # Its container outlives it: the guest is busy, so the closed stdin goes unnoticed.
        assert engine.inspect_container(orphan)["State"]["Running"] is True
        assert [info["Id"] for info in ours(engine, child.pid)] == [orphan]
        async with DockerInterpreter() as interp:
            assert orphan in interp.orphans_removed
        assert ours(engine, child.pid) == []
    finally:
        child.kill()
        child.wait()
        for info in ours(engine, child.pid):
            engine.remove_container(info["Id"], force=True)


async def test_a_process_exiting_without_closing_removes_its_containers(
    engine: docker.APIClient,
) -> None:
    child, container_id = await anyio.to_thread.run_sync(run_child, "exit")
    assert await anyio.to_thread.run_sync(child.wait) == 0
    assert container_id
    with pytest.raises(docker.errors.NotFound):
        engine.inspect_container(container_id)


# ---- clear errors -------------------------------------------------------------------------


async def test_no_engine_says_how_to_start_one(tmp_path: object) -> None:
    interp = DockerInterpreter(base_url=f"unix://{tmp_path}/missing.sock")
    with pytest.raises(InterpreterUnavailableError, match=r"docker-engine\.sh start"):
        await interp.start()
    await interp.aclose()


async def test_an_explicit_engine_socket_is_used(engine: docker.APIClient) -> None:
    socket_url = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    async with DockerInterpreter(base_url=socket_url) as interp:
        assert (await interp.execute("1 + 1")).value == "2"


async def test_a_missing_image_says_how_to_build_or_pull_it(engine: docker.APIClient) -> None:
    interp = DockerInterpreter(image="rlm-no-such-image:0")
    with pytest.raises(InterpreterUnavailableError, match=r"build-image.*docker pull") as caught:
        await interp.start()
    assert "rlm-no-such-image:0" in str(caught.value)
    await interp.aclose()


def import_image(client: docker.APIClient, tag: str, files: dict[str, str]) -> None:
    """Import a FROM-scratch image holding ``files`` (image path -> host path)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
        for inside, outside in files.items():
            tar.add(outside, arcname=inside)
    client.import_image_from_data(buffer.getvalue(), repository=tag.split(":")[0], tag="test")


@pytest.fixture(scope="module")
def broken_images(engine: docker.APIClient) -> Iterator[tuple[str, str]]:
    import_image(engine, "rlm-test-nopython:test", {})
    # An interpreter without its standard library: it exists but cannot run anything.
    python = os.path.realpath("/usr/bin/python3.11")
    libs = subprocess.run(["ldd", python], capture_output=True, text=True, check=True).stdout
    files = {"usr/bin/python3": python}
    for line in libs.splitlines():
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            files[path.lstrip("/")] = os.path.realpath(path)
    import_image(engine, "rlm-test-nostdlib:test", files)
    yield "rlm-test-nopython:test", "rlm-test-nostdlib:test"
    for tag in ("rlm-test-nopython:test", "rlm-test-nostdlib:test"):
        engine.remove_image(tag, force=True)


async def test_an_image_without_python_is_unavailable(broken_images: tuple[str, str]) -> None:
    interp = DockerInterpreter(image=broken_images[0])
    with pytest.raises(InterpreterUnavailableError, match="no usable 'python3'"):
        await interp.start()
    await interp.aclose()


async def test_an_image_whose_python_cannot_run_the_guest_is_unavailable(
    broken_images: tuple[str, str],
) -> None:
    interp = DockerInterpreter(image=broken_images[1])
    with pytest.raises(InterpreterUnavailableError, match=r"CPython 3\.8") as caught:
        await interp.start()
    assert "encoding" in str(caught.value), "the guest's stderr explains the failure"
    await interp.aclose()


async def test_an_unknown_runtime_is_named_in_the_error(engine: docker.APIClient) -> None:
    interp = DockerInterpreter(runtime="rlm-no-such-runtime")
    with pytest.raises(InterpreterUnavailableError, match="rlm-no-such-runtime"):
        await interp.start()
    await interp.aclose()


# ---- large inputs -------------------------------------------------------------------------


async def test_the_variable_limit_follows_the_memory_limit(engine: docker.APIClient) -> None:
    async with DockerInterpreter(memory="320m") as interp:
        limit = interp.capabilities.max_variable_bytes
        assert limit == 32 << 20
        with pytest.raises(ConfigError, match="max_variable_bytes"):
            await interp.set_variables({"too_big": b"x" * (limit + 1)})
        # Just under the stated limit fits in the container's memory, as a str and as bytes.
        await interp.set_variables({"text": "é" * ((limit - 2) // 2), "blob": b"\0" * limit})
        result = await interp.execute("len(text), len(blob)", timeout=30)
        assert result.value == f"({(limit - 2) // 2}, {limit})"


async def test_a_one_gigabyte_variable_binds_without_blocking_the_loop(
    sandbox: DockerInterpreter,
) -> None:
    size = 1 << 30
    data = "ab" * (size // 2)
    async with loop_gaps() as gaps:
        await sandbox.set_variables({"big": data})
    del data
    result = await sandbox.execute("len(big), big[:4], big[-4:]", timeout=60)
    assert ast.literal_eval(str(result.value)) == (size, "abab", "abab")
    # Streaming a gigabyte takes seconds; the event loop must keep running meanwhile.
    assert max(gaps) < 3.0, f"the event loop stalled for {max(gaps):.1f} s"


class KilledDuringStart(DockerInterpreter):
    """A sandbox whose container is killed (like ``docker kill``) before the guest is ready."""

    async def open_channel(self) -> GuestChannel:
        channel = await super().open_channel()
        assert self._client is not None
        assert self.container_id is not None
        self._client.kill(self.container_id)
        return channel


async def test_a_container_killed_during_start_is_a_lost_session_not_a_bad_image(
    engine: docker.APIClient,
) -> None:
    interp = KilledDuringStart()
    with pytest.raises(SessionLostError, match="exited with code 137") as caught:
        await interp.start()
    assert "did not run the guest" not in str(caught.value)
    await interp.aclose()

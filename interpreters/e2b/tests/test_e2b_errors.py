"""Clear, fast errors: missing credentials, refused sandboxes, and sandboxes that vanish."""

from __future__ import annotations

import socket
import time

import pytest

from rlm_conformance.faults import lose_sandbox_mid_cell
from rlm_conformance.fixtures import context_fixture
from rlm_core.errors import (
    ConfigError,
    InterpreterUnavailableError,
    SessionError,
    SessionLostError,
)
from rlm_e2b import E2BInterpreter
from rlm_e2b.testing import E2BStandIn

pytestmark = pytest.mark.anyio


standin = context_fixture(E2BStandIn)


@pytest.fixture
def no_e2b_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("E2B_API_KEY", "E2B_DEBUG", "E2B_API_URL", "E2B_SANDBOX_URL", "E2B_DOMAIN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_e2b_environment")
async def test_missing_credentials_fail_at_once_naming_the_variable() -> None:
    started = time.perf_counter()
    with pytest.raises(InterpreterUnavailableError) as caught:
        await E2BInterpreter().start()
    assert time.perf_counter() - started < 2
    message = str(caught.value)
    assert "E2B_API_KEY" in message
    assert "standin=True" in message


@pytest.mark.usefixtures("no_e2b_environment")
async def test_unreachable_api_fails_fast_naming_the_endpoint() -> None:
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    started = time.perf_counter()
    with pytest.raises(InterpreterUnavailableError, match="E2B_API_URL") as caught:
        await E2BInterpreter(api_key="e2b_x", api_url=url, retries=0).start()
    assert url in str(caught.value)
    assert time.perf_counter() - started < 10


async def test_a_wrong_api_key_names_the_variable() -> None:
    with E2BStandIn(api_key="e2b_right") as server:
        interp = E2BInterpreter(
            api_key="e2b_wrong", api_url=server.url, sandbox_url=server.url, retries=0
        )
        with pytest.raises(InterpreterUnavailableError, match="E2B_API_KEY"):
            await interp.start()
        assert server.live_sandboxes == []


async def test_quota_exhaustion_names_the_concurrency_limit(standin: E2BStandIn) -> None:
    standin.fail_next_create(
        429, "You have reached the maximum number of concurrent E2B sandboxes (20)"
    )
    with pytest.raises(InterpreterUnavailableError) as caught:
        await standin.interpreter(retries=0).start()
    message = str(caught.value)
    assert "maximum number of concurrent" in message  # E2B's own words are kept
    assert "limit" in message
    assert "quota" in message


async def test_a_transient_rate_limit_is_retried_by_the_sdk(standin: E2BStandIn) -> None:
    standin.fail_next_create(429, "rate limited")
    async with standin.interpreter(retries=1) as interp:
        assert (await interp.execute("1")).value == "1"
    assert standin.methods()[:1] == ["POST /v2/sandboxes"]
    assert len(standin.calls_named("POST /v2/sandboxes")) == 2


async def test_an_unknown_template_names_the_template_setting(standin: E2BStandIn) -> None:
    standin.fail_next_create(404, "template 'nope' not found")
    with pytest.raises(InterpreterUnavailableError, match="template=") as caught:
        await standin.interpreter(template="nope").start()
    assert "'nope'" in str(caught.value)


async def test_a_refused_timeout_names_the_timeout_setting(standin: E2BStandIn) -> None:
    standin.fail_next_create(400, "Timeout cannot be greater than 1 hours")
    with pytest.raises(ConfigError, match="timeout_s"):
        await standin.interpreter(timeout_s=86_400).start()


async def test_a_template_without_python_names_the_python_setting(standin: E2BStandIn) -> None:
    interp = standin.interpreter(python="python3-not-in-this-template")
    with pytest.raises(InterpreterUnavailableError, match="python=") as caught:
        await interp.start()
    assert "not found" in str(caught.value)  # bash's own diagnosis, from the guest's stderr
    await interp.aclose()
    assert standin.live_sandboxes == []


async def test_a_sandbox_that_vanishes_mid_cell_loses_the_session(standin: E2BStandIn) -> None:
    interp = standin.interpreter()
    await interp.start()
    sandbox_id = interp.sandbox_id
    assert sandbox_id is not None
    lost, took = await lose_sandbox_mid_cell(
        interp, lambda: standin.vanish(sandbox_id), cell_timeout_s=30
    )
    assert took < 10
    assert sandbox_id in str(lost)
    with pytest.raises(SessionLostError):
        await interp.execute("1")
    await interp.aclose()


async def test_a_sandbox_that_vanished_between_cells_loses_the_session(
    standin: E2BStandIn,
) -> None:
    async with standin.interpreter() as interp:
        assert interp.sandbox_id is not None
        standin.vanish(interp.sandbox_id)
        with pytest.raises(SessionLostError, match=r"was not found|ended|stopped"):
            await interp.execute("1")


async def test_forged_output_on_the_sandbox_stdout_ends_the_session(standin: E2BStandIn) -> None:
    """Guest code writing raw text past the encoder is a protocol violation, not a hang."""
    async with standin.interpreter() as interp:
        with pytest.raises(SessionError):
            await interp.execute(
                "import os\n"
                "fd = os.open('/proc/%d/fd/1' % os.getppid(), os.O_WRONLY)\n"
                "os.write(fd, b'this is not base64!\\n')\n"
                "import time; time.sleep(5)",
                timeout=20,
            )
    assert standin.live_sandboxes == []

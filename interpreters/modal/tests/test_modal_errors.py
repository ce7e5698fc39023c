"""The Modal backend fails fast and says what to change: credentials, reachability, quota,
image, the guest command, and sandboxes that vanish mid-run."""

from __future__ import annotations

import socket
import time

import anyio
import modal.config
import modal.exception
import pytest
from grpclib import Status

from rlm_conformance.faults import lose_sandbox_mid_cell
from rlm_conformance.fixtures import context_fixture
from rlm_core.config import load_settings
from rlm_core.errors import ConfigError, InterpreterUnavailableError, SessionLostError
from rlm_modal import ModalInterpreter
from rlm_modal.testing import ModalStandIn

pytestmark = pytest.mark.anyio


standin = context_fixture(ModalStandIn)


@pytest.fixture
def no_modal_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token in the environment, and none in a ~/.modal.toml profile either."""
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", "/nonexistent/modal.toml")
    monkeypatch.setattr(modal.config, "_user_config", {})


@pytest.mark.usefixtures("no_modal_credentials")
async def test_missing_credentials_fail_at_once_naming_the_variables() -> None:
    """No credentials and no stand-in: start() fails within 2 s, naming both variables."""
    interp = ModalInterpreter()
    started = time.perf_counter()
    with pytest.raises(InterpreterUnavailableError) as caught:
        await interp.start()
    assert time.perf_counter() - started < 2.0
    assert "MODAL_TOKEN_ID" in str(caught.value)
    assert "MODAL_TOKEN_SECRET" in str(caught.value)
    await interp.aclose()


@pytest.mark.usefixtures("no_modal_credentials")
async def test_half_the_credentials_names_the_missing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-dummy")
    with pytest.raises(InterpreterUnavailableError, match=r"\(MODAL_TOKEN_SECRET not set\)"):
        await ModalInterpreter().start()


async def test_unreachable_server_fails_within_the_connect_timeout() -> None:
    """A server that accepts connections but never answers costs connect_timeout_s, not a
    minute of SDK retries; the message names the address setting and the timeout setting."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        interp = ModalInterpreter(
            server_url=url, token_id="ak-dummy", token_secret="as-dummy", connect_timeout_s=1.0
        )
        started = time.perf_counter()
        with pytest.raises(InterpreterUnavailableError) as caught:
            await interp.start()
        elapsed = time.perf_counter() - started
    assert elapsed < 3.0
    message = str(caught.value)
    assert url in message
    assert "MODAL_SERVER_URL" in message
    assert "RLM_MODAL_CONNECT_TIMEOUT_S" in message


async def test_rejected_token_names_the_credential_variables(standin: ModalStandIn) -> None:
    standin.fail_next("AppGetOrCreate", Status.UNAUTHENTICATED, "Invalid token")
    with pytest.raises(InterpreterUnavailableError) as caught:
        await standin.interpreter().start()
    assert "Invalid token" in str(caught.value)
    assert "MODAL_TOKEN_ID" in str(caught.value)
    assert isinstance(caught.value.__cause__, modal.exception.AuthError)


async def test_quota_error_names_the_resource_settings(standin: ModalStandIn) -> None:
    """Modal's RESOURCE_EXHAUSTED on create says which settings to lower."""
    standin.fail_next(
        "SandboxCreateV2", Status.RESOURCE_EXHAUSTED, "workspace limit of 10 sandboxes reached"
    )
    with pytest.raises(InterpreterUnavailableError) as caught:
        await standin.interpreter(cpu=8.0, memory=32768).start()
    message = str(caught.value)
    assert "workspace limit of 10 sandboxes reached" in message
    assert "cpu=" in message
    assert "RLM_MODAL_CPU" in message
    assert "now 8.0" in message
    assert "memory=" in message
    assert "RLM_MODAL_MEMORY" in message
    assert "now 32768 MiB" in message
    assert standin.running_sandbox_ids() == []


async def test_failed_image_build_names_the_image_setting(standin: ModalStandIn) -> None:
    standin.fail_next_image_build("pull access denied for python:9.99")
    with pytest.raises(InterpreterUnavailableError) as caught:
        await standin.interpreter(image="python:9.99").start()
    message = str(caught.value)
    assert "'python:9.99'" in message
    assert "pull access denied" in message
    assert "image=" in message
    assert "RLM_MODAL_IMAGE" in message
    assert "SandboxCreateV2" not in standin.methods()


async def test_missing_guest_python_names_the_setting_and_leaves_no_sandbox(
    standin: ModalStandIn,
) -> None:
    """A failure after the sandbox exists terminates it: nothing bills after a failed start."""
    with pytest.raises(InterpreterUnavailableError, match=r"python=") as caught:
        await standin.interpreter(python="/nonexistent/python3").start()
    assert "/nonexistent/python3" in str(caught.value)
    assert standin.methods()[-1] == "SandboxTerminateV2"
    assert standin.running_sandbox_ids() == []


async def test_sandbox_vanishing_between_cells_raises_session_lost(standin: ModalStandIn) -> None:
    interp = standin.interpreter()
    await interp.start()
    await interp.execute("x = 1", timeout=30)
    assert interp.sandbox_id is not None
    await anyio.to_thread.run_sync(standin.vanish, interp.sandbox_id)
    with anyio.fail_after(20), pytest.raises(SessionLostError) as caught:
        await interp.execute("x", timeout=30)
    assert interp.sandbox_id in str(caught.value)
    with pytest.raises(SessionLostError):
        await interp.execute("x", timeout=30)
    await interp.aclose()


async def test_sandbox_vanishing_mid_cell_raises_session_lost_promptly(
    standin: ModalStandIn,
) -> None:
    """A cell waiting on a sandbox that dies ends with SessionLostError, not its timeout."""
    interp = standin.interpreter()
    await interp.start()
    sandbox_id = interp.sandbox_id
    assert sandbox_id is not None
    lost, took = await lose_sandbox_mid_cell(
        interp, lambda: standin.vanish(sandbox_id), cell_timeout_s=120
    )
    assert took < 20
    assert isinstance(lost.__cause__, modal.exception.NotFoundError)
    await interp.aclose()


async def test_sandbox_timeout_setting_is_enforced(standin: ModalStandIn) -> None:
    """timeout= reaches Modal; when the sandbox outlives it, the session is lost."""
    interp = standin.interpreter(timeout=1)
    await interp.start()
    assert interp.sandbox_id is not None
    assert standin.definition(interp.sandbox_id).timeout_secs == 1
    await anyio.sleep(1.5)
    with anyio.fail_after(20), pytest.raises(SessionLostError):
        await interp.execute("1", timeout=30)
    await interp.aclose()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RLM_MODAL_CPU", "lots"),
        ("RLM_MODAL_MEMORY", "1.5g"),
        ("RLM_MODAL_TIMEOUT", "soon"),
        ("RLM_MODAL_BLOCK_NETWORK", "maybe"),
    ],
)
def test_malformed_setting_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings().create_interpreter("modal")


@pytest.mark.parametrize(("setting", "value"), [("cpu", 0.0), ("memory", -1), ("timeout", 0)])
def test_non_positive_resources_are_refused(setting: str, value: float) -> None:
    with pytest.raises(ConfigError, match=setting):
        ModalInterpreter(**{setting: value})  # type: ignore[arg-type]

"""Settings reach Modal from arguments, configuration and ``modal://`` specs, and the
capabilities claimed match where the sandbox really runs."""

from __future__ import annotations

from pathlib import Path

import modal.config
import pytest
from modal_proto import api_pb2

from rlm_conformance.fixtures import context_fixture
from rlm_core.config import load_settings
from rlm_core.errors import ConfigError
from rlm_core.registry import create
from rlm_modal import ModalInterpreter
from rlm_modal.testing import STANDIN_CAPABILITIES, ModalStandIn

CLOUD = "https://api.modal.example"  # never contacted: these tests only read capabilities


standin = context_fixture(ModalStandIn)


@pytest.mark.anyio
async def test_environment_settings_reach_the_sandbox(
    standin: ModalStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RLM_MODAL_* settings and MODAL_* variables configure app, image, resources, lifetime,
    network, as they do for RLM(interpreter="modal")."""
    monkeypatch.setenv("MODAL_SERVER_URL", standin.url)
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-dummy")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-dummy")
    monkeypatch.setenv("RLM_MODAL_APP_NAME", "my-rlm-app")
    monkeypatch.setenv("RLM_MODAL_IMAGE", "python:3.12-slim")
    monkeypatch.setenv("RLM_MODAL_CPU", "0.25")
    monkeypatch.setenv("RLM_MODAL_MEMORY", "300")
    monkeypatch.setenv("RLM_MODAL_TIMEOUT", "90")
    monkeypatch.setenv("RLM_MODAL_BLOCK_NETWORK", "false")
    interp = load_settings().create_interpreter("modal", capabilities=STANDIN_CAPABILITIES)
    assert isinstance(interp, ModalInterpreter)
    async with interp:
        assert (await interp.execute("6 * 7", timeout=30)).value == "42"
        sandbox_id = interp.sandbox_id
    assert sandbox_id is not None
    calls = {c.method: c.request for c in standin.calls}
    assert calls["AppGetOrCreate"].app_name == "my-rlm-app"
    assert list(calls["ImageGetOrCreate"].image.dockerfile_commands) == ["FROM python:3.12-slim"]
    definition = standin.definition(sandbox_id)
    assert definition.resources.milli_cpu == 250
    assert definition.resources.memory_mb == 300
    assert definition.timeout_secs == 90
    assert definition.network_access.network_access_type == api_pb2.NetworkAccess.OPEN


@pytest.mark.anyio
async def test_credentials_and_server_from_the_modal_profile_file(
    standin: ModalStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Users who ran `modal token new` (a ~/.modal.toml profile) need no variables."""
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    profile_file = tmp_path / "modal.toml"
    profile_file.write_text("# read by the SDK at import; patched below\n")
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(profile_file))
    profile = {"token_id": "ak-profile", "token_secret": "as-profile", "server_url": standin.url}
    monkeypatch.setattr(modal.config, "_user_config", {modal.config._profile: profile})
    async with ModalInterpreter(capabilities=STANDIN_CAPABILITIES) as interp:
        assert (await interp.execute("1 + 1", timeout=30)).value == "2"
    assert standin.methods()[0] == "AppGetOrCreate"


def test_arguments_override_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_MODAL_CPU", "4")
    monkeypatch.setenv("RLM_MODAL_BLOCK_NETWORK", "0")
    interp = load_settings().create_interpreter("modal", cpu=1.0, block_network=True)
    assert isinstance(interp, ModalInterpreter)
    assert interp.cpu == 1.0
    assert interp.block_network is True


def test_a_direct_construction_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # One source of configuration: settings apply when a backend is created by name.
    monkeypatch.setenv("RLM_MODAL_CPU", "4")
    assert ModalInterpreter().cpu is None


def test_defaults_block_the_network_and_bound_the_lifetime() -> None:
    interp = ModalInterpreter()
    assert interp.block_network is True
    assert interp.timeout == 1800
    assert interp.app_name == "rlm-sandboxes"


def test_specs_give_image_and_typed_options() -> None:
    interp = create("modal://python:3.12-slim?cpu=2&memory=1024&block_network=false&app_name=x")
    assert isinstance(interp, ModalInterpreter)
    assert interp.image == "python:3.12-slim"
    assert (interp.cpu, interp.memory, interp.block_network, interp.app_name) == (
        2.0,
        1024,
        False,
        "x",
    )


def test_specs_with_unknown_options_or_bad_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="gpu"):
        create("modal://python:3.12-slim?gpu=A100")
    with pytest.raises(ConfigError, match="memory"):
        create("modal://python:3.12-slim?memory=lots")


def test_cloud_capabilities_follow_the_network_setting() -> None:
    blocked = ModalInterpreter(server_url=CLOUD).capabilities
    assert blocked.isolation == "container"
    assert blocked.network is False
    assert not blocked.host_files_visible
    assert not blocked.host_env_visible
    assert ModalInterpreter(server_url=CLOUD, block_network=False).capabilities.network is True


def test_a_local_server_is_not_credited_with_modal_isolation() -> None:
    """Against anything on loopback the interpreter claims no container, no network block."""
    caps = ModalInterpreter(server_url="http://127.0.0.1:9").capabilities
    assert caps.isolation == "process"
    assert caps.network
    assert caps.host_files_visible
    assert caps.host_env_visible


def test_explicit_capabilities_win() -> None:
    interp = ModalInterpreter(server_url="http://localhost:9", capabilities=STANDIN_CAPABILITIES)
    assert interp.capabilities == STANDIN_CAPABILITIES


def test_registry_specs_and_rlm_settings_configure_modal() -> None:
    """``modal://IMAGE?k=v`` specs and RLM_MODAL_<OPTION> settings reach the constructor."""
    interp = create("modal://python:3.12-slim?cpu=2&memory=1024&block_network=false")
    assert isinstance(interp, ModalInterpreter)
    assert (interp.image, interp.cpu, interp.memory, interp.block_network) == (
        "python:3.12-slim",
        2.0,
        1024,
        False,
    )
    settings = load_settings(
        environ={"RLM_MODAL_CPU": "3", "RLM_MODAL_APP_NAME": "zz", "RLM_MODAL_TIMEOUT": "60"}
    )
    configured = create("modal", defaults=settings.backend_options("modal"))
    assert isinstance(configured, ModalInterpreter)
    assert (configured.cpu, configured.app_name, configured.timeout) == (3.0, "zz", 60)


@pytest.mark.anyio
async def test_standin_option_runs_offline_and_claims_only_a_local_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    interp = create("modal?standin=true")
    assert isinstance(interp, ModalInterpreter)
    assert interp.capabilities == STANDIN_CAPABILITIES
    async with interp:
        assert (await interp.execute("6 * 7")).value == "42"

"""Backends are found by entry point and built from names, specs, classes and instances."""

from __future__ import annotations

import pytest

from rlm_core.errors import ConfigError
from rlm_core.registry import available, create, parse_spec
from rlm_mock import MockInterpreter
from rlm_subprocess import SubprocessInterpreter


def test_our_backends_are_installed_as_entry_points() -> None:
    assert {"mock", "subprocess"} <= set(available())


def test_name_builds_the_registered_class() -> None:
    assert isinstance(create("mock"), MockInterpreter)


def test_spec_options_are_coerced_to_the_declared_types() -> None:
    interp = create("subprocess?interrupt_grace_s=0.25")
    assert isinstance(interp, SubprocessInterpreter)
    assert interp.interrupt_grace_s == 0.25


def test_spec_target_goes_to_from_url() -> None:
    interp = create("subprocess:///usr/bin/python3.11")
    assert isinstance(interp, SubprocessInterpreter)
    assert interp.python == "/usr/bin/python3.11"


def test_explicit_options_beat_spec_options_which_beat_defaults() -> None:
    interp = create(
        "subprocess?interrupt_grace_s=1",
        defaults={"interrupt_grace_s": 9, "cwd": "/tmp"},
        interrupt_grace_s=3,
    )
    assert isinstance(interp, SubprocessInterpreter)
    assert interp.interrupt_grace_s == 3
    assert interp.cwd == "/tmp"


def test_unknown_name_suggests_the_closest_and_lists_installed() -> None:
    with pytest.raises(ConfigError) as info:
        create("subproces")
    message = str(info.value)
    assert "Did you mean 'subprocess'?" in message
    assert "Installed:" in message
    assert "mock" in message


def test_unknown_option_lists_the_real_ones() -> None:
    with pytest.raises(ConfigError, match=r"has no option 'memroy'.*interrupt_grace_s"):
        create("subprocess?memroy=1g")


def test_bad_option_value_says_which_option() -> None:
    with pytest.raises(ConfigError, match=r"option 'interrupt_grace_s'.*'soon' is invalid"):
        create("subprocess?interrupt_grace_s=soon")


def test_target_for_a_backend_without_from_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="takes no target"):
        create("mock://something")


def test_instances_pass_through_and_classes_are_instantiated() -> None:
    instance = MockInterpreter()
    assert create(instance) is instance
    assert isinstance(create(MockInterpreter), MockInterpreter)
    assert isinstance(create(lambda: MockInterpreter()), MockInterpreter)


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("docker", ("docker", "", {})),
        (
            "docker://python:3.12-slim?memory=2g&cpus=1",
            ("docker", "python:3.12-slim", {"memory": "2g", "cpus": "1"}),
        ),
        ("deno?memory_mb=512", ("deno", "", {"memory_mb": "512"})),
    ],
)
def test_parse_spec(spec: str, parsed: tuple[str, str, dict[str, str]]) -> None:
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["", "://x", "a://b?k=1&k=2"])
def test_bad_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_spec(spec)

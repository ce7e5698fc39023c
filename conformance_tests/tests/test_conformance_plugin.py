"""The pytest11 plugin and by-name mode, seen from the command line; the capability rules."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_conformance import requires
from rlm_conformance._requires import _KEYS, MARKER, unmet_requirements
from rlm_core.interpreter import Capabilities


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RLM_CONFORMANCE_STRICT", "RLM_REQUIRED_BACKENDS", "PYTEST_ADDOPTS"}
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_by_name_module_is_not_collected_without_the_option(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--pyargs", "rlm_conformance", "-q")
    assert proc.returncode == 5, proc.stdout + proc.stderr  # "no tests collected"


def test_by_name_mode_runs_the_suite(tmp_path: Path) -> None:
    proc = _pytest(
        tmp_path,
        "--pyargs",
        "rlm_conformance",
        "--rlm-interpreter",
        "mock",
        "--rlm-strict",
        "-q",
        "-k",
        "test_stdout_is_captured or test_default_submit or DO_NOT_OVERRIDE",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout


def test_by_name_mode_accepts_a_spec(tmp_path: Path) -> None:
    proc = _pytest(
        tmp_path,
        "--pyargs",
        "rlm_conformance",
        "--rlm-interpreter",
        "subprocess://?interrupt_grace_s=1",
        "-q",
        "-k",
        "test_infinite_loop_is_interrupted",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_by_name_mode_rejects_an_unknown_name(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--pyargs", "rlm_conformance", "--rlm-interpreter", "mokc", "-q")
    assert proc.returncode != 0
    assert "mock" in proc.stdout + proc.stderr  # the error suggests what is installed


def test_options_and_marker_are_registered(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--markers")
    assert f"@pytest.mark.{MARKER}" in proc.stdout
    proc = _pytest(tmp_path, "--help")
    assert "--rlm-strict" in proc.stdout
    assert "--rlm-interpreter" in proc.stdout


CAPS = Capabilities(
    isolation="process",
    network=True,
    writable_filesystem=True,
    survives_timeout=True,
    max_variable_bytes=50_000_000,
)


def _wanted(decorator: pytest.MarkDecorator) -> dict[str, object]:
    return dict(decorator.mark.kwargs)


def test_requirements_met() -> None:
    assert unmet_requirements(_wanted(requires(isolation_at_least="process")), CAPS) == []
    assert unmet_requirements(_wanted(requires(isolation_at_most="wasm", network=True)), CAPS) == []
    assert unmet_requirements(_wanted(requires(max_variable_bytes=10_000_000)), CAPS) == []


def test_requirements_unmet_are_explained() -> None:
    unmet = unmet_requirements(
        _wanted(requires(isolation_at_least="container", network=False, max_variable_bytes=10**8)),
        CAPS,
    )
    assert unmet == [
        "needs isolation >= container, backend declares process",
        "needs network=False, backend declares network=True",
        "needs variables of 100,000,000 bytes, backend declares max_variable_bytes=50,000,000",
    ]


def test_no_variable_limit_meets_any_size() -> None:
    caps = Capabilities(
        isolation="none",
        network=True,
        writable_filesystem=True,
        survives_timeout=True,
        max_variable_bytes=None,
    )
    assert unmet_requirements({"max_variable_bytes": 10**12}, caps) == []


def test_requires_takes_every_capability_of_the_contract() -> None:
    """A capability added to Capabilities must be gateable: requires() takes a keyword for it."""
    assert set(inspect.signature(requires).parameters) == _KEYS


def test_unknown_isolation_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        requires(isolation_at_least="vm")
    with pytest.raises(ValueError, match="unknown capability requirement"):
        unmet_requirements({"gpu": True}, CAPS)


def test_every_conformance_test_states_its_contract_clause() -> None:
    from rlm_conformance import InterpreterConformance

    names = [n for n in dir(InterpreterConformance) if n.startswith("test_")]
    assert len(names) >= 60
    undocumented = [n for n in names if not (getattr(InterpreterConformance, n).__doc__ or "")]
    assert undocumented == []


def test_every_group_module_says_what_to_check() -> None:
    from rlm_conformance import InterpreterConformance

    modules = {
        sys.modules[cls.__module__]
        for cls in InterpreterConformance.__mro__
        if cls.__module__.startswith("rlm_conformance._") and cls.__name__.endswith("Tests")
    }
    assert len(modules) >= 11
    for module in modules:
        assert "If this group fails" in (module.__doc__ or ""), module.__name__

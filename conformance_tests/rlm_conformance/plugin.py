"""The pytest11 plugin: registers the suite's options and markers in every pytest run.

Loaded automatically wherever ``rlmbox-conformance`` is installed, so consumers running with
``--strict-markers`` need no configuration. Only hook functions here may start with ``pytest_``
(pytest treats every such name in a plugin as a hook).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_conformance._availability import REQUIRED_ENV, STRICT_ENV
from rlm_conformance._requires import MARKER

_BY_NAME_MODULE = Path(__file__).with_name("test_by_name.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--rlm-strict`` and ``--rlm-interpreter``."""
    group = parser.getgroup("rlm-conformance", "rlm interpreter conformance suite")
    group.addoption(
        "--rlm-strict",
        action="store_true",
        default=False,
        dest="rlm_strict",
        help=(
            "fail, instead of skip, when an interpreter under test is unavailable "
            f"(also: {STRICT_ENV}=1, or list the backend in {REQUIRED_ENV})"
        ),
    )
    group.addoption(
        "--rlm-interpreter",
        action="store",
        default=None,
        dest="rlm_interpreter",
        metavar="SPEC",
        help=(
            "run the conformance suite against an installed backend: a name, or "
            "NAME://TARGET?key=value (use with --pyargs rlm_conformance)"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the capability marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**capabilities): skip the test unless the interpreter's capabilities meet "
        "these requirements (use rlm_conformance.requires)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect the by-name module only when ``--rlm-interpreter`` names a backend."""
    if collection_path == _BY_NAME_MODULE and not config.getoption("rlm_interpreter"):
        return True
    return None

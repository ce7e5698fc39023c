"""Import layers: the contract, the bridge and the suite never pull in the loop.

Every backend imports ``rlm_core.bridge.session``, and every pytest session where the
conformance suite is installed imports its plugin; neither may pay for the loop, litellm or
rich. Each check runs in a fresh interpreter, since this test process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LOOP_ONLY = ("rlm_core.rlm", "rlm_core.loop", "rlm_core.lm", "litellm", "rich")
"""Modules that belong to the loop and its dependencies, never to the layers below it."""


def _imported_after(statement: str) -> set[str]:
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(
    "statement",
    [
        "import rlm_core.bridge.session",
        "import rlm_core.bridge.process",
        "import rlm_core.interpreter",
        "import rlm_conformance.plugin",
        "import rlm_subprocess, rlm_mock, rlm_deno, rlm_docker",
    ],
)
def test_lower_layers_do_not_import_the_loop(statement: str) -> None:
    """The contract, the bridge, the backends and the suite import none of the loop."""
    leaked = {name for name in _imported_after(statement) if name.startswith(LOOP_ONLY)}
    assert not leaked, f"{statement!r} imported {sorted(leaked)}"


def test_importing_the_package_imports_nothing_else_of_it() -> None:
    """``import rlm_core`` defers every submodule until a public name is first used."""
    modules = _imported_after("import rlm_core")
    assert sorted(name for name in modules if name.startswith("rlm_core.")) == ["rlm_core._lazy"]
    assert "pydantic" not in modules


def test_public_names_resolve_lazily_to_their_home_modules() -> None:
    """Every name in ``rlm_core.__all__`` resolves, and ``from rlm_core import *`` works."""
    statement = (
        "import rlm_core\n"
        "missing = [n for n in rlm_core.__all__ if getattr(rlm_core, n, None) is None]\n"
        "assert not missing, missing\n"
        "from rlm_core import *\n"
        "assert RLM.__module__ == 'rlm_core.rlm'"
    )
    assert "rlm_core.rlm" in _imported_after(statement)


def test_unknown_attribute_raises_attribute_error() -> None:
    """A misspelled name fails like any module attribute, naming the attribute."""
    import rlm_core

    with pytest.raises(AttributeError, match="'RLMM'"):
        _ = rlm_core.RLMM

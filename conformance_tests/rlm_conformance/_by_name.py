"""Builds interpreters from a ``--rlm-interpreter`` spec through ``rlm_core.registry.create``.

Options configured for that backend (``RLM_<NAME>_<OPTION>`` variables, ``rlm.toml``) apply, as
they would for an RLM run, so e.g. ``RLM_E2B_STANDIN=true`` points the suite at a stand-in.
"""

from __future__ import annotations

from rlm_conformance._base import InterpreterFactory
from rlm_core.config import load_settings
from rlm_core.registry import create, parse_spec

__all__ = ["interpreter_factory"]


def interpreter_factory(spec: str) -> InterpreterFactory:
    """A ``make_interpreter`` value for ``spec``; a bad spec fails before any test runs."""
    defaults = load_settings().backend_options(parse_spec(spec)[0])
    create(spec, defaults=defaults)  # construction does no I/O, so this only validates the spec
    return lambda: create(spec, defaults=defaults)

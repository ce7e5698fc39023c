"""Builds interpreters from a ``--rlm-interpreter`` spec, as an RLM run would.

Options configured for that backend (``RLM_<NAME>_<OPTION>`` variables, ``rlm.toml``) apply, as
they would for an RLM run, so e.g. ``RLM_E2B_STANDIN=true`` points the suite at a stand-in.
"""

from __future__ import annotations

from rlm_conformance._base import InterpreterFactory
from rlm_core.config import load_settings

__all__ = ["interpreter_factory"]


def interpreter_factory(spec: str) -> InterpreterFactory:
    """A ``make_interpreter`` value for ``spec``; a bad spec fails before any test runs."""
    settings = load_settings()
    settings.create_interpreter(spec)  # construction does no I/O: this only validates the spec
    return lambda: settings.create_interpreter(spec)

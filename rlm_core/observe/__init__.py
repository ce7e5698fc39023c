"""Seeing and reproducing runs: the observer hooks of the loop, cassettes, the viewer, traces.

Nothing here imports OpenTelemetry unless the ``otel`` extra is installed and a run uses it;
the viewer and the cassette need only the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm_core._lazy import attach

if TYPE_CHECKING:
    from rlm_core.observe.hooks import Observer, RunInfo, Site

__all__ = ["Observer", "RunInfo", "Site"]

__getattr__, __dir__ = attach(__name__, __file__, __all__)

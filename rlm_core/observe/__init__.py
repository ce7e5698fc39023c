"""Seeing and reproducing runs: the observer hooks of the loop, cassettes, the viewer, traces.

Nothing here imports OpenTelemetry unless the ``otel`` extra is installed and a run uses it;
the viewer and the cassette need only the standard library.
"""

from rlm_core.observe.hooks import Observer, RunInfo, Site

__all__ = ["Observer", "RunInfo", "Site"]

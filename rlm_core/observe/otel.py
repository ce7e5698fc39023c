"""OpenTelemetry spans for runs, following the GenAI semantic conventions (the ``otel`` extra)."""

from __future__ import annotations

from rlm_core.observe.hooks import Observer

__all__ = ["TraceObserver"]


class TraceObserver(Observer):
    """Emits spans (placeholder until the tracing observer lands)."""

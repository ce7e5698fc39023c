"""Which observers one ``RLM`` call gets, and what happens to them when the call ends.

Tracing when OpenTelemetry is installed; a recorder or a replayer when asked.
Kept out of ``rlm.py`` so the call path there stays a few lines.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from rlm_core.errors import ConfigError
from rlm_core.lm import LM
from rlm_core.observe.cassette import (
    Cassette,
    CassetteLM,
    Program,
    Recorder,
    Replayer,
)
from rlm_core.observe.hooks import Observer, Observers
from rlm_core.result import RLMResult

__all__ = ["CallWatch", "otel_enabled"]

CassetteSource = str | Path | Cassette


def otel_enabled() -> bool:
    """Whether runs emit OpenTelemetry spans: the ``otel`` extra is installed and not disabled.

    ``find_spec`` of the top-level package looks for it without importing anything, so runs
    import nothing of OpenTelemetry when it is absent; ``RLM_OTEL=0`` turns tracing off.
    """
    if os.environ.get("RLM_OTEL", "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    try:
        return importlib.util.find_spec("opentelemetry") is not None
    except (ImportError, ValueError):  # a None entry in sys.modules hides a package
        return False


class CallWatch:
    """The observers of one call, and what to do with them at its end.

    Args:
        record: Write a cassette of the call to this path.
        replay: Answer the call from this cassette (a path or a loaded :class:`Cassette`).
        backend: The backend's name, recorded and named in replay reports.
    """

    def __init__(
        self,
        *,
        record: str | Path | None,
        replay: CassetteSource | None,
        backend: str,
    ) -> None:
        if record is not None and replay is not None:
            raise ConfigError("record= and replay= exclude each other; pass one of them")
        self.record_path = None if record is None else Path(record)
        self.recorder: Recorder | None = None
        self.replayer: Replayer | None = None
        if replay is not None:
            cassette = replay if isinstance(replay, Cassette) else Cassette.load(replay)
            self.replayer = Replayer(cassette, backend=backend)
        elif self.record_path is not None:
            self.recorder = Recorder(Cassette(backend=backend))
        observers: list[Observer] = []
        if otel_enabled():
            try:
                from rlm_core.observe.otel import TraceObserver
            except ImportError:  # another opentelemetry-* package without the API
                pass
            else:
                observers.append(TraceObserver())
        if self.recorder is not None:
            observers.append(self.recorder)
        if self.replayer is not None:
            observers.append(self.replayer)  # innermost: it answers instead of the model
        self.observer: Observer = observers[0] if len(observers) == 1 else Observers(observers)

    @property
    def replaying(self) -> bool:
        """Whether model answers come from a cassette."""
        return self.replayer is not None

    def replay_models(self) -> tuple[LM, LM]:
        """Stand-ins named after the recorded models (the replayer answers every call)."""
        assert self.replayer is not None
        models = self.replayer.cassette.program.get("models") or {}
        lm = str(models.get("lm") or "recorded")
        return CassetteLM(lm), CassetteLM(str(models.get("sub_lm") or lm))

    def describe(self, program: Program) -> None:
        """Store what the recorded program is, so ``rlm replay`` can run it again."""
        if self.recorder is not None:
            self.recorder.cassette.program = program.to_json()

    def finish(self, result: RLMResult | None, error: BaseException | None) -> None:
        """Save the cassette, or check the replay's outputs.

        Raises:
            ReplayError: The replay diverged (first difference), or its outputs differ.
        """
        if self.recorder is not None and self.record_path is not None:
            cassette = self.recorder.cassette
            if result is not None:
                cassette.outputs = result.to_dict()["outputs"]
            if error is not None:
                cassette.error = f"{type(error).__name__}: {error}"
            cassette.save(self.record_path)
        if self.replayer is not None:
            self.replayer.check()
            if result is not None:
                _check_outputs(self.replayer, result)


def _check_outputs(replayer: Replayer, result: RLMResult) -> None:
    from rlm_core.errors import ReplayMismatchError

    expected = replayer.cassette.outputs
    got = result.to_dict()["outputs"]
    if expected is not None and expected != got:
        raise ReplayMismatchError(
            f"replay on {replayer.backend}: the final outputs differ from the recording:\n"
            f"  expected: {expected}\n  got:      {got}",
            backend=replayer.backend,
            run="0",
            step=len(result.steps),
            expected=expected,
            got=got,
        )

"""Record a run tree's model answers and tool results to a cassette, and replay them offline.

A :class:`Recorder` stores, under each call's timing-free :class:`~rlm_core.observe.hooks.Site`,
every model reply and every user-tool result, plus what each cell printed. A :class:`Replayer`
answers the same sites from the cassette (no model, no network, no tool is called), so the same
program runs again on any backend, and stops at the first step whose cell output differs. The
JSON format is documented in ``docs/trajectory-format.md``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import inspect
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from rlm_core.errors import ConfigError, LMError, ReplayError, ReplayMismatchError
from rlm_core.interpreter import JSON, VariableValue
from rlm_core.lm import Completion, Message, Usage
from rlm_core.observe.hooks import ModelCall, Observer, Site, ToolCall
from rlm_core.tools import ToolSpec, to_json
from rlm_core.trajectory import Step, usage_dict

__all__ = [
    "CASSETTE_FORMAT",
    "CASSETTE_VERSION",
    "Cassette",
    "CassetteLM",
    "Program",
    "Recorder",
    "Replayer",
    "cell_outcome",
]

CASSETTE_FORMAT = "rlm-cassette"
CASSETTE_VERSION = 1
"""Bumped when a reader of the previous version would misread a cassette."""

BUILTIN_TOOLS = frozenset({"llm_query", "llm_query_batched", "rlm_query"})
"""Answered by their model calls, which the cassette holds; not recorded as tool results."""

COMPARED_FIELDS = ("kind", "stdout", "stderr", "value", "error", "submitted")
"""What must match for a replayed step to count as the same (timings never do)."""


def cell_outcome(step: Step) -> dict[str, Any]:
    """What a step's cell did, in the form compared on replay.

    Errors are reduced to their last line (``"ZeroDivisionError: division by zero"``), since
    traceback framing is allowed to differ between backends.
    """
    data = step.to_dict()
    error = data["error"]
    if isinstance(error, str):
        lines = [line for line in error.strip().splitlines() if line.strip()]
        error = lines[-1].strip() if lines else error
    return {
        "kind": data["kind"],
        "stdout": data["stdout"],
        "stderr": data["stderr"],
        "value": data["value"],
        "error": error,
        "submitted": data["submitted"],
    }


class Cassette:
    """A recorded run tree, as versioned JSON.

    Attributes:
        program: What to run again: ``signature``, ``instructions``, ``inputs``, ``settings``,
            ``tools`` (their specs) and ``models`` (``lm``/``sub_lm`` names).
        backend: The backend it was recorded on.
        models: Model replies by site key.
        tools: User-tool results by site key.
        steps: Each step's cell outcome by ``"<run path>#s<step>"``.
        outputs: The root run's outputs, or None if it failed (then ``error`` says why).
    """

    def __init__(self, *, program: dict[str, Any] | None = None, backend: str = "") -> None:
        self.program: dict[str, Any] = program or {}
        self.backend = backend
        self.recorded_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.models: dict[str, dict[str, Any]] = {}
        self.tools: dict[str, dict[str, Any]] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, Any] | None = None
        self.error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The document written to disk."""
        return {
            "format": CASSETTE_FORMAT,
            "version": CASSETTE_VERSION,
            "recorded_at": self.recorded_at,
            "backend": self.backend,
            "program": self.program,
            "models": dict(sorted(self.models.items())),
            "tools": dict(sorted(self.tools.items())),
            "steps": self.steps,
            "outputs": self.outputs,
            "error": self.error,
        }

    def save(self, path: str | Path) -> None:
        """Write atomically, so a crash never leaves half a cassette."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        # ASCII escapes keep any text the run saw (even a lone surrogate) exactly as it was.
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="ascii")
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | Path) -> Cassette:
        """Read a cassette file.

        Raises:
            ConfigError: The file is missing, not JSON, or not a cassette of a known version.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the cassette {path}: {exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != CASSETTE_FORMAT:
            raise ConfigError(f"{path} is not an rlm cassette (no format {CASSETTE_FORMAT!r})")
        if data.get("version") != CASSETTE_VERSION:
            raise ConfigError(
                f"{path} is cassette version {data.get('version')!r}; this rlm reads version "
                f"{CASSETTE_VERSION}. Record it again with this version."
            )
        cassette = cls(program=dict(data.get("program") or {}), backend=str(data.get("backend")))
        cassette.recorded_at = str(data.get("recorded_at", ""))
        cassette.models = dict(data.get("models") or {})
        cassette.tools = dict(data.get("tools") or {})
        cassette.steps = dict(data.get("steps") or {})
        cassette.outputs = data.get("outputs")
        cassette.error = data.get("error")
        return cassette

    def inputs(self) -> dict[str, VariableValue]:
        """The recorded input values (bytes restored)."""
        raw = self.program.get("inputs") or {}
        return {name: decode_input(value) for name, value in raw.items()}


def encode_input(value: VariableValue) -> JSON:
    """Inputs as JSON; bytes become ``{"$bytes": base64}``."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    return value


def decode_input(value: Any) -> VariableValue:
    """The inverse of :func:`encode_input`."""
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        return base64.b64decode(value["$bytes"])
    return value  # type: ignore[no-any-return]


def _step_key(site: Site) -> str:
    return f"{site.run}#s{site.step}"


def _error_json(exc: BaseException) -> dict[str, str]:
    try:
        message = str(exc)
    except Exception:  # a tool's exception with a broken __str__ must not break the recording
        message = f"<{type(exc).__name__} object whose str() failed>"
    return {"type": type(exc).__name__, "message": message}


def _stops_the_run(exc: BaseException) -> bool:
    """Ctrl-C and cancellation end the run; anything else a tool raises is the guest's data."""
    return isinstance(exc, KeyboardInterrupt | anyio.get_cancelled_exc_class())


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class Recorder(Observer):
    """Stores every model reply, user-tool result and cell outcome of a run tree."""

    def __init__(self, cassette: Cassette) -> None:
        self.cassette = cassette
        self._lock = threading.Lock()

    async def model_call(
        self, site: Site, model: str, messages: Sequence[Message], proceed: ModelCall
    ) -> Completion:
        """Let the call happen and keep its reply (or its error)."""
        entry: dict[str, Any] = {"model": model}
        if site.name != "model":  # a sub-call's prompt is the program's own doing: check it
            entry["prompt"] = messages[-1]["content"]
        try:
            completion = await proceed()
        except Exception as exc:
            entry["error"] = _error_json(exc)
            self._put(self.cassette.models, site.key, entry)
            raise
        entry["text"] = completion.text
        entry["usage"] = usage_dict(completion.usage)
        self._put(self.cassette.models, site.key, entry)
        return completion

    async def tool_call(
        self, site: Site, args: Sequence[Any], kwargs: Mapping[str, Any], proceed: ToolCall
    ) -> Any:
        """Let a user tool run and keep what the guest received."""
        if site.name in BUILTIN_TOOLS:
            return await proceed()
        entry: dict[str, Any] = {
            "name": site.name,
            "args": _digest([list(args), dict(kwargs)]),
            "call": _call_text(site.name, args, kwargs),
        }
        try:
            value = await proceed()
        except BaseException as exc:
            if _stops_the_run(exc):
                raise
            entry["error"] = _error_json(exc)
            self._put(self.cassette.tools, site.key, entry)
            raise
        try:
            entry["value"] = to_json(value)
        except Exception as exc:  # the guest gets this error from the bridge; replay the same
            detail = _error_json(exc)["message"]
            message = f"tool {site.name}() returned a value that cannot reach the sandbox: {detail}"
            entry["error"] = {"type": "TypeError", "message": message}
        self._put(self.cassette.tools, site.key, entry)
        return value

    def step_finished(self, site: Site, step: Step) -> None:
        """Keep what the step's cell did, to compare on replay."""
        self._put(self.cassette.steps, _step_key(site), cell_outcome(step))

    def _put(self, table: dict[str, dict[str, Any]], key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            table[key] = entry


class Replayer(Observer):
    """Answers every model and user-tool call from a cassette; the first divergence ends the run.

    Args:
        cassette: The recording.
        backend: The backend replaying it (named in mismatch reports).
    """

    def __init__(self, cassette: Cassette, *, backend: str) -> None:
        self.cassette = cassette
        self.backend = backend
        self.failure: ReplayError | None = None
        self.steps_compared = 0
        self.models_served = 0
        self.tools_served = 0
        self._lock = threading.Lock()

    def _fail(self, error: ReplayError) -> ReplayError:
        """Keep the first failure: later ones are consequences of it."""
        with self._lock:
            if self.failure is None:
                self.failure = error
            return self.failure

    def check(self) -> None:
        """Raise the first failure, if any.

        Raises:
            ReplayError: A request was not recorded, or an output differs.
        """
        if self.failure is not None:
            raise self.failure

    def _mismatch(
        self, site: Site, what: str, expected: object, got: object, shown: tuple[str, str]
    ) -> ReplayError:
        """The first difference from the recording, kept (and returned) as the run's failure."""
        return self._fail(
            ReplayMismatchError(
                f"replay on {self.backend}: {self._where(site)} {what}:\n"
                f"  expected: {shown[0]}\n  got:      {shown[1]}",
                backend=self.backend,
                run=site.run,
                step=site.step,
                expected=expected,
                got=got,
            )
        )

    def _where(self, site: Site) -> str:
        run = "the root run" if site.run == "0" else f"child run {site.run}"
        return f"step {site.step} of {run}"

    async def model_call(
        self, site: Site, model: str, messages: Sequence[Message], proceed: ModelCall
    ) -> Completion:
        """The recorded reply; never calls the model."""
        self.check()
        entry = self.cassette.models.get(site.key)
        what = "the model call that writes it" if site.name == "model" else f"call {site.call}"
        if entry is None:
            raise self._fail(
                ReplayError(
                    f"replay on {self.backend}: {self._where(site)} made a model request that "
                    f"was not recorded ({what}, site {site.key}); the program or its inputs "
                    "differ from the recording, or the cassette is incomplete"
                )
            )
        recorded_prompt = entry.get("prompt")
        if recorded_prompt is not None and recorded_prompt != messages[-1]["content"]:
            sent = messages[-1]["content"]
            raise self._mismatch(
                site,
                f"sent a different llm_query prompt at {site.call}",
                recorded_prompt,
                sent,
                (_short(recorded_prompt), _short(sent)),
            )
        with self._lock:
            self.models_served += 1
        error = entry.get("error")
        if isinstance(error, dict):
            raise _recorded_exception(error, LMError)
        usage = entry.get("usage") or {}
        return Completion(
            text=str(entry.get("text", "")),
            usage=Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                cost_usd=usage.get("cost_usd"),
            ),
            model=str(entry.get("model", model)),
        )

    async def tool_call(
        self, site: Site, args: Sequence[Any], kwargs: Mapping[str, Any], proceed: ToolCall
    ) -> Any:
        """The recorded result of a user tool; the tool itself is not called."""
        self.check()
        if site.name in BUILTIN_TOOLS:
            return await proceed()
        entry = self.cassette.tools.get(site.key)
        if entry is None or entry.get("name") != site.name:
            recorded = "nothing" if entry is None else f"a call to {entry.get('name')}()"
            raise self._fail(
                ReplayError(
                    f"replay on {self.backend}: {self._where(site)} called {site.name}() as "
                    f"call {site.call}, but the recording has {recorded} there"
                )
            )
        if entry.get("args") != _digest([list(args), dict(kwargs)]):
            got = _call_text(site.name, args, kwargs)
            raise self._mismatch(
                site,
                f"called {site.name}() with different arguments than recorded",
                entry.get("call"),
                got,
                (str(entry.get("call")), got),
            )
        with self._lock:
            self.tools_served += 1
        error = entry.get("error")
        if isinstance(error, dict):
            raise _recorded_exception(error, Exception)
        return entry.get("value")

    def step_finished(self, site: Site, step: Step) -> None:
        """Compare the step's cell outcome with the recording; raise at the first difference."""
        recorded = self.cassette.steps.get(_step_key(site))
        got = cell_outcome(step)
        if recorded is None:
            raise self._fail(
                ReplayError(
                    f"replay on {self.backend}: {self._where(site)} was not recorded "
                    f"(the recording has no such step)"
                )
            )
        for name in COMPARED_FIELDS:
            if recorded.get(name) != got[name]:
                raise self._mismatch(
                    site,
                    f"differs from the recording ({self.cassette.backend or 'unknown backend'}) "
                    f"in its {name}",
                    recorded.get(name),
                    got[name],
                    (_short(recorded.get(name)), _short(got[name])),
                )
        with self._lock:
            self.steps_compared += 1


def _call_text(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], limit: int = 300) -> str:
    """The call as Python source, cut to ``limit`` characters (for reports, not matching)."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    text = f"{name}({', '.join(parts)})"
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text):,} chars)"


def _short(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text):,} chars)"


def _recorded_exception(error: Mapping[str, Any], base: type[Exception]) -> Exception:
    """An exception with the recorded type name and message (what the guest saw then)."""
    name = str(error.get("type") or base.__name__)
    cls: type[Exception] = base if name == base.__name__ else type(name, (base,), {})
    return cls(str(error.get("message", "")))


class CassetteLM:
    """Stands in for a recorded model: replays never reach a model, so this only has a name."""

    def __init__(self, model: str) -> None:
        self._model = model

    @property
    def model(self) -> str:
        """The recorded model's name."""
        return self._model

    async def complete(self, messages: Sequence[Message]) -> Completion:
        """Never called during a replay (the :class:`Replayer` answers first)."""
        raise ReplayError("a replay reached the model; this is a bug in the replay wiring")


def stub_tool(spec: Mapping[str, Any]) -> Any:
    """A function with a recorded tool's name, signature and doc; replays never call its body."""
    kinds = {
        "positional_only": inspect.Parameter.POSITIONAL_ONLY,
        "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
        "var_positional": inspect.Parameter.VAR_POSITIONAL,
        "keyword_only": inspect.Parameter.KEYWORD_ONLY,
        "var_keyword": inspect.Parameter.VAR_KEYWORD,
    }
    params = []
    for p in spec.get("params", []):
        default: Any = inspect.Parameter.empty
        if p.get("has_default"):
            default = _HostOnlyDefault() if p.get("host_default") else p.get("default")
        annotation = p.get("annotation") or inspect.Parameter.empty
        params.append(
            inspect.Parameter(p["name"], kinds[p["kind"]], default=default, annotation=annotation)
        )
    name = str(spec["name"])

    def stub(*args: Any, **kwargs: Any) -> Any:
        raise ReplayError(f"the recorded tool {name}() was called outside a replay")

    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = str(spec.get("doc") or "")
    returns = spec.get("returns") or inspect.Signature.empty
    stub.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    return stub


class _HostOnlyDefault:
    """A default that has no JSON form (rendered ``...`` like the original)."""

    def __repr__(self) -> str:
        return "..."


@dataclasses.dataclass(frozen=True)
class Program:
    """What a run is, as a cassette's ``program`` section keeps it: enough to run it again."""

    signature: str
    instructions: str
    inputs: Mapping[str, VariableValue]
    settings: Mapping[str, Any]
    """Settings a replay reuses; a value with no JSON form is kept as its ``repr``."""
    tools: Sequence[ToolSpec]
    lm: str
    sub_lm: str

    def to_json(self) -> dict[str, Any]:
        """The ``program`` section (encoded only when a cassette is recorded)."""
        return {
            "signature": self.signature,
            "instructions": self.instructions,
            "inputs": {name: encode_input(value) for name, value in self.inputs.items()},
            "settings": {name: _setting(value) for name, value in self.settings.items()},
            "tools": [spec.to_json() for spec in self.tools],
            "models": {"lm": self.lm, "sub_lm": self.sub_lm},
        }


def _setting(value: object) -> object:
    try:
        return to_json(value)
    except TypeError:
        return repr(value)

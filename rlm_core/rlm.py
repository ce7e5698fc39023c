"""``RLM``: a Recursive Language Model you call like a function, on any interpreter backend.

Example::

    rlm = RLM("logs -> error_count: int, critical_errors: list[str]", lm="openai/gpt-4o-mini")
    result = rlm(logs=open("server.log").read())
    print(result.error_count, result.critical_errors, result.usage.cost_usd)
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import anyio

from rlm_core.budget import Budget, Ledger
from rlm_core.checks import check_variable_name
from rlm_core.config import Settings, load_settings
from rlm_core.errors import ConfigError
from rlm_core.inputs import prepare_inputs
from rlm_core.interpreter import HostTool, Interpreter, VariableValue
from rlm_core.lm import LM
from rlm_core.loop import RESERVED_NAMES, Run, RunConfig
from rlm_core.observe.cassette import Cassette, Program
from rlm_core.observe.wiring import CallWatch
from rlm_core.registry import InterpreterSpec, create
from rlm_core.result import RESERVED_RESULT_NAMES, RLMResult
from rlm_core.signature import Signature, SignatureSpec, ensure_signature
from rlm_core.tools import describe_tools
from rlm_core.trajectory import Event, EventLog

__all__ = ["RLM"]

_REPLAYED_SETTINGS = {
    "max_iterations",
    "max_llm_calls",
    "max_output_chars",
    "cell_timeout_s",
    "max_depth",
    "batch_concurrency",
    "max_tokens",
    "max_cost_usd",
    "max_time_s",
}
"""Settings a cassette keeps, so ``rlm replay`` runs the program under the same limits."""


class RLM:
    """A Recursive Language Model: inputs live in a sandboxed REPL the model explores with code.

    Settings not given here come from ``RLM_*`` environment variables, then ``rlm.toml`` or
    ``[tool.rlm]`` in ``pyproject.toml`` (see :func:`rlm_core.config.load_settings`).

    Args:
        signature: ``"context, query -> answer: int"`` or a :class:`~rlm_core.signature.Signature`
            subclass.
        lm: The root model: a litellm model string, an :class:`~rlm_core.lm.LM`, or a
            ``dspy.LM``. Defaults to the ``model`` setting.
        sub_lm: The model behind ``llm_query`` and ``rlm_query`` (often a cheaper one).
            Defaults to the ``sub_model`` setting, then to ``lm``.
        interpreter: A backend name or spec (``"deno"``, ``"docker://IMAGE?memory=1g"``), a
            class, a zero-argument factory, or an instance. A given instance is used as is and
            left open; lost sessions are replaced with ``type(instance)()``.
        tools: Host functions (sync or async) the model's code may call: a list (named by
            ``__name__``) or a name-to-function mapping.
        max_iterations: Steps before the extract fallback.
        max_llm_calls: Model calls code may make in the whole run tree.
        max_output_chars: Characters of each step's output shown to the model.
        cell_timeout_s: Timeout of one cell, in seconds.
        max_depth: How many levels of ``rlm_query`` children may be started (0: none).
        max_tokens: Token budget of the run tree.
        max_cost_usd: USD budget of the run tree.
        max_time_s: Wall-time budget of a call.
        batch_concurrency: How many ``llm_query_batched`` prompts run at once.
        instructions: Replace the signature's instructions (the task description).
        api_base: Base URL for model strings (a local OpenAI-compatible server).
        verbose: Print each step live with rich.
        log: Append every event of each run as a JSON line to this path or stream.
        on_event: Called with every event (a JSON-ready dict) as it happens.
        record: Write a cassette of each call (every model reply and tool result) to this path.
        replay: Answer each call from this cassette instead of the models and tools, and raise
            :class:`~rlm_core.errors.ReplayMismatchError` at the first step whose cell output
            differs from the recording (see ``docs/observability.md``).
        types: Extra names usable in a string signature's annotations.
    """

    def __init__(
        self,
        signature: str | type[Signature] | SignatureSpec,
        *,
        lm: str | LM | object | None = None,
        sub_lm: str | LM | object | None = None,
        interpreter: InterpreterSpec | None = None,
        tools: Sequence[HostTool] | Mapping[str, HostTool] | None = None,
        max_iterations: int | None = None,
        max_llm_calls: int | None = None,
        max_output_chars: int | None = None,
        cell_timeout_s: float | None = None,
        max_depth: int | None = None,
        max_tokens: int | None = None,
        max_cost_usd: float | None = None,
        max_time_s: float | None = None,
        batch_concurrency: int | None = None,
        instructions: str | None = None,
        api_base: str | None = None,
        verbose: bool = False,
        log: str | Path | IO[str] | None = None,
        on_event: Callable[[Event], None] | None = None,
        types: Mapping[str, Any] | None = None,
        record: str | Path | None = None,
        replay: str | Path | Cassette | None = None,
    ) -> None:
        self.signature = ensure_signature(signature, instructions=instructions, types=types)
        self.settings: Settings = load_settings(
            {
                "interpreter": interpreter if isinstance(interpreter, str) else None,
                "model": lm if isinstance(lm, str) else None,
                "sub_model": sub_lm if isinstance(sub_lm, str) else None,
                "api_base": api_base,
                "max_iterations": max_iterations,
                "max_llm_calls": max_llm_calls,
                "max_output_chars": max_output_chars,
                "cell_timeout_s": cell_timeout_s,
                "max_depth": max_depth,
                "max_tokens": max_tokens,
                "max_cost_usd": max_cost_usd,
                "max_time_s": max_time_s,
                "batch_concurrency": batch_concurrency,
            },
            labels={"model": "argument lm", "sub_model": "argument sub_lm"},
        )
        self._lm_arg = lm
        self._sub_lm_arg = sub_lm
        self._interpreter = interpreter if interpreter is not None else self.settings.interpreter
        if isinstance(self._interpreter, str):  # a misspelled backend fails here, not when called
            self.settings.check_interpreter(self._interpreter)
        self.tools: dict[str, HostTool] = _normalize_tools(tools)
        self.batch_concurrency = self.settings.batch_concurrency
        self.verbose = verbose
        self._log = log
        self._on_event = on_event
        self._record = record
        self._replay = replay
        self._instance_lock = threading.Lock()
        self._check_names()

    # ---- validation ---------------------------------------------------------------------

    def _check_names(self) -> None:
        describe_tools(self.tools, reserved=RESERVED_NAMES)
        for f in self.signature.inputs:
            try:
                check_variable_name(f.name, reserved=RESERVED_NAMES)
            except ConfigError as exc:
                raise ConfigError(f"input {f.name!r}: {exc}") from None
            if f.name in self.tools:
                raise ConfigError(f"input {f.name!r} has the same name as a tool; rename one")
        for f in self.signature.outputs:
            if f.name in RESERVED_RESULT_NAMES:
                raise ConfigError(
                    f"output {f.name!r} collides with the result attribute {f.name!r}; rename it"
                )

    def _check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, VariableValue]:
        names = self.signature.input_names
        missing = [n for n in names if n not in inputs]
        unexpected = sorted(set(inputs) - set(names))
        problems = []
        if missing:
            problems.append(f"missing required inputs: {missing}")
        if unexpected:
            problems.append(f"unexpected inputs not declared in the signature: {unexpected}")
        if problems:
            raise ConfigError("; ".join(problems) + f" (the signature takes {names})")
        return prepare_inputs({name: inputs[name] for name in names})

    # ---- models and interpreters --------------------------------------------------------

    def _models(self) -> tuple[LM, LM]:
        return self.settings.resolve_models(self._lm_arg, self._sub_lm_arg)

    def _interpreter_factory(self) -> Callable[[], tuple[Interpreter, bool]]:
        spec = self._interpreter
        first_use = [True]

        def make() -> tuple[Interpreter, bool]:
            if isinstance(spec, str):  # configured backend options apply to names and specs
                return self.settings.create_interpreter(spec), True
            if isinstance(spec, Interpreter) and not isinstance(spec, type):
                if first_use[0]:
                    first_use[0] = False
                    return spec, False  # the caller's own instance, which the caller closes
                return create(type(spec)), True  # its replacement, after the first was lost
            return create(spec), True  # a class or a factory; anything else: ConfigError

        return make

    # ---- calling ------------------------------------------------------------------------

    async def acall(self, **inputs: Any) -> RLMResult:
        """Run on ``inputs`` without blocking the event loop.

        Raises:
            ConfigError: Inputs are missing, unexpected, have no exact JSON form, are not valid
                Unicode or are over the backend's ``max_variable_bytes``, or no model is
                configured (raised before any sandbox starts).
            BudgetExceededError: The token, USD or time budget ran out.
            OutputValidationError: No valid outputs, even from the extract fallback.
            LMError: The root model failed after its retries.
            InterpreterUnavailableError: The backend cannot start here.
        """
        bound = self._check_inputs(inputs)
        watch = CallWatch(record=self._record, replay=self._replay, backend=self._backend_name())
        lm, sub_lm = watch.replay_models() if watch.replaying else self._models()
        s = self.settings
        watch.describe(
            Program(
                signature=_signature_text(self.signature),
                instructions=self.signature.instructions,
                inputs=bound,
                settings=s.model_dump(include=_REPLAYED_SETTINGS),
                tools=describe_tools(self.tools, reserved=RESERVED_NAMES),
                lm=lm.model,
                sub_lm=sub_lm.model,
            )
        )
        ledger = Ledger(
            Budget(
                max_llm_calls=s.max_llm_calls,
                max_tokens=s.max_tokens,
                max_cost_usd=s.max_cost_usd,
                max_time_s=s.max_time_s,
            )
        )
        emit, close_sinks = self._event_sinks()
        shared_instance = isinstance(self._interpreter, Interpreter) and not isinstance(
            self._interpreter, type
        )
        if shared_instance and not self._instance_lock.acquire(blocking=False):
            raise ConfigError(
                "this RLM was given an interpreter instance, which one call can use at a time; "
                "pass a backend name, class or factory to run calls concurrently"
            )
        try:
            config = RunConfig(
                lm=lm,
                sub_lm=sub_lm,
                new_interpreter=self._interpreter_factory(),
                user_tools=self.tools,
                max_iterations=s.max_iterations,
                max_output_chars=s.max_output_chars,
                cell_timeout_s=s.cell_timeout_s,
                max_depth=s.max_depth,
                batch_concurrency=self.batch_concurrency,
                emit=emit,
                observer=watch.observer,
            )
            try:
                result = await Run(self.signature, config, ledger).run(bound)
            except BaseException as exc:
                watch.finish(None, exc)
                raise
            watch.finish(result, None)
            return result
        finally:
            if shared_instance:
                self._instance_lock.release()
            close_sinks()

    def __call__(self, **inputs: Any) -> RLMResult:
        """Run on ``inputs`` and wait; works with or without a running event loop."""
        job = functools.partial(self.acall, **inputs)
        try:
            anyio.get_current_task()  # any event loop anyio knows (asyncio or trio) counts
        except anyio.NoEventLoopError:
            return anyio.run(job)
        # Called from async code: run on a private loop in a worker thread, since this
        # thread's loop cannot be re-entered.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rlm-call") as pool:
            return pool.submit(anyio.run, job).result()

    def _event_sinks(self) -> tuple[Callable[[Event], None], Callable[[], None]]:
        sinks: list[Callable[[Event], None]] = []
        log = EventLog(self._log) if self._log is not None else None
        if log is not None:
            sinks.append(log)
        if self.verbose:
            from rlm_core.display import VerbosePrinter

            sinks.append(VerbosePrinter())
        if self._on_event is not None:
            sinks.append(self._on_event)

        def emit(event: Event) -> None:
            for sink in sinks:
                sink(event)

        def close() -> None:
            if log is not None:
                log.close()

        return emit, close

    def _backend_name(self) -> str:
        spec = self._interpreter
        if isinstance(spec, str):
            return spec
        named = spec if isinstance(spec, type) else type(spec)
        return str(getattr(named, "__name__", repr(spec)))

    def __repr__(self) -> str:
        sig = (
            ", ".join(self.signature.input_names) + " -> " + ", ".join(self.signature.output_names)
        )
        return f"RLM({sig!r}, interpreter={self._interpreter!r})"


def _normalize_tools(tools: object) -> dict[str, HostTool]:
    if tools is None:
        return {}
    if isinstance(tools, Mapping):
        return dict(tools)
    if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
        raise ConfigError("tools must be a list of functions or a name-to-function mapping")
    named: dict[str, HostTool] = {}
    for fn in tools:
        if not callable(fn):
            raise ConfigError(f"tool {fn!r} must be callable")
        name = getattr(fn, "__name__", None)
        if not isinstance(name, str) or name == "<lambda>":
            raise ConfigError(
                f"tool {fn!r} has no usable name; pass tools as a mapping {{'name': fn}}"
            )
        if name in named:
            raise ConfigError(f"duplicate tool name {name!r}")
        named[name] = fn
    return named


def _signature_text(spec: SignatureSpec) -> str:
    """The signature as a string :func:`ensure_signature` parses back (for cassettes)."""
    left = ", ".join(f"{f.name}: {f.type_name}" for f in spec.inputs)
    right = ", ".join(f"{f.name}: {f.type_name}" for f in spec.outputs)
    return f"{left} -> {right}"

"""One run of the loop: ask the model, run its code, feed back what happened, until SUBMIT.

A :class:`Run` owns its sandbox sessions (replacing one that dies), serves the built-in
sub-call tools, validates submitted outputs, and falls back to an extract step when the step
budget runs out. :class:`rlm_core.rlm.RLM` builds one per call; ``rlm_query`` builds children.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import itertools
import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio

import rlm_core.prompts as wording
from rlm_core.budget import Ledger
from rlm_core.errors import (
    ConfigError,
    GuestRefusedError,
    InterpreterUnavailableError,
    LMError,
    OutputValidationError,
    RunError,
    SessionError,
    SessionOpenError,
)
from rlm_core.extract import extract_code
from rlm_core.inputs import check_input_sizes, variable_size
from rlm_core.interpreter import (
    GUEST_BUILTINS,
    Capabilities,
    HostTool,
    Interpreter,
    VariableValue,
)
from rlm_core.interpreter import SubmitField as SubmitParam
from rlm_core.lm import LM, Completion, Message
from rlm_core.observe.hooks import Observer, RunInfo, Site
from rlm_core.result import RLMResult
from rlm_core.signature import Field, SignatureSpec
from rlm_core.tools import ToolSpec, describe_tools, stops_the_run
from rlm_core.trajectory import (
    EVENT_FORMAT_VERSION,
    Event,
    Step,
    SubCall,
    error_text,
    guess_call_line,
)

__all__ = ["BUILTIN_TOOL_NAMES", "RESERVED_NAMES", "Run", "RunConfig"]

BUILTIN_TOOL_NAMES = frozenset({"llm_query", "llm_query_batched", "rlm_query"})
"""Host tools every run registers; user tools and inputs may not take these names."""

RESERVED_NAMES = GUEST_BUILTINS | BUILTIN_TOOL_NAMES
"""Every name a run's guest defines itself: inputs and user tools must choose others."""

_run_ids = itertools.count(1)

OPEN_ATTEMPTS = 8
"""How many times a run tries to open a session (start, register, bind inputs) before giving up."""


def _open_backoff(attempt: int) -> float:
    """Seconds to wait before ``attempt`` (2, 3, ...): 0.1, 0.2, 0.4, ... up to 2, jittered."""
    return float(min(2.0, 0.1 * 2 ** (attempt - 2)) * random.uniform(0.5, 1.0))


def _lost_while_opening(exc: BaseException) -> bool:
    """Whether opening failed because the session died (worth a retry), not because of setup.

    Some backends report a guest that died before it said ready as unavailable; the lost
    session behind that report (its ``__cause__``) is what makes it worth a retry.
    """
    if isinstance(exc, GuestRefusedError):
        return False  # the guest's own answer (say, MemoryError binding an input): it would repeat
    if isinstance(exc, SessionError):
        return True
    return isinstance(exc, InterpreterUnavailableError) and isinstance(exc.__cause__, SessionError)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything a run (and its children) needs besides its inputs."""

    lm: LM
    sub_lm: LM
    new_interpreter: Callable[[], tuple[Interpreter, bool]]
    """Makes a session: the interpreter, and whether the run owns (and so closes) it."""
    user_tools: Mapping[str, HostTool]
    max_iterations: int
    max_output_chars: int
    cell_timeout_s: float | None
    max_depth: int
    batch_concurrency: int
    emit: Callable[[Event], None]
    observer: Observer = dataclasses.field(default_factory=Observer)
    """Sees every call, cell and run (traces, recording, replay); the base does nothing."""


class Run:
    """One call of an RLM (or of a child started by ``rlm_query``)."""

    def __init__(
        self,
        spec: SignatureSpec,
        config: RunConfig,
        ledger: Ledger,
        *,
        depth: int = 0,
        parent_id: int | None = None,
        origin: Site | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        self.ledger = ledger
        self.depth = depth
        self.parent_id = parent_id
        self.run_id = next(_run_ids)
        self.origin = origin
        """The ``rlm_query`` call that started this run (None for the root)."""
        self.path = "0" if origin is None else origin.child_run()
        self.origin_line: int | None = None
        """The line of the parent's cell that (most likely) started this run."""
        self._calls_in_step = 0  # ordinals of host-tool calls, for timing-free call sites
        self._names_in_step: collections.Counter[str] = collections.Counter()
        self.steps: list[Step] = []
        self._current: Step | None = None
        self._inputs: Mapping[str, VariableValue] = {}
        self._input_sizes: dict[str, int] | None = None
        self._last_lm_seconds = 0.0
        self._tools = self._host_tools()
        self._tool_specs: tuple[ToolSpec, ...] = describe_tools(
            dict(config.user_tools), reserved=RESERVED_NAMES
        )

    # ---- events -------------------------------------------------------------------------

    def _emit(self, event: str, **fields: Any) -> None:
        self.config.emit(
            {
                "event": event,
                "run_id": self.run_id,
                "parent_id": self.parent_id,
                "depth": self.depth,
                "path": self.path,
                "ts": time.time(),
                **fields,
            }
        )

    # ---- the loop -----------------------------------------------------------------------

    async def run(self, inputs: Mapping[str, VariableValue]) -> RLMResult:
        """Run to SUBMIT (or extract) and return the validated outputs."""
        info = RunInfo(
            path=self.path,
            run_id=self.run_id,
            depth=self.depth,
            model=self.config.lm.model,
            signature=_render_signature(self.spec),
            budget=self.ledger.budget,
            parent=self.origin,
        )
        self.config.observer.run_started(info)
        self._emit(
            "run_start",
            format_version=EVENT_FORMAT_VERSION,
            signature=info.signature,
            inputs={k: _size_info(v) for k, v in inputs.items()},
            model=self.config.lm.model,
            budget=dataclasses.asdict(self.ledger.budget),
            **self._origin_fields(),
        )
        failure: BaseException | None = None
        try:
            return await self._run(inputs)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.config.observer.run_finished(info, failure)

    async def _run(self, inputs: Mapping[str, VariableValue]) -> RLMResult:
        session: Interpreter | None = None
        owned = False
        try:
            for lm in (self.config.lm, self.config.sub_lm):
                warm_up = getattr(lm, "warm_up", None)
                if callable(warm_up):  # overlap slow model set-up with the sandbox boot
                    warm_up()
            session, owned = await self._open_session(inputs)
            caps = session.capabilities
            messages: list[Message] = [
                {"role": "system", "content": self._system_prompt(caps)},
                {"role": "user", "content": self._first_message(inputs)},
            ]
            for index in range(1, self.config.max_iterations + 1):
                completion = await self._complete(messages, index)
                step = Step(index=index, usage=completion.usage)
                step.lm_duration_s = self._last_lm_seconds
                self.steps.append(step)
                self._current = step
                self._calls_in_step = 0
                self._names_in_step.clear()
                messages.append({"role": "assistant", "content": completion.text})
                result, session, owned = await self._take_step(
                    step, completion.text, session, owned
                )
                self._step_done(step)
                if result is not None:
                    self._emit(
                        "run_end",
                        outputs=result.to_dict()["outputs"],
                        extracted=False,
                        usage=result.usage.to_dict(),
                    )
                    return result
                note = ""
                if index < self.config.max_iterations:
                    note = "\n\n" + wording.budget_note(
                        index + 1, self.config.max_iterations, self.ledger.sub_calls_left
                    )
                    messages.append(
                        {"role": "user", "content": f"Output of step {index}:\n{step.output}{note}"}
                    )
                else:
                    messages.append(
                        {
                            "role": "user",
                            "content": f"Output of step {index}:\n{step.output}\n\n"
                            + wording.extract_request(self.spec),
                        }
                    )
            result = await self._extract(messages)
            self._emit(
                "run_end",
                outputs=result.to_dict()["outputs"],
                extracted=True,
                usage=result.usage.to_dict(),
            )
            return result
        except RunError as exc:
            if exc.trajectory is None:
                exc.trajectory = [s.to_dict() for s in self.steps]
            self._emit(
                "run_end",
                error=f"{type(exc).__name__}: {exc}",
                usage=self.ledger.summary().to_dict(),
            )
            raise
        finally:
            self._current = None
            if session is not None and owned:
                with anyio.CancelScope(shield=True):
                    await session.aclose()

    async def _take_step(
        self, step: Step, reply: str, session: Interpreter, owned: bool
    ) -> tuple[RLMResult | None, Interpreter, bool]:
        extracted = extract_code(reply)
        step.reasoning = extracted.reasoning
        if extracted.code is None:
            if extracted.wrong_language is not None:
                step.kind = "bad_fence"
                step.error = f"non-Python code block: ```{extracted.wrong_language}"
                step.output = wording.wrong_language(extracted.wrong_language)
            else:
                step.kind = "no_code"
                step.output = wording.missing_code()
            return None, session, owned
        step.code = extracted.code
        started = time.perf_counter()
        cell = self._cell_site(step)
        self.config.observer.cell_started(cell, extracted.code)
        try:
            outcome = await session.execute(
                extracted.code,
                timeout=self.config.cell_timeout_s,
                max_output_chars=self.config.max_output_chars,
            )
        except SessionError as exc:
            step.duration_s = time.perf_counter() - started
            step.error = f"{type(exc).__name__}: {exc}"
            step.session_restarted = True
            self.config.observer.cell_finished(cell, step)
            self._emit("session_restart", step=step.index, reason=str(exc))
            if owned:
                with anyio.CancelScope(shield=True):
                    await session.aclose()
            session, owned = await self._open_session(self._inputs)
            step.output = wording.session_replaced(f"{type(exc).__name__}: {exc}")
            return None, session, owned
        step.duration_s = outcome.duration_s or (time.perf_counter() - started)
        step.stdout, step.stderr, step.value = outcome.stdout, outcome.stderr, outcome.value
        step.output_chars = outcome.stdout_chars
        step.error = None if outcome.error is None else str(outcome.error)
        self.config.observer.cell_finished(cell, step)
        output = wording.format_execution(outcome, self.config.max_output_chars)
        if outcome.submitted is None:
            step.output = output
            return None, session, owned
        step.submitted = dict(outcome.submitted)
        values, problems = self.spec.validate_outputs(outcome.submitted)
        if problems:
            step.error = "; ".join(problems)
            rejected = wording.invalid_outputs(problems, self.spec)
            step.output = rejected if output == wording.NO_OUTPUT else f"{output}\n\n{rejected}"
            return None, session, owned
        step.final = True
        accepted = wording.submitted(values)
        step.output = accepted if output == wording.NO_OUTPUT else f"{output}\n\n{accepted}"
        return self._result(values, step.reasoning, extracted=False), session, owned

    async def _extract(self, messages: list[Message]) -> RLMResult:
        step = Step(index=len(self.steps) + 1, kind="extract")
        self.steps.append(step)
        problems: list[str] = []
        for attempt in range(2):
            completion = await self._complete(messages, step.index, attempt + 1)
            step.usage = completion.usage
            step.lm_duration_s += self._last_lm_seconds
            step.reasoning = completion.text
            found = _json_object(completion.text)
            if found is None:
                problems = ["no JSON object found in the reply"]
            else:
                values, problems = self.spec.validate_outputs(found)
                if not problems:
                    step.submitted = found
                    step.final = True
                    self._step_done(step)
                    reasoning = f"Extracted after {len(self.steps) - 1} steps without SUBMIT."
                    return self._result(values, reasoning, extracted=True)
            if attempt == 0:
                messages.append({"role": "assistant", "content": completion.text})
                messages.append({"role": "user", "content": wording.extract_retry(problems)})
        step.error = "; ".join(problems)
        self._step_done(step)
        raise OutputValidationError(
            f"no valid outputs after {self.config.max_iterations} steps and the extract "
            f"fallback: {step.error}"
        )

    def _result(self, values: dict[str, Any], reasoning: str, *, extracted: bool) -> RLMResult:
        return RLMResult(
            values,
            steps=list(self.steps),
            final_reasoning=reasoning,
            usage=self.ledger.summary(),
            extracted=extracted,
        )

    # ---- model calls --------------------------------------------------------------------

    async def _complete(
        self, messages: Sequence[Message], step: int, attempt: int = 1
    ) -> Completion:
        self.ledger.check()
        if self.depth > 0:  # a child's steps are sub-calls of the tree
            self.ledger.reserve_sub_calls(1)
        started = time.perf_counter()
        lm, sent = self.config.lm, list(messages)
        site = Site(
            run=self.path, step=step, call="m" if attempt == 1 else f"m{attempt}", name="model"
        )
        try:
            completion = await self.config.observer.model_call(
                site, lm.model, sent, lambda: lm.complete(sent)
            )
        except (RunError, ConfigError):  # already what the run reports: a budget, a replay
            raise  # miss, an LMError, or a model setting that is wrong (checked at first call)
        except BaseException as exc:
            if stops_the_run(exc):
                raise
            raise LMError(f"{lm.model}: {error_text(exc)}") from exc
        self._last_lm_seconds = time.perf_counter() - started
        self.ledger.record(self.config.lm.model, completion.usage, self._last_lm_seconds)
        return completion

    # ---- sessions -----------------------------------------------------------------------

    async def _open_session(self, inputs: Mapping[str, VariableValue]) -> tuple[Interpreter, bool]:
        """A started session with the tools registered and the inputs bound.

        A session lost while opening (the sandbox was killed during start, register or
        set_variables) is retried with a growing pause, up to ``OPEN_ATTEMPTS`` times.

        Raises:
            ConfigError: An input is over the backend's ``max_variable_bytes`` (checked
                before the sandbox starts).
            SessionOpenError: Every attempt lost its session.
        """
        self._inputs = inputs
        if self._input_sizes is None:
            self._input_sizes = {name: variable_size(v) for name, v in inputs.items()}
        last: BaseException | None = None
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            if last is not None:
                await anyio.sleep(_open_backoff(attempt))
            interpreter, owned = self.config.new_interpreter()
            try:
                check_input_sizes(
                    self._input_sizes, interpreter.capabilities, type(interpreter).__name__
                )
                await self._prepare(interpreter)
            except BaseException as exc:
                if owned:
                    with anyio.CancelScope(shield=True):
                        await interpreter.aclose()
                if not _lost_while_opening(exc):
                    raise
                last = exc
                self._emit(
                    "session_retry", attempt=attempt, of=OPEN_ATTEMPTS, reason=error_text(exc)
                )
                continue
            return interpreter, owned
        assert last is not None
        if isinstance(last, InterpreterUnavailableError):
            raise last  # the backend's own diagnosis (what to install or fix) says the most
        raise SessionOpenError(
            f"no sandbox session could be opened: {OPEN_ATTEMPTS} attempts were lost while "
            f"starting; the last: {error_text(last)}"
        ) from last

    async def _prepare(self, interpreter: Interpreter) -> None:
        await interpreter.start()
        outputs = [
            SubmitParam(name=f.name, type=f.type_name, description=f.description)
            for f in self.spec.outputs
        ]
        await interpreter.register(self._tools, outputs)
        await interpreter.set_variables(self._inputs)

    def _can_recurse(self) -> bool:
        return self.depth < self.config.max_depth

    def _system_prompt(self, caps: Capabilities) -> str:
        builtins = {n: f for n, f in self._host_tools().items() if n in BUILTIN_TOOL_NAMES}
        return wording.system_prompt(
            self.spec,
            capabilities=caps,
            builtins={t.name: t.render() for t in describe_tools(builtins)},
            tools=self._tool_specs,
            max_iterations=self.config.max_iterations,
            sub_calls_left=self.ledger.sub_calls_left,
            can_recurse=self._can_recurse(),
            cell_timeout_s=self.config.cell_timeout_s,
            max_output_chars=self.config.max_output_chars,
        )

    def _first_message(self, inputs: Mapping[str, VariableValue]) -> str:
        info = [
            wording.describe_input(f, inputs[f.name]) for f in self.spec.inputs if f.name in inputs
        ]
        return wording.first_message(self.spec, info, self.config.max_iterations)

    # ---- built-in tools -----------------------------------------------------------------

    def _host_tools(self) -> dict[str, HostTool]:
        run = self

        async def llm_query(prompt: str) -> str:
            """Ask the sub-model one question; returns its answer text."""
            site = run._call_site("llm_query")

            async def call() -> str:
                run.ledger.reserve_sub_calls(1)
                return await run._sub_query(prompt, site)

            return await run.config.observer.tool_call(site, (prompt,), {}, call)  # type: ignore[no-any-return]

        async def llm_query_batched(prompts: list[str]) -> list[str]:
            """Ask many questions concurrently; answers in order, '[ERROR] ...' for failures."""
            site = run._call_site("llm_query_batched")

            async def call() -> list[str]:
                return await run._batch_query(prompts, site)

            return await run.config.observer.tool_call(site, (prompts,), {}, call)  # type: ignore[no-any-return]

        async def rlm_query(prompt: str, context: Any = None) -> str:
            """Hand a sub-task to a child agent with its own REPL; returns its answer."""
            site = run._call_site("rlm_query")

            async def call() -> str:
                return await run._child_query(prompt, context, site)

            return await run.config.observer.tool_call(site, (prompt, context), {}, call)  # type: ignore[no-any-return]

        tools: dict[str, HostTool] = {
            "llm_query": llm_query,
            "llm_query_batched": llm_query_batched,
        }
        if self._can_recurse():
            tools["rlm_query"] = rlm_query
        for name, fn in self.config.user_tools.items():
            tools[name] = self._observed_tool(name, fn)
        return tools

    def _observed_tool(self, name: str, fn: HostTool) -> HostTool:
        """The user tool as the guest calls it: same signature, seen by the observer."""
        run = self
        is_async = inspect.iscoroutinefunction(fn)

        @functools.wraps(fn)
        async def observed(*args: Any, **kwargs: Any) -> Any:
            site = run._call_site(name)
            started = time.perf_counter()

            async def call() -> Any:
                if is_async:
                    return await fn(*args, **kwargs)
                value = await anyio.to_thread.run_sync(
                    functools.partial(fn, *args, **kwargs), abandon_on_cancel=True
                )
                return await value if inspect.isawaitable(value) else value

            error: str | None = None
            try:
                value = await run.config.observer.tool_call(site, args, kwargs, call)
            except BaseException as exc:  # SystemExit from a tool reaches the guest too
                error = error_text(exc)
                raise
            finally:
                run._emit(
                    "tool_call",
                    step=site.step,
                    site=site.key,
                    name=name,
                    code_line=run._code_line(site),
                    duration_s=time.perf_counter() - started,
                    error=error,
                )
            return value

        return observed

    def _call_site(self, name: str) -> Site:
        """The next host-tool call of the current step (ordinals, not times, name calls)."""
        self._calls_in_step += 1
        self._names_in_step[name] += 1
        step = self._current.index if self._current is not None else 0
        return Site(run=self.path, step=step, call=f"c{self._calls_in_step}", name=name)

    def _cell_site(self, step: Step) -> Site:
        return Site(run=self.path, step=step.index, call="cell", name="cell")

    def _code_line(self, site: Site) -> int | None:
        if self._current is None:
            return None
        return guess_call_line(self._current.code, site.name, self._names_in_step[site.name])

    def _step_done(self, step: Step) -> None:
        usage = self.ledger.summary()
        self._emit(
            "step",
            step=step.to_dict(),
            ledger={
                "calls": usage.calls,
                "sub_calls": usage.sub_calls,
                "total_tokens": usage.total_tokens,
                "cost_usd": usage.cost_usd,
                "wall_time_s": usage.wall_time_s,
            },
        )
        self.config.observer.step_finished(self._cell_site(step), step)  # may end a replay

    def _origin_fields(self) -> dict[str, Any]:
        if self.origin is None:
            return {}
        return {
            "parent_step": self.origin.step,
            "parent_site": self.origin.key,
            "code_line": self.origin_line,
        }

    async def _batch_query(self, prompts: object, site: Site) -> list[str]:
        _check_prompt_list(prompts)  # guest code may pass anything
        assert isinstance(prompts, list)
        if not prompts:
            return []
        self.ledger.reserve_sub_calls(len(prompts))
        answers: list[str] = [""] * len(prompts)
        limiter = anyio.CapacityLimiter(self.config.batch_concurrency)

        async def one(i: int, prompt: str) -> None:
            async with limiter:
                try:
                    answers[i] = await self._sub_query(prompt, site.slot(i), batch=site)
                except BaseException as exc:  # one failed slot must not fail the batch
                    if stops_the_run(exc):
                        raise
                    answers[i] = f"{wording.FAILED_PROMPT_PREFIX} {error_text(exc)}"

        async with anyio.create_task_group() as tg:
            for i, prompt in enumerate(prompts):
                tg.start_soon(one, i, prompt)
        return answers

    async def _sub_query(self, prompt: object, site: Site, batch: Site | None = None) -> str:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("llm_query needs a non-empty prompt string")
        sub_lm = self.config.sub_lm
        call = SubCall(kind="llm_query", model=sub_lm.model, prompt=prompt)
        call.site = site.key
        call.batch = None if batch is None else batch.key
        call.code_line = self._code_line(batch or site)
        self._attach(call)
        started = time.perf_counter()
        messages: list[Message] = [{"role": "user", "content": prompt}]
        try:
            self.ledger.check()
            completion = await self.config.observer.model_call(
                site, sub_lm.model, messages, lambda: sub_lm.complete(messages)
            )
        except BaseException as exc:
            call.error = error_text(exc)
            call.duration_s = time.perf_counter() - started
            self._emit("sub_call", step=site.step, call=call.to_dict())
            raise
        call.duration_s = time.perf_counter() - started
        call.response = completion.text
        call.usage = completion.usage
        self.ledger.record(sub_lm.model, completion.usage, call.duration_s)
        self._emit("sub_call", step=site.step, call=call.to_dict())
        return completion.text

    async def _child_query(self, prompt: object, context: Any, site: Site) -> str:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("rlm_query needs a non-empty prompt string")
        inputs: dict[str, VariableValue] = {"prompt": prompt}
        fields = [Field("prompt", str, "the sub-task")]
        if context is not None:
            inputs["context"] = context
            fields.append(Field("context", Any, "material for the sub-task"))
        spec = SignatureSpec(
            inputs=tuple(fields),
            outputs=(Field("answer", str),),
            instructions=wording.child_instructions(),
        )
        child_config = dataclasses.replace(self.config, lm=self.config.sub_lm)
        child = Run(
            spec,
            child_config,
            self.ledger,
            depth=self.depth + 1,
            parent_id=self.run_id,
            origin=site,
        )
        call = SubCall(kind="rlm_query", model=self.config.sub_lm.model, prompt=prompt)
        call.site = site.key
        call.code_line = child.origin_line = self._code_line(site)
        call.child_path = child.path
        self._attach(call)
        started = time.perf_counter()
        try:
            result = await child.run(inputs)
        except BaseException as exc:
            call.error = error_text(exc)
            raise
        finally:
            call.duration_s = time.perf_counter() - started
            call.steps = child.steps
        call.response = str(result.answer)
        return call.response

    def _attach(self, call: SubCall) -> None:
        if self._current is not None:
            self._current.sub_calls.append(call)


def _check_prompt_list(prompts: object) -> None:
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("llm_query_batched takes a list of prompt strings")


def _render_signature(spec: SignatureSpec) -> str:
    left = ", ".join(f"{f.name}: {f.type_name}" for f in spec.inputs)
    right = ", ".join(f"{f.name}: {f.type_name}" for f in spec.outputs)
    return f"{left} -> {right}"


def _size_info(value: object) -> dict[str, Any]:
    size = len(value) if isinstance(value, str | bytes | list | dict) else None
    return {"type": type(value).__name__, "length": size}


_JSON_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.DOTALL)


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a reply: a fenced block, else the outermost braces."""
    candidates = [m.group(1) for m in _JSON_FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None

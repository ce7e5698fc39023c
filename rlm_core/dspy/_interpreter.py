"""DSPyInterpreter: any of this toolkit's sandboxes as a DSPy ``CodeInterpreter``.

``dspy.RLM``, ``dspy.ProgramOfThought``, ``dspy.CodeAct`` and ``dspy.Flex`` run their code on
whatever ``interpreter_factory`` returns. :func:`interpreter_factory` makes such a factory for a
backend given by name, spec string, class or callable (:class:`DSPyInterpreter` also wraps an
instance), so DSPy's own loop runs on Docker, E2B, Modal, a local subprocess or the hardened
Deno sandbox. The adapter follows DSPy 3.4's
contract: a mutable ``tools`` dict, a lazy idempotent ``start()``, ``execute(code, variables)``
returning the final value or ``FinalOutput``, recoverable ``CodeExecutionError``/``SyntaxError``
against terminal ``CodeInterpreterError``, ``shutdown()`` and DSPy's callbacks.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import anyio.from_thread
from dspy.primitives.code_interpreter import CodeInterpreterError
from dspy.utils.callback import BaseCallback, with_callbacks

from rlm_core.config import Settings, load_settings
from rlm_core.dspy._results import execution_instructions, to_dspy
from rlm_core.dspy._variables import BoundVariables
from rlm_core.errors import ConfigError, InterpreterError
from rlm_core.interpreter import Capabilities, HostTool, Interpreter, SubmitField
from rlm_core.registry import InterpreterSpec, create
from rlm_core.sync import BlockingInterpreter

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "DSPyInterpreter",
    "InterpreterFactory",
    "interpreter_factory",
]

DEFAULT_MAX_OUTPUT_CHARS = 4_000_000
"""Characters of stdout/stderr/value returned per step: all of it in practice (DSPy truncates
what its prompt shows itself), bounded so a runaway print cannot exceed the bridge's frame."""

DSPY_NAMESPACE_PREFIX = "__dspy"
"""DSPy's own guest names (``__dspy_construct__``, ``__dspy_call__``, ``__dspy_host_token``)."""

_ALIAS_PREFIX = "_rlm_alias"

_F = TypeVar("_F", bound=Callable[..., Any])


def _traced(method: _F) -> _F:
    """DSPy's callback wrapper (``on_interpreter_*`` events), keeping the method's type."""
    return cast(_F, with_callbacks(method))


def _alias(name: str) -> str:
    """The name a DSPy-reserved global travels under: our name rules refuse a leading ``__``."""
    return _ALIAS_PREFIX + name


class DSPyInterpreter:
    """A DSPy ``CodeInterpreter`` running code in one session of one of our backends.

    Args:
        interpreter: A backend name or spec (``"docker"``, ``"e2b?standin=true"``), a class,
            a zero-argument factory, or an unstarted instance; default: the configured one.
        tools: Host functions guest code may call; RLM adds its own to :attr:`tools` later.
        output_fields: DSPy's typed ``SUBMIT`` parameters (``[{"name": ..., "type": ...}]``).
        callbacks: DSPy callbacks for this instance (the global ones apply too).
        timeout: Seconds a step may run; a step that outruns it is a ``CodeExecutionError``
            when the backend survives timeouts, else the session ends. ``None``: no limit.
        max_output_chars: Output characters returned per step (head and tail beyond it).
        settings: Where backend options come from (default: environment and ``rlm.toml``).
        **options: Backend options, as for :meth:`rlm_core.config.Settings.create_interpreter`.

    Instances are single-session and single-use: after :meth:`shutdown`, or after the sandbox
    is lost, every call raises ``CodeInterpreterError``; make a new one.
    """

    def __init__(
        self,
        interpreter: InterpreterSpec | None = None,
        *,
        tools: Mapping[str, Callable[..., Any]] | None = None,
        output_fields: list[dict[str, Any]] | None = None,
        callbacks: list[BaseCallback] | None = None,
        timeout: float | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        settings: Settings | None = None,
        **options: Any,
    ) -> None:
        self._backend = _build(interpreter, settings, options)
        self._tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = output_fields
        self.callbacks = list(callbacks or [])
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self._tools_registered = False
        self._registered: tuple[dict[str, Callable[..., Any]], list[dict[str, Any]] | None] = (
            {},
            None,
        )
        self._repl: BlockingInterpreter | None = None
        self._ended: str | None = None
        self._variables = BoundVariables()

    @property
    def tools(self) -> dict[str, Callable[..., Any]]:
        """Host tools by name; DSPy adds to this dict, and each step registers what changed."""
        return self._tools

    @property
    def capabilities(self) -> Capabilities:
        """What the backend enforces."""
        return self._backend.capabilities

    @property
    def execution_instructions(self) -> str:
        """The runtime description DSPy puts in its prompt."""
        return execution_instructions(self._backend.capabilities)

    # ---- lifecycle -------------------------------------------------------------------------

    @_traced
    def start(self) -> None:
        """Boot the sandbox; later calls do nothing. A lost or shut-down session stays ended."""
        if self._ended is not None:
            raise CodeInterpreterError(self._ended)
        if self._repl is not None:
            return
        repl = BlockingInterpreter(self._backend)
        with self._terminal("starting the sandbox"):
            try:
                repl.start()
            except BaseException:
                repl.close()
                raise
        self._repl = repl

    @_traced
    def shutdown(self) -> None:
        """Close the sandbox; idempotent. The instance cannot be used again."""
        if self._ended is None:
            self._ended = "this interpreter was shut down; create a new one for a fresh session"
        repl, self._repl = self._repl, None
        if repl is not None:
            repl.close()

    def __enter__(self) -> DSPyInterpreter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ---- execution -------------------------------------------------------------------------

    @_traced
    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        """Run ``code`` after binding ``variables``; return what DSPy expects of a step.

        Returns:
            ``FinalOutput`` when the code called ``SUBMIT``; else the final expression's value
            as a Python value when nothing was printed; else the printed text (followed by the
            value's repr, if there is one); ``None`` when there was neither.

        Raises:
            SyntaxError: The code does not parse.
            CodeExecutionError: The code (or a tool it called) raised, or it timed out and the
                session survived.
            CodeInterpreterError: The sandbox is gone or refused the inputs; terminal.
        """
        if self._repl is None:
            self.start()
        repl = self._repl
        assert repl is not None
        self._register(repl)
        self._bind(repl, variables or {})
        with self._terminal("running code"):
            result = repl.execute(
                code, timeout=self.timeout, max_output_chars=self.max_output_chars
            )
        return to_dspy(result)

    @_traced
    def invoke_tool(self, tool_name: str, kwargs: dict[str, Any]) -> Any:
        """Call a host tool with keyword arguments, as DSPy's tools expect; awaits coroutines."""
        return self._call_tool(tool_name, (), kwargs)

    def _call_tool(self, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        if name not in self._tools:
            raise CodeInterpreterError(f"Unknown tool: {name}")
        result = self._tools[name](*args, **kwargs)
        if inspect.isawaitable(result):
            # Tools run on a worker thread of the sandbox's event loop: await there.
            return anyio.from_thread.run(_awaited, result)
        return result

    # ---- helpers ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _terminal(self, doing: str) -> Iterator[None]:
        """Turn our interpreter errors into DSPy's terminal ``CodeInterpreterError``."""
        if self._ended is not None:
            raise CodeInterpreterError(self._ended)
        try:
            yield
        except InterpreterError as exc:
            self._ended = f"the sandbox session ended while {doing}: {exc}"
            self._variables.forget()
            repl, self._repl = self._repl, None
            if repl is not None:  # free the sandbox and the event loop thread now
                with contextlib.suppress(Exception):
                    repl.close()
            raise CodeInterpreterError(self._ended) from exc
        except (ConfigError, TypeError) as exc:  # refused before anything was sent
            raise CodeInterpreterError(f"{doing}: {exc}") from exc

    def _register(self, repl: BlockingInterpreter) -> None:
        tools, outputs = self._registered
        if self._tools_registered and tools == self._tools and outputs == self.output_fields:
            return
        guest_tools: dict[str, HostTool] = {
            _alias(name) if name.startswith(DSPY_NAMESPACE_PREFIX) else name: self._host_tool(
                name, fn
            )
            for name, fn in self._tools.items()
        }
        submit = None
        if self.output_fields is not None:
            submit = [
                SubmitField(name=str(f["name"]), type=str(f.get("type", "")))
                for f in self.output_fields
            ]
        with self._terminal("registering tools"):
            repl.register(guest_tools, submit)
            self._bind_reserved(
                repl, [n for n in self._tools if n.startswith(DSPY_NAMESPACE_PREFIX)]
            )
        self._registered = (dict(self._tools), self.output_fields)
        self._tools_registered = True

    def _bind(self, repl: BlockingInterpreter, variables: Mapping[str, Any]) -> None:
        try:
            changed = self._variables.changes(variables)
        except TypeError as exc:
            raise CodeInterpreterError(f"Unsupported value for a variable: {exc}") from exc
        if not changed:
            return
        sent = {
            _alias(name) if name.startswith(DSPY_NAMESPACE_PREFIX) else name: converted
            for name, (_, converted, _) in changed.items()
        }
        with self._terminal("binding variables"):
            repl.set_variables(sent)
            self._bind_reserved(repl, [n for n in changed if n.startswith(DSPY_NAMESPACE_PREFIX)])
        self._variables.record(changed)

    def _bind_reserved(self, repl: BlockingInterpreter, names: list[str]) -> None:
        """Give DSPy's reserved globals their real names in the guest, from their aliases."""
        if not names:
            return
        result = repl.execute(
            "\n".join(f"{name} = {_alias(name)}" for name in names), timeout=self.timeout
        )
        if result.error is not None:
            raise CodeInterpreterError(f"binding DSPy's sandbox names failed: {result.error}")

    def _host_tool(self, name: str, fn: Callable[..., Any]) -> HostTool:
        """The host side of a guest tool: arguments by name, through DSPy's callbacks."""
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # a builtin without one: accept what the guest sends
            signature = _ANY_ARGUMENTS

        def call(*args: Any, **kwargs: Any) -> Any:
            positional, named = _by_name(signature, args, kwargs)
            if positional:  # positional-only or *args: DSPy's keyword-only path cannot carry them
                return self._call_tool(name, positional, named)
            return self.invoke_tool(name, named)

        call.__signature__ = signature  # type: ignore[attr-defined]
        call.__doc__ = fn.__doc__
        return call


_ANY_ARGUMENTS = inspect.Signature(
    [
        inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
        inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
    ]
)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _by_name(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Rebind a call so every named parameter travels by keyword (DSPy's tools are ``**kw``)."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return list(args), kwargs  # let the tool raise its own error
    positional: list[Any] = []
    named: dict[str, Any] = {}
    for key, value in bound.arguments.items():
        kind = signature.parameters[key].kind
        if kind is inspect.Parameter.POSITIONAL_ONLY:
            positional.append(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            positional.extend(value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[key] = value
    return positional, named


def _build(
    spec: InterpreterSpec | None, settings: Settings | None, options: dict[str, Any]
) -> Interpreter:
    if spec is None or isinstance(spec, str):
        return (settings or load_settings()).create_interpreter(spec, **options)
    return create(spec, **options)


class InterpreterFactory:
    """A zero-argument factory of :class:`DSPyInterpreter` for ``interpreter_factory=``.

    DSPy reads :attr:`execution_instructions` off the factory for its prompt, and calls the
    factory once per module call (possibly from several threads); each call builds a fresh
    backend instance and session.
    """

    def __init__(self, interpreter: InterpreterSpec | None = None, **options: Any) -> None:
        if not isinstance(interpreter, type) and isinstance(interpreter, Interpreter):
            raise ConfigError(
                "a factory makes a new sandbox per DSPy call, so it needs a name, spec, class "
                "or zero-argument callable, not an interpreter instance; wrap one instance in "
                "DSPyInterpreter(instance) instead"
            )
        self._interpreter = interpreter
        self._options = options
        self._probe = DSPyInterpreter(interpreter, **options)  # checks the spec now, no I/O

    @property
    def execution_instructions(self) -> str:
        """The runtime description DSPy splices into its prompt."""
        return self._probe.execution_instructions

    def __call__(self) -> DSPyInterpreter:
        """A new, unstarted interpreter."""
        return DSPyInterpreter(self._interpreter, **self._options)

    def __repr__(self) -> str:
        return f"interpreter_factory({self._interpreter!r})"


def interpreter_factory(
    interpreter: InterpreterSpec | None = None, **options: Any
) -> InterpreterFactory:
    """A factory for ``dspy.RLM(interpreter_factory=...)`` or ``dspy.configure(...)``.

    Example::

        dspy.configure(interpreter_factory=interpreter_factory("docker"))
    """
    return InterpreterFactory(interpreter, **options)

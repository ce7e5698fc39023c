"""Host tools as the guest sees them: signatures to re-create, and results made JSON.

A host function's real signature (positional, keyword-only, defaults, ``*args``/``**kwargs``)
is described by a :class:`ToolSpec` so every backend can build a guest function that binds
arguments exactly like the original. Defaults that are not JSON stay on the host: the guest
omits the argument and the host's own default applies.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Mapping, Sequence, Set
from typing import Any, Literal, TypeAlias, Union

import anyio
import pydantic_core

from rlm_core.checks import check_output_names, check_variable_name
from rlm_core.errors import ConfigError
from rlm_core.interpreter import GUEST_BUILTINS, JSON, HostTool, SubmitField

__all__ = [
    "ParamKind",
    "ToolParam",
    "ToolSpec",
    "call_host_tool",
    "check_registration",
    "check_utf8",
    "current_tool_owner",
    "describe_exception",
    "describe_tools",
    "stops_the_run",
    "to_json",
    "type_name",
]

ParamKind: TypeAlias = Literal[
    "positional_only", "positional_or_keyword", "var_positional", "keyword_only", "var_keyword"
]

_KINDS: dict[inspect._ParameterKind, ParamKind] = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ToolParam:
    """One parameter of a host tool."""

    name: str
    kind: ParamKind
    has_default: bool = False
    default: JSON = None
    """The default when it is JSON; otherwise None with ``default_is_host_only`` set."""
    default_is_host_only: bool = False
    annotation: str = ""

    def to_json(self) -> dict[str, JSON]:
        """The wire form sent to guests."""
        return {
            "name": self.name,
            "kind": self.kind,
            "has_default": self.has_default,
            "default": self.default,
            "host_default": self.default_is_host_only,
            "annotation": self.annotation,
        }


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    """A host tool's name, signature and documentation."""

    name: str
    params: tuple[ToolParam, ...]
    doc: str = ""
    returns: str = ""

    def to_json(self) -> dict[str, JSON]:
        """The wire form sent to guests."""
        return {
            "name": self.name,
            "params": [p.to_json() for p in self.params],
            "doc": self.doc,
            "returns": self.returns,
        }

    def render(self) -> str:
        """The signature as Python source, e.g. ``lookup(key: str, limit: int = 5) -> list``."""
        parts: list[str] = []
        seen_kw_marker = False
        for i, p in enumerate(self.params):
            text = p.name + (f": {p.annotation}" if p.annotation else "")
            if p.kind == "var_positional":
                text = "*" + text
                seen_kw_marker = True
            elif p.kind == "var_keyword":
                text = "**" + text
            elif p.kind == "keyword_only" and not seen_kw_marker:
                parts.append("*")
                seen_kw_marker = True
            if p.has_default:
                shown = "..." if p.default_is_host_only else repr(p.default)
                text += f" = {shown}" if p.annotation else f"={shown}"
            parts.append(text)
            nxt = self.params[i + 1] if i + 1 < len(self.params) else None
            if p.kind == "positional_only" and (nxt is None or nxt.kind != "positional_only"):
                parts.append("/")
        arrow = f" -> {self.returns}" if self.returns else ""
        return f"{self.name}({', '.join(parts)}){arrow}"


def _annotation_text(annotation: object) -> str:
    return "" if annotation is inspect.Parameter.empty else type_name(annotation)


def type_name(annotation: Any) -> str:
    """Render a type annotation the way a Python programmer writes it."""
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in typing.get_args(annotation)) + "]"
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = typing.get_args(annotation)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(type_name(a) for a in args)}]" if args else base
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _describe(name: str, fn: HostTool) -> ToolSpec:
    if not callable(fn):
        raise ConfigError(f"tool {name!r} is a {type(fn).__name__}, not a callable.")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"tool {name!r}: cannot read its signature ({exc}); wrap it in a plain function."
        ) from exc
    params: list[ToolParam] = []
    for p in signature.parameters.values():
        has_default = p.default is not inspect.Parameter.empty
        default: JSON = None
        host_only = False
        if has_default:
            try:
                default = to_json(p.default)
            except TypeError:
                host_only = True
        params.append(
            ToolParam(
                name=p.name,
                kind=_KINDS[p.kind],
                has_default=has_default,
                default=default,
                default_is_host_only=host_only,
                annotation=_annotation_text(p.annotation),
            )
        )
    return ToolSpec(
        name=name,
        params=tuple(params),
        doc=inspect.getdoc(fn) or "",
        returns=_annotation_text(signature.return_annotation),
    )


def describe_tools(
    tools: Mapping[str, HostTool], *, reserved: frozenset[str] = GUEST_BUILTINS
) -> tuple[ToolSpec, ...]:
    """Describe each tool, rejecting names that are not identifiers or are reserved.

    Raises:
        ConfigError: A name is invalid or reserved, or a tool is not callable.
    """
    specs = []
    for name, fn in tools.items():
        check_variable_name(name, reserved=reserved)
        specs.append(_describe(name, fn))
    return tuple(specs)


def check_registration(
    tools: Mapping[str, HostTool],
    outputs: Sequence[SubmitField] | None,
    *,
    bound_variables: Set[str],
) -> tuple[ToolSpec, ...]:
    """Everything ``Interpreter.register`` must refuse before it touches a session.

    Returns the tools' descriptions for the guest.

    Raises:
        ConfigError: A tool name is invalid, reserved or already bound as a variable, a tool
            is not callable, or an output name is invalid or repeated.
    """
    specs = describe_tools(tools, reserved=GUEST_BUILTINS)
    clash = bound_variables & tools.keys()
    if clash:
        raise ConfigError(f"tool names {sorted(clash)} are already bound as variables")
    if outputs is not None:
        check_output_names(outputs)
    return specs


def to_json(value: object) -> JSON:
    """Convert a host value to JSON: pydantic models and dataclasses become dicts.

    Raises:
        TypeError: The value has no JSON form (the message names its type).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    try:
        converted = pydantic_core.to_jsonable_python(value)
    except (pydantic_core.PydanticSerializationError, ValueError) as exc:
        raise TypeError(f"a {type(value).__name__} has no JSON form: {exc}") from None
    if isinstance(value, float) or _has_non_finite(converted):
        raise TypeError("NaN and infinite floats have no JSON form")
    return converted  # type: ignore[no-any-return]


def check_utf8(value: JSON) -> None:
    """Raise TypeError if a string in a JSON value holds a lone surrogate (no UTF-8 form)."""
    stack: list[JSON] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise TypeError(
                        f"a str holds {exc.reason} at index {exc.start}, which has no UTF-8 form"
                    ) from None
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())


def _has_non_finite(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False


_tool_owner: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "rlm_tool_owner", default=None
)


def current_tool_owner() -> object | None:
    """The interpreter whose tool is running in this context, if any (to refuse re-entry)."""
    return _tool_owner.get()


def stops_the_run(exc: BaseException) -> bool:
    """Whether a host callable's exception must end the run instead of becoming data.

    Only the user's own Ctrl-C (``KeyboardInterrupt``) and task cancellation do; anything else
    a tool or model raises (``SystemExit``, a custom ``BaseException``) is reported to the model.
    """
    return isinstance(exc, KeyboardInterrupt | anyio.get_cancelled_exc_class())


def describe_exception(exc: BaseException) -> dict[str, JSON]:
    """``{"type", "message"}`` of an exception, even when its ``__str__`` itself raises."""
    try:
        message = str(exc)
    except Exception:  # a hostile or broken __str__ must not crash the run
        message = f"<{type(exc).__name__} object whose str() failed>"
    # A lone surrogate could not be encoded for the guest; replace it rather than fail.
    message = message.encode("utf-8", "replace").decode("utf-8")
    return {"type": type(exc).__name__, "message": message}


async def call_host_tool(
    owner: object,
    tools: Mapping[str, HostTool],
    name: str,
    args: list[JSON],
    kwargs: dict[str, JSON],
) -> dict[str, JSON]:
    """Run a guest's tool call on the host and build the reply the guest expects.

    Async tools are awaited; sync tools run in a worker thread so the event loop stays free.
    Exceptions (``SystemExit`` and other ``BaseException`` subclasses included) become
    ``{"ok": False, "error": {"type", "message"}}``; results go through :func:`to_json`.
    Cancellation (the cell's timeout abandons the tool) and ``KeyboardInterrupt`` propagate.
    """
    fn = tools.get(name)
    if fn is None:
        return {"ok": False, "error": {"type": "NameError", "message": f"no host tool {name!r}"}}
    token = _tool_owner.set(owner)
    try:
        if inspect.iscoroutinefunction(fn):
            value = await fn(*args, **kwargs)
        else:
            value = await anyio.to_thread.run_sync(
                functools.partial(fn, *args, **kwargs), abandon_on_cancel=True
            )
            if inspect.isawaitable(value):
                value = await value
    except BaseException as exc:
        if stops_the_run(exc):
            raise
        return {"ok": False, "error": describe_exception(exc)}
    finally:
        _tool_owner.reset(token)
    try:
        converted = to_json(value)
        check_utf8(converted)
        return {"ok": True, "value": converted}
    except Exception as exc:  # TypeError, or a value whose own conversion code raises
        problem = describe_exception(exc)["message"]
        message = f"tool {name}() returned a value that cannot reach the sandbox: {problem}"
        return {"ok": False, "error": {"type": "TypeError", "message": message}}

"""Find interpreter backends and build them from a name, a spec string, a class or an instance.

Backends are plugins, ours included: each distribution declares an entry point in the
``rlm.interpreters`` group, named after its scheme. ``create("docker://python:3.12?memory=1g")``
loads the ``docker`` entry point and calls ``DockerInterpreter.from_url("python:3.12",
memory="1g")``, with option strings coerced to the types the constructor declares.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import inspect
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import pydantic

from rlm_core.errors import ConfigError, InterpreterUnavailableError
from rlm_core.interpreter import Interpreter

__all__ = [
    "DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "KNOWN_BACKENDS",
    "InterpreterSpec",
    "available",
    "check_installed",
    "create",
    "install_hint",
    "load",
    "parse_spec",
    "refresh",
]

ENTRY_POINT_GROUP = "rlm.interpreters"

DISTRIBUTION = "rlmbox"
"""The core distribution's name on the package index (the import package is ``rlm_core``)."""

KNOWN_BACKENDS: Mapping[str, str] = {
    name: f"{DISTRIBUTION}-{name}"
    for name in ("deno", "docker", "e2b", "mock", "modal", "subprocess")
}
"""Our own backends and the distribution that provides each; each is also an extra of the
core distribution of the same name (``pip install "rlmbox[docker]"``)."""


def install_hint(*extras: str) -> str:
    """The pip command that installs the core distribution with these extras."""
    if not extras:
        return f"pip install {DISTRIBUTION}"
    return f'pip install "{DISTRIBUTION}[{",".join(extras)}]"'


InterpreterSpec = str | type | Interpreter | Callable[[], Interpreter]
"""Anything :func:`create` accepts."""


@functools.cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            warnings.warn(
                f"two packages provide the interpreter {ep.name!r} ({found[ep.name].value} and "
                f"{ep.value}); using {ep.value}",
                RuntimeWarning,
                stacklevel=3,
            )
        found[ep.name] = ep
    return found


def refresh() -> None:
    """Forget the cached entry points (after installing a backend at run time)."""
    _entry_points.cache_clear()


def available() -> list[str]:
    """Names of the installed backends, sorted."""
    return sorted(_entry_points())


def load(name: str) -> type:
    """Import the class registered under ``name``.

    Raises:
        ConfigError: No installed backend has that name; the message lists the installed ones,
            suggests the closest, and names the package to install.
        InterpreterUnavailableError: The backend is installed but fails to import.
    """
    check_installed(name)
    ep = _entry_points()[name]
    try:
        cls = ep.load()
    except Exception as exc:
        raise InterpreterUnavailableError(
            f"the {name!r} interpreter is installed but fails to import ({ep.value}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(cls, type):
        raise ConfigError(f"entry point {name!r} ({ep.value}) is not a class")
    return cls


def check_installed(name: str) -> None:
    """Check that a backend called ``name`` is installed, without importing it.

    Raises:
        ConfigError: It is not; the message lists the installed ones, suggests the closest,
            and names the package to install.
    """
    eps = _entry_points()
    if name not in eps:
        raise ConfigError(_unknown_message(name, eps.keys()))


def _unknown_message(name: str, installed: typing.Iterable[str]) -> str:
    names = sorted(installed)
    parts = [f"no interpreter named {name!r} is installed."]
    if name in KNOWN_BACKENDS:
        parts.append(f"Install it with `{install_hint(name)}`.")
    close = difflib.get_close_matches(name, [*names, *KNOWN_BACKENDS], n=1)
    if close and close[0] != name:
        parts.append(f"Did you mean {close[0]!r}?")
    parts.append(f"Installed: {', '.join(names) if names else 'none'}.")
    missing = sorted(set(KNOWN_BACKENDS) - set(names) - {name})
    if missing:
        parts.append(f"Also available: {', '.join(missing)} (`{install_hint('NAME')}`).")
    return " ".join(parts)


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split ``name://target?key=value`` into name, target and options.

    Raises:
        ConfigError: The spec is empty or has no name.
    """
    text = spec.strip()
    if not text:
        raise ConfigError("the interpreter spec is empty; use a name such as 'deno' or 'docker'")
    name, sep, rest = text.partition("://")
    if not sep:
        name, _, query = text.partition("?")
        rest = "?" + query if query else ""
    target, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key in options:
            raise ConfigError(f"option {key!r} is given twice in {spec!r}")
        options[key] = value
    if not name.isidentifier():
        raise ConfigError(f"{spec!r} does not start with an interpreter name such as 'docker'")
    return name, unquote(target), options


def create(
    spec: InterpreterSpec,
    *,
    defaults: Mapping[str, Any] | None = None,
    **options: Any,
) -> Interpreter:
    """Build an interpreter from a name, a spec string, a class, an instance or a factory.

    Args:
        spec: ``"deno"``, ``"docker://python:3.12-slim?memory=2g"``, a class, a zero-argument
            factory, or an instance (returned as is).
        defaults: Options from configuration; explicit ``options`` and spec options override
            them.
        **options: Constructor options; strings are coerced to the declared parameter types.

    Raises:
        ConfigError: Unknown name (with install hints), unknown option, or a bad value.
        InterpreterUnavailableError: The backend is installed but cannot be imported.
    """
    if isinstance(spec, str):
        name, target, spec_options = parse_spec(spec)
        cls = load(name)
        merged = {**(defaults or {}), **spec_options, **options}
        return _construct(cls, name, target, merged)
    if isinstance(spec, type):
        return _construct(spec, spec.__name__, "", {**(defaults or {}), **options})
    if isinstance(spec, Interpreter):
        if options:
            raise ConfigError("options cannot be applied to an interpreter instance")
        return spec
    if callable(spec):
        made = spec(**options)
        if not isinstance(made, Interpreter):
            raise ConfigError(f"the interpreter factory returned a {type(made).__name__}")
        return made
    raise ConfigError(f"cannot make an interpreter from a {type(spec).__name__}")


def _construct(cls: type, name: str, target: str, options: dict[str, Any]) -> Interpreter:
    factory: Callable[..., Any] = (
        (getattr(cls, "from_url", None) or _no_target(name)) if target else cls
    )
    kwargs = _coerce_options(cls, name, options)
    made = factory(target, **kwargs) if target else factory(**kwargs)
    if not isinstance(made, Interpreter):
        raise ConfigError(f"{cls.__name__} does not implement the Interpreter protocol")
    return made


def _no_target(name: str) -> Callable[..., Any]:
    def refuse(*args: object, **kwargs: object) -> Any:
        raise ConfigError(f"the {name!r} interpreter takes no target; pass options only")

    return refuse


def _coerce_options(cls: type, name: str, options: dict[str, Any]) -> dict[str, Any]:
    init = cls.__dict__.get("__init__") or next(
        (k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__), object.__init__
    )
    signature = inspect.signature(init)
    params = {k: p for k, p in signature.parameters.items() if k != "self"}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # unresolvable annotations: pass values through unchanged
        hints = {}
    coerced: dict[str, Any] = {}
    for key, value in options.items():
        if key not in params and not accepts_any:
            allowed = ", ".join(k for k, p in params.items() if p.kind is not p.VAR_POSITIONAL)
            raise ConfigError(
                f"the {name!r} interpreter has no option {key!r}; its options are: {allowed}"
            )
        hint = hints.get(key)
        if hint is None or not isinstance(value, str):
            coerced[key] = value
            continue
        try:
            coerced[key] = pydantic.TypeAdapter(hint).validate_python(value)
        except pydantic.ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise ConfigError(
                f"option {key!r} of the {name!r} interpreter: {value!r} is invalid ({problem})"
            ) from None
    return coerced

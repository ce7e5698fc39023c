"""Checks the host runs before anything reaches a sandbox: names, and values that must be JSON.

Every backend and the loop call these, so a bad name or value is refused with the same
:class:`~rlm_core.errors.ConfigError` or ``TypeError`` wherever it is passed, and before a
sandbox has been started or sent anything.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Mapping, Sequence

from rlm_core.errors import ConfigError
from rlm_core.interpreter import GUEST_BUILTINS, SubmitField

__all__ = ["check_output_names", "check_variable_name", "check_variables", "utf8_size"]

_CHUNK = 4 * 1024 * 1024
"""Characters encoded at a time when measuring text, so a 1 GB string is never copied whole."""


def check_variable_name(name: str, *, reserved: frozenset[str] = GUEST_BUILTINS) -> None:
    """Raise ConfigError unless ``name`` can be a guest global that shadows nothing reserved."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigError(f"{name!r} is not a valid Python identifier; rename it.")
    if name in reserved:
        raise ConfigError(f"{name!r} is reserved in the sandbox; choose another name.")
    if name.startswith("__"):
        raise ConfigError(f"{name!r} starts with '__', which is reserved for the sandbox runtime.")


def check_output_names(outputs: Sequence[SubmitField]) -> None:
    """Raise ConfigError unless every output can be a parameter of ``SUBMIT``, once."""
    names = [o.name for o in outputs]
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ConfigError(f"output name {name!r} is not a Python identifier; rename it.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"output names {repeated} appear more than once in {names}")


def check_variables(values: Mapping[str, object], *, reserved: frozenset[str]) -> None:
    """Validate names and value types of a ``set_variables`` call before anything is sent.

    Raises:
        ConfigError: A name is invalid or reserved.
        TypeError: A value is neither JSON nor bytes; the message names the variable and path.
    """
    for name, value in values.items():
        check_variable_name(name, reserved=reserved)
        if isinstance(value, str | bytes):
            continue
        _check_json(value, name)


def _check_json(value: object, path: str) -> None:
    # Iterative, so deeply nested values cannot blow the host's stack.
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if item is None or isinstance(item, bool | int | str):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise TypeError(
                    f"{where} is {item!r}; only finite floats can cross into the sandbox."
                )
            continue
        if isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
            continue
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"{where} has a key of type {type(key).__name__}; JSON objects need "
                        "string keys."
                    )
                stack.append((child, f"{where}[{key!r}]"))
            continue
        raise TypeError(
            f"{where} is a {type(item).__name__}, which cannot cross into the sandbox; pass JSON "
            "values (str, int, float, bool, None, list, dict) or bytes, e.g. convert a set with "
            "sorted(...) or a model with .model_dump(mode='json')."
        )


def utf8_size(text: str) -> int:
    """Bytes ``text`` takes as UTF-8 (as it crosses into the sandbox), without a full encoded copy.

    Raises:
        UnicodeEncodeError: ``text`` holds a lone surrogate; ``start`` is its index in ``text``.
    """
    if text.isascii():
        return len(text)
    size = 0
    for offset in range(0, len(text), _CHUNK):
        try:
            size += len(text[offset : offset + _CHUNK].encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise UnicodeEncodeError(
                "utf-8", text, offset + exc.start, offset + exc.end, exc.reason
            ) from None
    return size

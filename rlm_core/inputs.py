"""A run's inputs, checked before any sandbox starts: exact JSON form, valid Unicode, size.

Nothing is converted silently: a set, a dict with non-string keys, bytes inside a container or
a string with lone surrogates is refused with a :class:`~rlm_core.errors.ConfigError` naming the
input and what to pass instead; a value over the backend's ``max_variable_bytes`` is refused
from the capabilities, before ``start()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rlm_core.checks import utf8_size
from rlm_core.errors import ConfigError
from rlm_core.interpreter import Capabilities, VariableValue
from rlm_core.tools import check_utf8, to_json

__all__ = ["check_input_sizes", "prepare_inputs", "variable_size"]

_ACCEPTED = (
    "pass JSON values (str, int, float, bool, None, list, dict), bytes, dataclasses or "
    "pydantic models"
)


def prepare_inputs(inputs: Mapping[str, Any]) -> dict[str, VariableValue]:
    """The values the sandbox will receive: strings and bytes as they are, the rest as JSON.

    Raises:
        ConfigError: A value has no exact JSON form or holds text that is not valid Unicode;
            the message names the input, the place inside it, and what to pass instead.
    """
    bound: dict[str, VariableValue] = {}
    for name, value in inputs.items():
        if isinstance(value, bytes):
            bound[name] = value
            continue
        if isinstance(value, str):
            _check_text(name, value)
            bound[name] = value
            continue
        _refuse_lossy(name, value)
        try:
            converted = to_json(value)
            check_utf8(converted)
        except TypeError as exc:
            raise ConfigError(
                f"input {name!r} cannot enter the sandbox: {exc}; {_ACCEPTED}"
            ) from None
        bound[name] = converted
    return bound


def variable_size(value: VariableValue) -> int:
    """Bytes a value takes in the sandbox channel: UTF-8 text, raw bytes, or JSON text."""
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return utf8_size(value)
    return len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))


def check_input_sizes(sizes: Mapping[str, int], capabilities: Capabilities, backend: str) -> None:
    """Refuse an input larger than the backend's ``max_variable_bytes``.

    Raises:
        ConfigError: An input is over the limit; the message says what to do instead.
    """
    limit = capabilities.max_variable_bytes
    if limit is None:
        return
    for name, size in sizes.items():
        if size > limit:
            raise ConfigError(
                f"input {name!r} is {size:,} bytes; the {backend} backend accepts at most "
                f"{limit:,} bytes per variable (capabilities.max_variable_bytes). Pass a smaller "
                "value (split it into several inputs, or filter it first), or choose a backend "
                "with a larger limit."
            )


def _check_text(name: str, text: str) -> None:
    try:
        utf8_size(text)
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"input {name!r} is a str that is not valid Unicode ({exc.reason} at index "
            f"{exc.start}); fix the text (e.g. text.encode('utf-8', "
            "'replace').decode()) or pass the raw bytes instead"
        ) from None


def _refuse_lossy(name: str, value: object) -> None:
    """Refuse containers JSON would change silently (sets, non-string keys, nested bytes)."""
    stack: list[tuple[object, str]] = [(value, name)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, set | frozenset):
            raise ConfigError(
                f"input {name!r}: {where} is a {type(item).__name__}, which has no JSON form; "
                "pass a list instead, e.g. sorted(...)"
            )
        if isinstance(item, bytearray | memoryview) or (
            isinstance(item, bytes) and item is not value
        ):
            raise ConfigError(
                f"input {name!r}: {where} is a {type(item).__name__} where only bytes at the top "
                "level can enter the sandbox; pass bytes(...) as an input of its own, or decode "
                "it to str"
            )
        if isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ConfigError(
                        f"input {name!r}: {where} has a key {key!r} of type "
                        f"{type(key).__name__}; JSON objects need string keys, so pass "
                        "{str(k): v for k, v in ...items()} or a list of pairs instead"
                    )
                stack.append((child, f"{where}[{key!r}]"))

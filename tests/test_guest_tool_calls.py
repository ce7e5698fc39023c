"""A guest's tool wrappers accept exactly the calls the host function accepts.

Plain positional calls take a fast path that skips ``Signature.bind``; every call shape is
checked against calling the host function itself, so the fast path cannot drift from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from rlm_core.bridge.guest import Session
from rlm_core.tools import describe_tools


def two(a: int, b: int) -> object:
    return ("two", a, b)


def defaults(a: int, b: int = 2, c: int = 3) -> object:
    return ("defaults", a, b, c)


def positional_only(a: int, b: int = 2, /, c: int = 3) -> object:
    return ("positional_only", a, b, c)


def required_keyword(a: int, b: int = 2, *, k: int) -> object:
    return ("required_keyword", a, b, k)


def star_args(a: int, *rest: int) -> object:
    return ("star_args", a, list(rest))


def star_kwargs(a: int, **extra: int) -> object:
    return ("star_kwargs", a, extra)


def nothing() -> object:
    return ("nothing",)


TOOLS: dict[str, Callable[..., object]] = {
    fn.__name__: fn
    for fn in (two, defaults, positional_only, required_keyword, star_args, star_kwargs, nothing)
}

CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, 3), {}),
    ((1, 2, 3, 4), {}),
    ((1,), {"b": 5}),
    ((), {"a": 1, "b": 2}),
    ((1,), {"k": 9}),
    ((1, 2), {"k": 9}),
    ((1,), {"c": 7}),
    ((1,), {"a": 1}),
    ((1,), {"zzz": 1}),
]


def outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except TypeError:
        return TypeError


def guest_with_tools(sent: list[tuple[str, list[Any], dict[str, Any]]]) -> Session:
    def call_tool(name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, object]:
        sent.append((name, args, kwargs))
        return {"ok": True, "value": TOOLS[name](*args, **kwargs)}

    session = Session(call_tool=call_tool)
    session.register([spec.to_json() for spec in describe_tools(TOOLS)], None)
    return session


@pytest.mark.parametrize("name", sorted(TOOLS))
@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_every_call_shape_behaves_as_on_the_host(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    session = guest_with_tools([])
    wrapper = session.namespace[name]
    expected = outcome(lambda: TOOLS[name](*args, **kwargs))
    assert outcome(lambda: wrapper(*args, **kwargs)) == expected


def test_arguments_reach_the_host_as_the_caller_wrote_them() -> None:
    # Keywords stay keywords: a host wrapper taking **kwargs (functools.wraps over a function
    # with named parameters, as DSPy wraps tools) needs them by name.
    sent: list[tuple[str, list[Any], dict[str, Any]]] = []
    session = guest_with_tools(sent)
    session.namespace["two"](1, b=2)
    session.namespace["star_args"](1, 2, 3)
    session.namespace["required_keyword"](1, k=3)
    session.namespace["defaults"](a=1, c=4)
    assert sent == [
        ("two", [1], {"b": 2}),
        ("star_args", [1, 2, 3], {}),
        ("required_keyword", [1], {"k": 3}),
        ("defaults", [], {"a": 1, "c": 4}),
    ]


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, object(), {1: "int key"}, [b"bytes"]], ids=repr
)
def test_arguments_without_a_json_form_are_refused_in_the_guest(value: object) -> None:
    sent: list[tuple[str, list[Any], dict[str, Any]]] = []
    session = guest_with_tools(sent)
    with pytest.raises(TypeError, match="is not JSON"):
        session.namespace["two"](value, 1)
    assert sent == []


def test_plain_values_pass_unchanged() -> None:
    sent: list[tuple[str, list[Any], dict[str, Any]]] = []
    session = guest_with_tools(sent)
    session.namespace["star_args"]("é", 1.5, True, None, [1, {"k": "v"}])
    assert sent == [("star_args", ["é", 1.5, True, None, [1, {"k": "v"}]], {})]

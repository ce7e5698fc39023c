"""Inputs are checked before any sandbox starts: nothing is converted silently or refused late."""

from __future__ import annotations

import dataclasses

import pytest

from rlm_core.errors import ConfigError
from rlm_core.interpreter import Capabilities
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_mock import MockInterpreter


class NeverStarted(MockInterpreter):
    """A backend with a small variable limit whose sandbox must never start."""

    starts = 0

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(super().capabilities, max_variable_bytes=1000)

    async def start(self) -> None:
        NeverStarted.starts += 1
        await super().start()


@pytest.fixture(autouse=True)
def _reset() -> None:
    NeverStarted.starts = 0


def call(**inputs: object) -> None:
    RLM("context -> a", lm=ScriptedLM([]), interpreter=NeverStarted)(**inputs)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({1, 2}, r"input 'context': context is a set.*pass a list instead"),
        (frozenset({"a"}), r"context is a frozenset.*pass a list"),
        ([{"ok": {3}}], r"context\[0\]\['ok'\] is a set"),
        ({1: "a"}, r"context has a key 1 of type int; JSON objects need string keys"),
        ({"x": {(1, 2): 3}}, r"context\['x'\] has a key \(1, 2\) of type tuple"),
        ([b"raw"], r"context\[0\] is a bytes where only bytes at the top level"),
        (bytearray(b"raw"), r"context is a bytearray.*pass bytes\(\.\.\.\)"),
        ("bad \ud800 text", r"input 'context' is a str that is not valid Unicode.*index 4"),
        (["ok", "bad \udfff"], r"input 'context' cannot enter the sandbox.*surrogate"),
        ({"k": float("nan")}, r"input 'context' cannot enter the sandbox.*NaN"),
        (object(), r"input 'context' cannot enter the sandbox.*pass JSON values"),
    ],
    ids=[
        "set",
        "frozenset",
        "nested-set",
        "int-key",
        "tuple-key",
        "nested-bytes",
        "bytearray",
        "lone-surrogate",
        "nested-surrogate",
        "nan",
        "object",
    ],
)
def test_inputs_without_an_exact_sandbox_form_are_refused_up_front(
    value: object, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        call(context=value)
    assert NeverStarted.starts == 0


@pytest.mark.parametrize(
    "value",
    ["é" * 501, b"x" * 1001, ["x" * 998], "x" * 1001],
    ids=["str-utf8", "bytes", "json", "ascii"],
)
def test_an_input_over_max_variable_bytes_is_refused_before_the_sandbox_starts(
    value: object,
) -> None:
    with pytest.raises(
        ConfigError,
        match=r"input 'context' is 1,00[12] bytes; the NeverStarted backend accepts at most "
        r"1,000 bytes per variable.*Pass a smaller value",
    ):
        call(context=value)
    assert NeverStarted.starts == 0


def test_values_at_the_limit_and_exact_json_values_still_run() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: list[int]

    lm = ScriptedLM(["```python\nSUBMIT(repr(context))\n```" for _ in range(3)])
    rlm = RLM("context -> a", lm=lm, interpreter=NeverStarted)
    assert rlm(context="é" * 500).a == repr("é" * 500)
    assert rlm(context={"a": [1, (2, 3)], "b": None}).a == "{'a': [1, [2, 3]], 'b': None}"
    assert rlm(context=Point(1, [2])).a == "{'x': 1, 'y': [2]}"

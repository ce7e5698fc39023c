"""Host tools keep their real signatures, and their results become JSON."""

from __future__ import annotations

import dataclasses
import datetime

import pydantic
import pytest

from rlm_core.errors import ConfigError
from rlm_core.tools import describe_tools, to_json


def sample(
    a: int, /, b: str = "x", *rest: int, flag: bool = False, when: object = object(), **extra: str
) -> list[str]:
    """Do a thing."""
    return []


def test_signature_is_described_and_rendered_faithfully() -> None:
    (spec,) = describe_tools({"sample": sample})
    assert spec.doc == "Do a thing."
    kinds = [p.kind for p in spec.params]
    assert kinds == [
        "positional_only",
        "positional_or_keyword",
        "var_positional",
        "keyword_only",
        "keyword_only",
        "var_keyword",
    ]
    when = spec.params[4]
    assert when.has_default
    assert when.default_is_host_only
    assert spec.render() == (
        "sample(a: int, /, b: str = 'x', *rest: int, flag: bool = False, when: object = ..., "
        "**extra: str) -> list[str]"
    )


@pytest.mark.parametrize("name", ["SUBMIT", "print", "not-an-identifier", "class", "__x"])
def test_reserved_or_invalid_tool_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        describe_tools({name: len})


def test_non_callables_are_refused() -> None:
    with pytest.raises(ConfigError, match="not a callable"):
        describe_tools({"x": 3})  # type: ignore[dict-item]


class Point(pydantic.BaseModel):
    x: int
    when: datetime.date


@dataclasses.dataclass
class Pair:
    left: int
    right: list[int]


def test_models_and_dataclasses_become_dicts() -> None:
    assert to_json(Point(x=1, when=datetime.date(2026, 1, 2))) == {"x": 1, "when": "2026-01-02"}
    assert to_json(Pair(1, [2])) == {"left": 1, "right": [2]}
    assert to_json((1, "a")) == [1, "a"]


@pytest.mark.parametrize("value", [float("nan"), [float("inf")], object()])
def test_values_without_json_form_raise_type_error(value: object) -> None:
    with pytest.raises(TypeError):
        to_json(value)

from typing import Literal

import pydantic
import pytest

from rlm_core.errors import ConfigError
from rlm_core.signature import (
    InputField,
    OutputField,
    Signature,
    coerce_value,
    ensure_signature,
)


class Incident(pydantic.BaseModel):
    line: int
    summary: str


class Triage(Signature):
    """Find the incidents that need a human."""

    logs: str = InputField("one log line per event")
    severity: Literal["low", "high"] = OutputField()
    incidents: list[Incident] = OutputField(desc="one entry per incident")


def test_string_signature_with_types() -> None:
    spec = ensure_signature("logs -> error_count: int, critical_errors: list[str]")
    assert spec.input_names == ["logs"]
    assert spec.output_names == ["error_count", "critical_errors"]
    assert [f.type_name for f in spec.outputs] == ["int", "list[str]"]
    assert spec.inputs[0].annotation is str


def test_string_signature_literal_optional_and_dict() -> None:
    spec = ensure_signature("a -> kind: Literal['x', 'y'], n: int | None, m: dict[str, int]")
    assert [f.type_name for f in spec.outputs] == [
        "Literal['x', 'y']",
        "int | None",
        "dict[str, int]",
    ]


def test_string_signature_custom_types() -> None:
    spec = ensure_signature("logs -> items: list[Incident]", types={"Incident": Incident})
    assert spec.outputs[0].type_name == "list[Incident]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a, b", "exactly one '->'"),
        ("a -> b -> c", "exactly one '->'"),
        (" -> b", "no inputs"),
        ("a -> ", "no outputs"),
        ("a -> b: Frobnicator", "unknown type 'Frobnicator'"),
        ("a -> b: __import__('os')", "not a type annotation"),
        ("a, a -> b", "used twice"),
        ("a -> a", "used twice"),
        ("a=1 -> b", "'name' or 'name: type'"),
    ],
)
def test_bad_string_signatures(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ensure_signature(text)


def test_class_signature_fields_descriptions_and_instructions() -> None:
    spec = ensure_signature(Triage)
    assert spec.instructions == "Find the incidents that need a human."
    assert spec.inputs[0].description == "one log line per event"
    assert spec.outputs[1].description == "one entry per incident"
    assert spec.outputs[0].type_name == "Literal['low', 'high']"
    assert ensure_signature(Triage, instructions="Other.").instructions == "Other."


def test_class_signature_field_without_marker_is_rejected() -> None:
    with pytest.raises(ConfigError, match="needs '= InputField"):
        type("Broken", (Signature,), {"__annotations__": {"logs": str}})


def test_validate_outputs_coerces_nested_models_and_literals() -> None:
    spec = ensure_signature(Triage)
    values, problems = spec.validate_outputs(
        {"severity": " 'high' ", "incidents": [{"line": "3", "summary": "disk full"}]}
    )
    assert problems == []
    assert values["severity"] == "high"
    assert values["incidents"] == [Incident(line=3, summary="disk full")]


def test_validate_outputs_reports_missing_and_wrong_values() -> None:
    spec = ensure_signature("a -> n: int, kind: Literal['x', 'y']")
    values, problems = spec.validate_outputs({"kind": "z"})
    assert values == {}
    assert "missing outputs ['n']" in problems[0]
    assert problems[1].startswith("kind: expected Literal['x', 'y'], got str 'z'")


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        ("5", int, 5),
        (" 7 ", int, 7),
        ("2.5", float, 2.5),
        ("true", bool, True),
        ("[1, 2]", list[int], [1, 2]),
        ("['a', 'b']", list[str], ["a", "b"]),
        (42, str, "42"),
        ([1, 2], str, "[1, 2]"),
        ('"x"', Literal["x", "y"], "x"),
        (None, int | None, None),
    ],
)
def test_coercion_like_dspy(value: object, annotation: object, expected: object) -> None:
    assert coerce_value(value, annotation) == expected


def test_coercion_refuses_what_does_not_fit() -> None:
    with pytest.raises(pydantic.ValidationError):
        coerce_value("three", int)
    with pytest.raises(pydantic.ValidationError):
        coerce_value("z", Literal["x", "y"])

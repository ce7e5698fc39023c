"""Signatures: the named, typed inputs and outputs of an RLM, and validation of submitted values.

Write one as a string (``"logs -> error_count: int, critical_errors: list[str]"``) or as a
class with field descriptions and any pydantic-compatible types (nested models, ``Literal``).
Output values the model submits are validated and coerced on the host with pydantic.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import keyword
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Union

import pydantic

from rlm_core.errors import ConfigError
from rlm_core.tools import type_name

__all__ = [
    "Field",
    "InputField",
    "OutputField",
    "Signature",
    "SignatureSpec",
    "ensure_signature",
    "type_name",
]


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldMarker:
    role: Literal["input", "output"]
    description: str


def InputField(description: str = "", *, desc: str = "") -> Any:
    """Mark a class attribute of a :class:`Signature` as an input, with a description."""
    return _FieldMarker("input", description or desc)


def OutputField(description: str = "", *, desc: str = "") -> Any:
    """Mark a class attribute of a :class:`Signature` as an output, with a description."""
    return _FieldMarker("output", description or desc)


class Signature:
    """Base class for signatures written as classes; the docstring is the instructions.

    Example::

        class Triage(Signature):
            \"\"\"Find the incidents that need a human.\"\"\"

            logs: str = InputField("one log line per event")
            severity: Literal["low", "high"] = OutputField()
            incidents: list[Incident] = OutputField("one entry per incident")
    """

    __rlm_spec__: ClassVar[SignatureSpec]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__rlm_spec__ = _spec_from_class(cls)


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One input or output: its name, its type and what it means."""

    name: str
    annotation: Any = str
    description: str = ""

    @property
    def type_name(self) -> str:
        """The annotation as the model reads it, such as ``list[str]``."""
        return type_name(self.annotation)


@dataclasses.dataclass(frozen=True, slots=True)
class SignatureSpec:
    """A parsed signature: ordered inputs and outputs plus instructions."""

    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    instructions: str = ""

    @property
    def input_names(self) -> list[str]:
        """Names of the inputs, in order."""
        return [f.name for f in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs, in order."""
        return [f.name for f in self.outputs]

    def with_instructions(self, instructions: str) -> SignatureSpec:
        """A copy with other instructions."""
        return dataclasses.replace(self, instructions=instructions)

    def validate_outputs(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Coerce submitted values to the output types.

        Returns:
            The validated values, and one problem description per field that failed (or is
            missing). The values are complete only when the problem list is empty.
        """
        validated: dict[str, Any] = {}
        problems: list[str] = []
        missing = [f.name for f in self.outputs if f.name not in values]
        if missing:
            call = ", ".join(self.output_names)
            problems.append(f"missing outputs {missing}; call SUBMIT({call}) with every output")
        for f in self.outputs:
            if f.name not in values:
                continue
            try:
                validated[f.name] = coerce_value(values[f.name], f.annotation)
            except pydantic.ValidationError as exc:
                detail = "; ".join(_short_error(e) for e in exc.errors()[:3])
                got = _preview(values[f.name])
                problems.append(f"{f.name}: expected {f.type_name}, got {got}: {detail}")
        return validated, problems


def ensure_signature(
    signature: str | type[Signature] | SignatureSpec,
    *,
    instructions: str | None = None,
    types: Mapping[str, Any] | None = None,
) -> SignatureSpec:
    """Parse a string or class signature (a :class:`SignatureSpec` passes through).

    Args:
        signature: ``"a, b: int -> c: list[str]"``, a :class:`Signature` subclass, or a spec.
        instructions: Replace the signature's instructions.
        types: Extra names usable in a string signature's annotations, such as your models.

    Raises:
        ConfigError: The signature cannot be parsed, names a type it does not know, has no
            inputs or outputs, or repeats or misuses a name.
    """
    if isinstance(signature, SignatureSpec):
        spec = signature
    elif isinstance(signature, str):
        spec = _parse_string(signature, dict(types or {}))
    elif _is_signature_class(signature):
        if signature is Signature:
            raise ConfigError("subclass Signature and declare fields; the base class has none")
        spec = signature.__rlm_spec__
    else:
        raise ConfigError(
            f"a signature is a string like 'context, query -> answer' or a Signature subclass, "
            f"not a {type(signature).__name__}"
        )
    if instructions is not None:
        spec = spec.with_instructions(instructions)
    _check_names(spec)
    return spec


def _is_signature_class(cls: object) -> bool:
    return isinstance(cls, type) and issubclass(cls, Signature)


# ---- parsing ----------------------------------------------------------------------------

_SAFE_NAMES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "None": None,
    "Any": Any,
    "Literal": Literal,
    "Optional": typing.Optional,
    "Union": Union,
    "List": list,
    "Dict": dict,
}


def _parse_string(text: str, extra: dict[str, Any]) -> SignatureSpec:
    if text.count("->") != 1:
        raise ConfigError(
            f"signature {text!r} needs exactly one '->' between inputs and outputs, "
            "e.g. 'context, query -> answer: int'"
        )
    left, right = text.split("->")
    names = {**_SAFE_NAMES, **extra}
    inputs = _parse_side(left, names, text, "inputs")
    outputs = _parse_side(right, names, text, "outputs")
    return SignatureSpec(inputs=inputs, outputs=outputs, instructions="")


def _parse_side(side: str, names: dict[str, Any], whole: str, what: str) -> tuple[Field, ...]:
    if not side.strip():
        raise ConfigError(f"signature {whole!r} has no {what}")
    try:
        # A parameter list has exactly the grammar we want: names with optional annotations.
        tree = ast.parse(f"def _({side.strip()}): pass")
    except SyntaxError as exc:
        raise ConfigError(f"cannot parse the {what} of signature {whole!r}: {exc.msg}") from None
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    args = fn.args
    if args.vararg or args.kwarg or args.defaults or args.kw_defaults or args.kwonlyargs:
        raise ConfigError(f"signature {whole!r}: write fields as 'name' or 'name: type' only")
    fields = []
    for arg in [*args.posonlyargs, *args.args]:
        annotation: Any = str
        if arg.annotation is not None:
            annotation = _eval_type(arg.annotation, names, whole)
        fields.append(Field(arg.arg, annotation))
    return tuple(fields)


def _eval_type(node: ast.expr, names: dict[str, Any], whole: str) -> Any:
    # Annotations come from user strings: evaluate a tiny, safe subset instead of eval().
    if isinstance(node, ast.Name):
        if node.id not in names:
            known = ", ".join(sorted(k for k in names if k != "None"))
            raise ConfigError(
                f"signature {whole!r} uses the unknown type {node.id!r}; known: {known}. "
                "Pass your own with types={'Name': Name} or use a Signature class."
            )
        return names[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_eval_type(e, names, whole) for e in node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left = _eval_type(node.left, names, whole)
        right = _eval_type(node.right, names, whole)
        return Union[left, right]
    if isinstance(node, ast.Subscript):
        base = _eval_type(node.value, names, whole)
        arg = _eval_type(node.slice, names, whole)
        try:
            return base[arg]
        except TypeError as exc:
            raise ConfigError(f"signature {whole!r}: {ast.unparse(node)} is not a type") from exc
    raise ConfigError(f"signature {whole!r}: {ast.unparse(node)!r} is not a type annotation")


def _spec_from_class(cls: type) -> SignatureSpec:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise ConfigError(f"cannot resolve the annotations of {cls.__name__}: {exc}") from exc
    inputs: list[Field] = []
    outputs: list[Field] = []
    for name, annotation in hints.items():
        if name.startswith("_"):
            continue
        marker = cls.__dict__.get(name)
        if not isinstance(marker, _FieldMarker):
            raise ConfigError(
                f"{cls.__name__}.{name} needs '= InputField(...)' or '= OutputField(...)'"
            )
        target = inputs if marker.role == "input" else outputs
        target.append(Field(name, annotation, marker.description))
    doc = cls.__doc__ or ""
    return SignatureSpec(tuple(inputs), tuple(outputs), _dedent(doc))


def _dedent(doc: str) -> str:
    return inspect.cleandoc(doc) if doc else ""


def _check_names(spec: SignatureSpec) -> None:
    if not spec.inputs:
        raise ConfigError("a signature needs at least one input")
    if not spec.outputs:
        raise ConfigError("a signature needs at least one output")
    seen: set[str] = set()
    for f in (*spec.inputs, *spec.outputs):
        if not f.name.isidentifier() or keyword.iskeyword(f.name):
            raise ConfigError(f"field name {f.name!r} is not a valid Python identifier")
        if f.name in seen:
            raise ConfigError(f"field name {f.name!r} is used twice in the signature")
        seen.add(f.name)


# ---- values -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _cached_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(annotation)


def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    try:
        return _cached_adapter(annotation)
    except TypeError:  # an unhashable annotation: build it each time
        return pydantic.TypeAdapter(annotation)


def coerce_value(value: Any, annotation: Any) -> Any:
    """Validate ``value`` against ``annotation`` the forgiving way models need.

    A ``str`` output takes any value (non-strings become their JSON text); a string that holds
    JSON or a Python literal is parsed before validating other types (``"5"`` for an ``int``,
    ``"[1, 2]"`` for a ``list[int]``); a ``Literal`` ignores surrounding quotes and spaces.

    Raises:
        pydantic.ValidationError: The value does not fit.
    """
    if annotation is str:
        if isinstance(value, str):
            return value
        return json.dumps(value) if isinstance(value, list | dict) else str(value)
    if typing.get_origin(annotation) is Literal and isinstance(value, str):
        allowed = typing.get_args(annotation)
        cleaned = value.strip().strip("'\"")
        if value not in allowed and cleaned in allowed:
            value = cleaned
    adapter = _adapter(annotation)
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError:
        if not isinstance(value, str):
            raise
        parsed = _parse_literal(value)
        if parsed is _NOTHING:
            raise
        return adapter.validate_python(parsed)


_NOTHING = object()


def _parse_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _NOTHING


def _short_error(error: Any) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()))
    return f"{loc + ': ' if loc else ''}{error.get('msg', '')}"


def _preview(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"

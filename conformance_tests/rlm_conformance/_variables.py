"""Variables: inputs bound once per session, any JSON value, strings and bytes of many MB.

If this group fails, look at ``set_variables``: host-side validation must reject bad names
(``ConfigError``) and non-JSON values (``TypeError``) before sending anything; strings and
bytes must travel raw (never as source literals or escaped JSON), and the guest must bind
exactly the value the host passed.
"""

from __future__ import annotations

import hashlib

import pytest

from rlm_conformance._base import ConformanceBase
from rlm_conformance._requires import requires
from rlm_core.errors import ConfigError
from rlm_core.interpreter import JSON, Interpreter


def _big_text(size: int) -> str:
    # Mixed ASCII, multi-byte characters and newlines, so an encoding slip changes the hash.
    unit = "line of text, ünïcödé 漢字 🚀\n"
    return (unit * (size // len(unit.encode()) + 1))[: size // 2] + "END"


class VariableTests(ConformanceBase):
    """JSON values, unicode, bytes, big strings, rejected values and names."""

    async def test_json_scalars_round_trip(self, interpreter: Interpreter) -> None:
        """None, booleans, ints (including big ones), floats and strings bind with their types."""
        values = {
            "v_none": None,
            "v_true": True,
            "v_false": False,
            "v_int": -42,
            "v_big": 2**70,
            "v_float": 3.25,
            "v_str": "plain",
        }
        await interpreter.set_variables(values)
        got = await self.value(
            interpreter,
            "[(type(v).__name__, v) "
            "for v in (v_none, v_true, v_false, v_int, v_big, v_float, v_str)]",
        )
        expected = [(type(v).__name__, v) for v in values.values()]
        assert got == repr(expected)

    async def test_json_containers_round_trip(self, interpreter: Interpreter) -> None:
        """Nested lists and dicts bind as lists and dicts with equal contents."""
        value: dict[str, JSON] = {
            "rows": [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}],
            "meta": {},
        }
        await interpreter.set_variables({"data": value})
        assert await self.value(interpreter, "data") == repr(value)
        assert await self.value(interpreter, "type(data['rows']).__name__") == "'list'"

    async def test_tuple_binds_as_list(self, interpreter: Interpreter) -> None:
        """A tuple crosses as a JSON array, so the guest sees a list."""
        pair: object = (1, "two")  # not a JSON type statically, but encodable as an array
        await interpreter.set_variables({"pair": pair})  # type: ignore[dict-item]
        assert await self.value(interpreter, "pair") == "[1, 'two']"

    async def test_unicode_string_round_trip(self, interpreter: Interpreter) -> None:
        """A string with any Unicode (astral, combining, NUL, lone newline) binds unchanged."""
        text = "naïve 漢字 🚀 e\u0301 \x00 tab\t nl\n \u2028 end"
        await interpreter.set_variables({"text": text})
        assert await self.value(interpreter, "text") == repr(text)
        assert await self.value(interpreter, "len(text)") == str(len(text))

    async def test_empty_string_and_containers(self, interpreter: Interpreter) -> None:
        """Empty strings, lists and dicts bind as themselves."""
        await interpreter.set_variables({"e_str": "", "e_list": [], "e_dict": {}})
        assert await self.value(interpreter, "(e_str, e_list, e_dict)") == "('', [], {})"

    async def test_bytes_round_trip(self, interpreter: Interpreter) -> None:
        """``bytes`` bind as bytes, every byte value intact."""
        blob = bytes(range(256)) * 4
        await interpreter.set_variables({"blob": blob})
        assert await self.value(interpreter, "type(blob).__name__") == "'bytes'"
        digest = await self.value(interpreter, "__import__('hashlib').sha256(blob).hexdigest()")
        assert digest == repr(hashlib.sha256(blob).hexdigest())

    async def test_large_string(self, interpreter: Interpreter) -> None:
        """A 10 MB string (by default) binds exactly: same length and hash in the guest."""
        text = _big_text(self.large_variable_bytes)
        await interpreter.set_variables({"context": text})
        await self._assert_same_text(interpreter, "context", text)

    @requires(max_variable_bytes=100_000_000)
    async def test_huge_string(self, interpreter: Interpreter) -> None:
        """A 100 MB string binds exactly, where ``max_variable_bytes`` allows it."""
        text = "x" * (self.huge_variable_bytes - 8) + "ü漢🚀"
        await interpreter.set_variables({"context": text})
        await self._assert_same_text(interpreter, "context", text)

    async def _assert_same_text(self, interp: Interpreter, name: str, text: str) -> None:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        got = await self.value(
            interp, f"(len({name}), __import__('hashlib').sha256({name}.encode()).hexdigest())"
        )
        assert got == repr((len(text), digest))

    async def test_variables_persist_and_rebind(self, interpreter: Interpreter) -> None:
        """Bound variables stay across cells; binding a name again replaces its value."""
        await interpreter.set_variables({"query": "first"})
        await self.ok(interpreter, "seen = query")
        await interpreter.set_variables({"query": "second"})
        assert await self.value(interpreter, "(seen, query)") == "('first', 'second')"

    async def test_variables_are_copies(self, interpreter: Interpreter) -> None:
        """The guest gets a copy: host and guest mutations do not affect each other."""
        rows: list[JSON] = [1, 2]
        await interpreter.set_variables({"rows": rows})
        rows.append(3)
        await self.ok(interpreter, "rows.append(99)")
        assert await self.value(interpreter, "rows") == "[1, 2, 99]"
        assert rows == [1, 2, 3]

    @pytest.mark.parametrize(
        "bad",
        [{1, 2}, object(), float("nan"), float("inf"), {1: "int key"}, [b"bytes inside json"]],
        ids=["set", "object", "nan", "inf", "int-key", "nested-bytes"],
    )
    async def test_non_json_value_rejected_on_host(
        self, interpreter: Interpreter, bad: object
    ) -> None:
        """A non-JSON value raises TypeError on the host, and no variable of the call is bound."""
        with pytest.raises(TypeError):
            await interpreter.set_variables({"good": 1, "bad": bad})  # type: ignore[dict-item]
        result = await self.run(interpreter, "good")
        assert result.error is not None
        assert result.error.type == "NameError"

    @pytest.mark.parametrize("name", ["SUBMIT", "print", "__secret", "not-a-name", "class", ""])
    async def test_reserved_or_invalid_name_rejected(
        self, interpreter: Interpreter, name: str
    ) -> None:
        """A reserved or invalid variable name raises ConfigError and binds nothing."""
        with pytest.raises(ConfigError):
            await interpreter.set_variables({"fine": 1, name: 2})
        result = await self.run(interpreter, "fine")
        assert result.error is not None
        assert result.error.type == "NameError"

    async def test_variable_cannot_shadow_a_tool(self, interpreter: Interpreter) -> None:
        """A variable may not take the name of a registered tool (ConfigError)."""
        await interpreter.register({"lookup": len})
        with pytest.raises(ConfigError):
            await interpreter.set_variables({"lookup": "x"})
        assert await self.value(interpreter, "lookup.__name__") == "'lookup'"

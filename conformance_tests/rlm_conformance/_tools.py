"""Tool callbacks: host functions that guest code calls as if they were local.

If this group fails, look at the guest stub built from the tool's signature (arguments must bind
exactly as on the host), at the call/reply round trip (the guest blocks until the host answers,
and the host keeps serving calls until the cell's result), and at error mapping: a host
exception becomes a guest exception with the same type name and message.
"""

from __future__ import annotations

import anyio
import pytest

from rlm_conformance._base import ConformanceBase
from rlm_conformance._host import (
    Point,
    Reading,
    ToolFailedError,
    TrackingTools,
    async_double,
    echo,
    host_only_default,
)
from rlm_conformance.eventloop import loop_gaps
from rlm_core.errors import ConfigError
from rlm_core.interpreter import Interpreter


class ToolTests(ConformanceBase):
    """Arguments, sync/async, exceptions, nesting, volume, return types."""

    async def test_positional_arguments(self, interpreter: Interpreter) -> None:
        """Positional arguments reach the host function in order."""
        tools = TrackingTools()
        await interpreter.register({"lookup": tools.lookup})
        assert await self.value(interpreter, "lookup('k', 9)") == "{'key': 'k', 'limit': 9}"
        assert tools.calls == [("lookup", ("k",), {"limit": 9})]

    async def test_keyword_arguments(self, interpreter: Interpreter) -> None:
        """Keyword arguments reach the host function by name."""
        tools = TrackingTools()
        await interpreter.register({"lookup": tools.lookup})
        assert (
            await self.value(interpreter, "lookup(limit=1, key='z')") == "{'key': 'z', 'limit': 1}"
        )

    async def test_defaults_apply(self, interpreter: Interpreter) -> None:
        """An omitted argument takes the host function's default."""
        tools = TrackingTools()
        await interpreter.register({"lookup": tools.lookup})
        assert await self.value(interpreter, "lookup('k')") == "{'key': 'k', 'limit': 5}"

    async def test_non_json_default_stays_on_host(self, interpreter: Interpreter) -> None:
        """A default that is not JSON is applied by the host when the guest omits it."""
        await interpreter.register({"probe": host_only_default})
        assert await self.value(interpreter, "probe()") == "'host default'"
        assert await self.value(interpreter, "probe(7)") == "'got 7'"

    async def test_positional_only_and_keyword_only(self, interpreter: Interpreter) -> None:
        """Positional-only and keyword-only parameters bind as in the host signature."""
        tools = TrackingTools()
        await interpreter.register({"scale": tools.scale})
        assert await self.value(interpreter, "scale(2.0, factor=4.0)") == "8.0"
        result = await self.run(interpreter, "scale(value=2.0)")
        assert result.error is not None
        assert result.error.type == "TypeError"
        result = await self.run(interpreter, "scale(2.0, 4.0)")
        assert result.error is not None
        assert result.error.type == "TypeError"
        assert len(tools.calls) == 1

    async def test_var_args_and_var_kwargs(self, interpreter: Interpreter) -> None:
        """``*args`` and ``**kwargs`` pass through unchanged."""
        await interpreter.register({"echo": echo})
        got = await self.value(interpreter, "echo(1, 'two', [3], key='v', other=None)")
        assert got == repr({"args": [1, "two", [3]], "kwargs": {"key": "v", "other": None}})

    async def test_named_parameter_before_var_args(self, interpreter: Interpreter) -> None:
        """A named parameter followed by ``*args`` takes extra positionals, as in Python."""

        def join(sep: str, *parts: str) -> str:
            return sep.join(parts)

        await interpreter.register({"join": join})
        assert await self.value(interpreter, "join('-', 'a', 'b', 'c')") == "'a-b-c'"
        assert await self.value(interpreter, "join(sep='+')") == "''"

    async def test_wrong_arguments_are_a_guest_type_error(self, interpreter: Interpreter) -> None:
        """Arguments the signature rejects raise TypeError in the guest; the host is not called."""
        tools = TrackingTools()
        await interpreter.register({"lookup": tools.lookup})
        result = await self.run(interpreter, "lookup()")
        assert result.error is not None
        assert result.error.type == "TypeError"
        result = await self.run(interpreter, "lookup('a', 1, 2)")
        assert result.error is not None
        assert result.error.type == "TypeError"
        result = await self.run(interpreter, "lookup('a', nope=1)")
        assert result.error is not None
        assert result.error.type == "TypeError"
        assert tools.calls == []

    async def test_guest_sees_the_real_signature(self, interpreter: Interpreter) -> None:
        """``inspect.signature`` of the guest function shows the host's parameters and defaults."""
        tools = TrackingTools()
        await interpreter.register({"lookup": tools.lookup})
        got = await self.value(interpreter, "str(__import__('inspect').signature(lookup))")
        assert got is not None
        assert "key" in got
        assert "limit=5" in got

    async def test_sync_and_async_host_functions(self, interpreter: Interpreter) -> None:
        """Both plain functions and coroutine functions work as tools."""
        await interpreter.register({"double": async_double, "size": len})
        assert await self.value(interpreter, "(double(21), size('abc'))") == "(42, 3)"

    async def test_host_exception_is_catchable_with_type_and_message(
        self, interpreter: Interpreter
    ) -> None:
        """A host exception surfaces in the guest, catchable, with its type name and message."""

        def fail(reason: str) -> None:
            raise ToolFailedError(f"failed because {reason}")

        await interpreter.register({"fail": fail})
        code = (
            "try:\n    fail('disk full')\nexcept Exception as e:\n"
            "    caught = (type(e).__name__, str(e))\ncaught"
        )
        assert await self.value(interpreter, code) == repr(
            ("ToolFailedError", "failed because disk full")
        )

    async def test_builtin_exception_types_are_kept(self, interpreter: Interpreter) -> None:
        """A host ValueError (or KeyError, ...) is that builtin type in the guest."""

        def picky(kind: str) -> None:
            raise {"value": ValueError("bad value"), "key": KeyError("missing")}[kind]

        await interpreter.register({"picky": picky})
        code = (
            "out = []\n"
            "try:\n    picky('value')\nexcept ValueError as e:\n    out.append(str(e))\n"
            "try:\n    picky('key')\nexcept KeyError:\n    out.append('key')\nout"
        )
        assert await self.value(interpreter, code) == repr(["bad value", "key"])

    async def test_uncaught_host_exception_is_a_code_error(self, interpreter: Interpreter) -> None:
        """An uncaught tool exception ends the cell as a code error naming the type."""

        def fail() -> None:
            raise ToolFailedError("nope")

        await interpreter.register({"fail": fail})
        result = await self.run(interpreter, "print('before')\nfail()\nprint('after')")
        assert result.error is not None
        assert result.error.type == "ToolFailedError"
        assert "nope" in result.error.message
        assert result.stdout == "before\n"
        assert await self.value(interpreter, "1") == "1"

    async def test_nested_guest_calls(self, interpreter: Interpreter) -> None:
        """Tool results feed other tool calls, from guest functions and recursion."""
        await interpreter.register({"double": async_double})
        code = (
            "def chain(n, depth):\n"
            "    return n if depth == 0 else chain(double(n), depth - 1)\n"
            "chain(double(double(1)), 5)"
        )
        assert await self.value(interpreter, code) == str(4 * 2**5)

    async def test_host_tool_awaiting_other_coroutines(self, interpreter: Interpreter) -> None:
        """An async tool may await other coroutines (as ``llm_query`` does) before answering."""

        async def fan_out(items: list[int]) -> list[int]:
            results: dict[int, int] = {}

            async def one(i: int, item: int) -> None:
                await anyio.sleep(0.01)
                results[i] = await async_double(item)

            async with anyio.create_task_group() as tg:
                for i, item in enumerate(items):
                    tg.start_soon(one, i, item)
            return [results[i] for i in range(len(items))]

        await interpreter.register({"fan_out": fan_out})
        assert await self.value(interpreter, "fan_out([1, 2, 3])") == "[2, 4, 6]"

    async def test_many_calls_in_a_loop(self, interpreter: Interpreter) -> None:
        """A thousand tool calls from one cell all arrive, in order."""
        seen: list[int] = []

        def record(i: int) -> int:
            seen.append(i)
            return i + 1

        await interpreter.register({"record": record})
        n = self.tool_loop_calls
        assert await self.value(interpreter, f"sum(record(i) for i in range({n}))") == str(
            n * (n + 1) // 2
        )
        assert seen == list(range(n))

    @pytest.mark.parametrize(
        ("returned", "expected"),
        [
            (None, "None"),
            (True, "True"),
            (7, "7"),
            (2.5, "2.5"),
            ("text ü🚀", "'text ü🚀'"),
            ([1, [2, {"a": None}]], "[1, [2, {'a': None}]]"),
            ((1, 2), "[1, 2]"),
            ({"k": [True, 1.5]}, "{'k': [True, 1.5]}"),
        ],
        ids=["none", "bool", "int", "float", "str", "nested", "tuple", "dict"],
    )
    async def test_json_return_values(
        self, interpreter: Interpreter, returned: object, expected: str
    ) -> None:
        """JSON return values reach the guest unchanged (tuples as lists)."""
        await interpreter.register({"give": lambda: returned})
        assert await self.value(interpreter, "[give()]") == f"[{expected}]"

    async def test_pydantic_and_dataclass_returns_become_dicts(
        self, interpreter: Interpreter
    ) -> None:
        """Pydantic models and dataclasses returned by tools arrive as plain dicts."""
        reading = Reading(sensor="t1", values=[1.5, 2.0])
        await interpreter.register({"reading": lambda: reading, "point": lambda: Point(1, 2)})
        assert await self.value(interpreter, "reading()") == repr(reading.model_dump())
        assert await self.value(interpreter, "point()") == "{'x': 1, 'y': 2}"

    async def test_non_json_return_is_a_guest_type_error(self, interpreter: Interpreter) -> None:
        """A tool returning a non-JSON value raises a catchable TypeError in the guest."""
        await interpreter.register({"opaque": lambda: object()})
        code = "try:\n    opaque()\nexcept TypeError as e:\n    msg = 'TypeError'\nmsg"
        assert await self.value(interpreter, code) == "'TypeError'"

    async def test_non_json_argument_is_a_guest_type_error(self, interpreter: Interpreter) -> None:
        """Passing a non-JSON argument raises TypeError in the guest; the host is not called."""
        tools = TrackingTools()
        await interpreter.register({"lookup": tools.lookup})
        result = await self.run(interpreter, "lookup({1, 2})")
        assert result.error is not None
        assert result.error.type == "TypeError"
        assert tools.calls == []

    async def test_unknown_tool_is_a_name_error(self, interpreter: Interpreter) -> None:
        """Calling a tool that was never registered is a NameError in the guest."""
        await interpreter.register({"size": len})
        result = await self.run(interpreter, "not_a_tool(1)")
        assert result.error is not None
        assert result.error.type == "NameError"

    async def test_register_again_replaces_tools(self, interpreter: Interpreter) -> None:
        """A second register() replaces the tool set: dropped tools are gone."""
        await interpreter.register({"first": lambda: 1})
        await interpreter.register({"second": lambda: 2})
        assert await self.value(interpreter, "second()") == "2"
        result = await self.run(interpreter, "first()")
        assert result.error is not None
        assert result.error.type == "NameError"

    @pytest.mark.parametrize("name", ["SUBMIT", "print", "__dunder", "bad name"])
    async def test_reserved_tool_names_rejected(self, interpreter: Interpreter, name: str) -> None:
        """A reserved or invalid tool name raises ConfigError; SUBMIT and print keep working."""
        with pytest.raises(ConfigError):
            await interpreter.register({name: len})
        result = await self.run(interpreter, "print('p')")
        assert result.stdout == "p\n"

    async def test_sync_tool_does_not_block_the_event_loop(self, interpreter: Interpreter) -> None:
        """A slow sync tool runs off the event loop: other tasks progress while it works."""
        import time

        def slow() -> None:
            time.sleep(0.3)  # blocking on purpose: the backend must run it on a worker thread

        await interpreter.register({"slow": slow})
        async with loop_gaps() as gaps:
            await self.ok(interpreter, "slow()")
        assert len(gaps) >= 5

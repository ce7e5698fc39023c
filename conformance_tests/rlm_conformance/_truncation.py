"""Output truncation: the guest caps what it returns, in one exact, shared format.

If this group fails, look at where output is captured: it must be capped *in the guest* with
``rlm_core.interpreter.truncate_output``'s head-and-tail format and marker (never re-implemented),
report the true length, and keep memory bounded however much is printed, so a huge print never
crosses the channel.
"""

from __future__ import annotations

from rlm_conformance._base import ConformanceBase
from rlm_conformance._requires import requires
from rlm_core.interpreter import Interpreter, truncate_output


class TruncationTests(ConformanceBase):
    """Exact marker, true lengths, stderr and values too, huge prints."""

    async def test_exact_marker_and_head_and_tail(self, interpreter: Interpreter) -> None:
        """Over-long stdout is exactly ``truncate_output(full, max_output_chars)``."""
        code = "print(''.join(chr(65 + i % 26) for i in range(5000)))"
        full = "".join(chr(65 + i % 26) for i in range(5000)) + "\n"
        result = await self.ok(interpreter, code, max_output_chars=101)
        assert result.stdout == truncate_output(full, 101)
        assert result.stdout.startswith(full[:50])
        assert result.stdout.endswith(full[-51:])
        assert f"{len(full) - 101:,} characters omitted" in result.stdout

    async def test_true_length_is_reported(self, interpreter: Interpreter) -> None:
        """``stdout_chars`` is the length before truncation and ``truncated`` is set."""
        result = await self.ok(interpreter, "print('x' * 12345)", max_output_chars=100)
        assert result.stdout_chars == 12346
        assert result.truncated

    async def test_output_within_limit_is_untouched(self, interpreter: Interpreter) -> None:
        """Output of exactly ``max_output_chars`` characters is returned whole."""
        result = await self.ok(interpreter, "print('y' * 99)", max_output_chars=100)
        assert result.stdout == "y" * 99 + "\n"
        assert not result.truncated

    async def test_many_small_writes(self, interpreter: Interpreter) -> None:
        """Many small prints are truncated as one text: first lines first, last lines last."""
        code = "for i in range(20000):\n    print(i)"
        full = "".join(f"{i}\n" for i in range(20000))
        result = await self.ok(interpreter, code, max_output_chars=200)
        assert result.stdout == truncate_output(full, 200)
        assert result.stdout_chars == len(full)

    async def test_stderr_is_truncated_too(self, interpreter: Interpreter) -> None:
        """Stderr is capped the same way, with its own true length."""
        code = "import sys\nsys.stderr.write('e' * 3000)\nprint('short')"
        result = await self.ok(interpreter, code, max_output_chars=100)
        assert result.stderr == truncate_output("e" * 3000, 100)
        assert result.stderr_chars == 3000
        assert result.stdout == "short\n"
        assert result.truncated

    async def test_value_is_truncated_too(self, interpreter: Interpreter) -> None:
        """A long final-expression repr is capped with the same format."""
        result = await self.ok(interpreter, "'v' * 5000", max_output_chars=100)
        assert result.value == truncate_output(repr("v" * 5000), 100)
        assert result.truncated

    async def test_unicode_is_counted_in_characters(self, interpreter: Interpreter) -> None:
        """Limits and lengths count characters, not bytes, and never split a character."""
        result = await self.ok(interpreter, "print('漢🚀' * 1000)", max_output_chars=10)
        full = "漢🚀" * 1000 + "\n"
        assert result.stdout == truncate_output(full, 10)
        assert result.stdout_chars == len(full)

    async def test_huge_print_does_not_cross_the_channel(self, interpreter: Interpreter) -> None:
        """A 200 MB print returns promptly with only head, marker and tail, and the true length."""
        n = self.huge_output_chars
        result = await self.ok(interpreter, f"print('z' * {n})", max_output_chars=1000)
        assert result.stdout == truncate_output("z" * n + "\n", 1000)
        assert result.stdout_chars == n + 1
        assert await self.value(interpreter, "'after'") == "'after'"

    @requires(isolation_at_least="process")
    async def test_file_descriptor_writes_are_captured(self, interpreter: Interpreter) -> None:
        """Writes straight to file descriptors 1 and 2 land in stdout and stderr."""
        code = "import os\nos.write(1, b'fd one\\n')\nos.write(2, b'fd two\\n')"
        result = await self.ok(interpreter, code)
        assert result.stdout == "fd one\n"
        assert result.stderr == "fd two\n"

    @requires(isolation_at_least="process")
    async def test_huge_fd_write_is_truncated(self, interpreter: Interpreter) -> None:
        """A large write to file descriptor 1 is truncated like print output."""
        code = "import os\nfor _ in range(100):\n    os.write(1, b'w' * 100000)"
        result = await self.ok(interpreter, code, max_output_chars=100)
        assert result.stdout == truncate_output("w" * 10_000_000, 100)
        assert result.stdout_chars == 10_000_000

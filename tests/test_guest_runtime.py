"""The guest runtime's own safeguards, exercised on a Session without any transport.

Bytes written to the std streams reach the capture; values that cannot cross a frame (too
deep, too large) and exceptions with huge messages come back as bounded code errors.
"""

from __future__ import annotations

from rlm_core.bridge.guest import ERROR_TEXT_CHARS, MAX_NESTING, Session


def test_bytes_reach_the_capture_as_text() -> None:
    result = Session().execute(
        "import sys\n"
        "sys.stdout.buffer.write('é'.encode()[:1])\n"
        "sys.stdout.buffer.write('é'.encode()[1:] + b'\\n')\n"
        "sys.stderr.buffer.write(bytearray(b'err'))",
        1000,
    )
    assert result["error"] is None
    assert (result["stdout"], result["stderr"]) == ("é\n", "err")


def test_text_written_to_the_buffer_is_refused_like_real_stdio() -> None:
    result = Session().execute("import sys\nsys.stdout.buffer.write('text')", 1000)
    assert result["error"]["type"] == "TypeError"


def test_huge_exception_message_is_cut_to_a_bounded_error() -> None:
    result = Session().execute("raise ValueError('x' * 5_000_000)", 1000)
    error = result["error"]
    assert error["type"] == "ValueError"
    assert "characters omitted" in error["message"]
    assert len(error["message"]) < ERROR_TEXT_CHARS + 100
    assert len(error["traceback"]) < ERROR_TEXT_CHARS + 100
    assert "<cell-1>" in error["traceback"]


def test_values_nested_deeper_than_json_allows_are_refused() -> None:
    session = Session()
    code = f"v = []\nfor _ in range({MAX_NESTING + 1}):\n    v = [v]\nSUBMIT(v)"
    result = session.execute(code, 1000)
    assert result["submitted"] is None
    assert result["error"]["type"] == "TypeError"
    assert "nested more than" in result["error"]["message"]
    shallow = session.execute(
        f"v = []\nfor _ in range({MAX_NESTING - 2}):\n    v = [v]\nSUBMIT(v)", 1000
    )
    assert shallow["error"] is None


def test_submit_over_the_frame_limit_is_refused_before_it_is_copied() -> None:
    session = Session(max_frame_bytes=1000)
    result = session.execute("SUBMIT('y' * 2000)", 1000)
    assert result["submitted"] is None
    assert result["error"]["type"] == "ValueError"
    assert "too large" in result["error"]["message"]
    many = session.execute("SUBMIT([1] * 600)", 1000)  # small strings, large JSON
    assert "too large" in many["error"]["message"]
    assert session.execute("SUBMIT('y' * 10)", 1000)["submitted"] == {"output": "y" * 10}

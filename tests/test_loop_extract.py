import pytest

from rlm_core.extract import extract_code


@pytest.mark.parametrize("tag", ["python", "py", "python3", "repl", "", "Python"])
def test_python_fences_of_every_flavour(tag: str) -> None:
    got = extract_code(f"I will count.\n```{tag}\nprint(len(context))\n```")
    assert got.code == "print(len(context))"
    assert got.reasoning == "I will count."


def test_text_before_and_after_the_fence_is_reasoning_not_code() -> None:
    got = extract_code("Plan: look.\n```python\nx = 1\nprint(x)\n```\nThis prints 1.")
    assert got.code == "x = 1\nprint(x)"
    assert got.reasoning == "Plan: look.\nThis prints 1."


def test_several_python_blocks_run_in_order() -> None:
    got = extract_code("```python\na = 1\n```\nthen\n```py\nprint(a)\n```")
    assert got.code == "a = 1\n\nprint(a)"


def test_unclosed_fence_takes_the_rest() -> None:
    assert extract_code("ok\n```python\nprint(1)\nprint(2)").code == "print(1)\nprint(2)"


def test_doubled_outer_fences() -> None:
    assert extract_code("```\n```python\nprint(1)\n```\n```").code == "print(1)"


def test_unfenced_code_is_run() -> None:
    assert extract_code("x = context[:100]\nprint(x)").code == "x = context[:100]\nprint(x)"


@pytest.mark.parametrize("reply", ["", None, "I think the answer is 42.", "Done", "   "])
def test_no_code_is_reported_not_raised(reply: str | None) -> None:
    got = extract_code(reply)
    assert got.code is None
    assert got.wrong_language is None


@pytest.mark.parametrize("tag", ["bash", "json", "sh"])
def test_non_python_fence_is_named(tag: str) -> None:
    got = extract_code(f"Run this:\n```{tag}\nls -la\n```")
    assert got.code is None
    assert got.wrong_language == tag


def test_python_block_wins_over_an_output_block() -> None:
    got = extract_code("```python\nprint(1)\n```\nExpected:\n```text\n1\n```")
    assert got.code == "print(1)"


def test_repl_prompts_are_stripped() -> None:
    assert extract_code("```pycon\n>>> x = 1\n>>> print(x)\n```").code == "x = 1\nprint(x)"


def test_windows_newlines() -> None:
    assert extract_code("```python\r\nprint(1)\r\n```").code == "print(1)"

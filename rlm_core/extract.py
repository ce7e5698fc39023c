"""Find the Python code in a model's reply, whatever the model wrapped it in.

Accepts ```` ```python ````, ```` ```py ````, ```` ```repl ```` and bare fences, text before
and after them, doubled outer fences, an unclosed last fence, and unfenced code. A reply with
no code at all, or with code in another language, is reported so the loop can tell the model.
"""

from __future__ import annotations

import ast
import dataclasses

__all__ = ["PYTHON_FENCE_TAGS", "ExtractedCode", "extract_code"]

PYTHON_FENCE_TAGS = frozenset({"", "python", "py", "python3", "py3", "repl", "pycon", "ipython"})
"""Fence tags read as Python."""


@dataclasses.dataclass(frozen=True, slots=True)
class ExtractedCode:
    """What a reply holds: exactly one of ``code`` or ``problem`` is set (both None: no code)."""

    reasoning: str
    """The reply's text outside the code."""
    code: str | None = None
    """The Python to run (several Python blocks are joined in order)."""
    wrong_language: str | None = None
    """The tag of a non-Python fence, when that was all the reply had."""


@dataclasses.dataclass(slots=True)
class _Block:
    tag: str
    lines: list[str]
    closed: bool = False


def extract_code(reply: str | None) -> ExtractedCode:
    """Split a reply into reasoning and code."""
    text = (reply or "").replace("\r\n", "\n")
    blocks, prose = _fenced_blocks(text)
    python = [b for b in blocks if b.tag in PYTHON_FENCE_TAGS and "".join(b.lines).strip()]
    reasoning = "\n".join(prose).strip()
    if python:
        code = "\n\n".join(_strip_prompts(b) for b in python).strip("\n")
        return ExtractedCode(reasoning=reasoning, code=code)
    other = [b for b in blocks if b.tag not in PYTHON_FENCE_TAGS]
    if other:
        return ExtractedCode(reasoning=reasoning, wrong_language=other[0].tag)
    if not blocks and _looks_like_code(text):
        return ExtractedCode(reasoning="", code=text.strip("\n"))
    return ExtractedCode(reasoning=text.strip())


def _fenced_blocks(text: str) -> tuple[list[_Block], list[str]]:
    blocks: list[_Block] = []
    prose: list[str] = []
    current: _Block | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if current is None:
            if stripped.startswith("```"):
                current = _Block(_tag(stripped), [])
            else:
                prose.append(line)
            continue
        if stripped == "```":
            current.closed = True
            blocks.append(current)
            current = None
        elif stripped.startswith("```") and not "".join(current.lines).strip():
            # A fence opening right after another (``` then ```python): the outer one was
            # decoration; the inner tag wins.
            current.tag = _tag(stripped)
        else:
            current.lines.append(line)
    if current is not None:  # an unclosed fence runs to the end of the reply
        blocks.append(current)
    return blocks, prose


def _tag(fence_line: str) -> str:
    tag = fence_line.lstrip("`").strip().lower()
    return tag.split()[0] if tag else ""


def _strip_prompts(block: _Block) -> str:
    # ```pycon / ```repl blocks sometimes carry ">>> " prompts; strip them when every code line
    # has one, so the block runs.
    lines = block.lines
    code_lines = [ln for ln in lines if ln.strip()]
    if code_lines and all(ln.startswith((">>> ", "... ", ">>>", "...")) for ln in code_lines):
        return "\n".join(ln[4:] if ln[3:4] == " " else ln[3:] for ln in lines)
    return "\n".join(lines)


def _looks_like_code(text: str) -> bool:
    """True for unfenced text that parses as Python and does something (not a lone word)."""
    if not text.strip():
        return False
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(
            node,
            ast.Call | ast.Assign | ast.AugAssign | ast.Import | ast.ImportFrom | ast.For,
        ):
            return True
    return False

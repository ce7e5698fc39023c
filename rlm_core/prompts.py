"""Every piece of text the model reads: the system prompt, input metadata, step outputs, nudges.

Kept in one module so the wording can be reviewed, tuned or translated in one place. Functions
here only format; they make no decisions about the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_core.interpreter import (
    Capabilities,
    ExecutionResult,
    truncate_output,
    truncation_marker,
)
from rlm_core.signature import Field, SignatureSpec
from rlm_core.tools import ToolSpec

__all__ = [
    "FAILED_PROMPT_PREFIX",
    "NO_OUTPUT",
    "PREVIEW_CHARS",
    "budget_note",
    "child_instructions",
    "describe_input",
    "extract_request",
    "extract_retry",
    "first_message",
    "format_execution",
    "invalid_outputs",
    "missing_code",
    "session_replaced",
    "submitted",
    "system_prompt",
    "wrong_language",
]

FAILED_PROMPT_PREFIX = "[ERROR]"
"""How an answer of ``llm_query_batched`` starts when its prompt failed."""

PREVIEW_CHARS = 1_000
"""Characters of each input shown to the model (head and tail)."""

NO_OUTPUT = (
    "(no output: nothing was printed and the last expression was None; print() to see values)"
)


def describe_input(field: Field, value: Any) -> str:
    """The metadata block for one input: type, size, a head-and-tail preview, description."""
    if isinstance(value, str):
        text, unit = value, "characters"
    elif isinstance(value, bytes | bytearray):
        text, unit = value[: PREVIEW_CHARS * 2].decode("utf-8", "replace"), "bytes"
    else:
        text, unit = json.dumps(value, indent=2, ensure_ascii=False, default=repr), "characters"
    length = len(value) if isinstance(value, str | bytes | bytearray) else len(text)
    kind = type(value).__name__
    if isinstance(value, list | dict):
        kind += f" with {len(value):,} items"
        unit += " as JSON"
    lines = [f"Variable `{field.name}` (already defined in the REPL; do not re-type it)"]
    lines.append(f"Type: {kind} (declared: {field.type_name})")
    if field.description:
        lines.append(f"Description: {field.description}")
    lines.append(f"Length: {length:,} {unit}")
    preview = truncate_output(text, PREVIEW_CHARS)
    lines.append("Preview:\n```\n" + preview + "\n```")
    return "\n".join(lines)


def _capabilities_text(caps: Capabilities, cell_timeout_s: float | None) -> list[str]:
    lines = [
        f"- Python {caps.python_version or '3'}; isolation: {caps.isolation}.",
        "- Network access is available." if caps.network else "- There is no network access.",
    ]
    if caps.packages:
        lines.append("- Importable beyond the standard library: " + ", ".join(caps.packages) + ".")
    else:
        lines.append("- Only the Python standard library is available; do not pip install.")
    if not caps.writable_filesystem:
        lines.append("- The filesystem is read-only.")
    lines.append("- Variables, imports and functions persist from one step to the next.")
    if cell_timeout_s is not None:
        if caps.survives_timeout:
            lines.append(
                f"- A step that runs longer than {cell_timeout_s:g} s is interrupted; your "
                "variables are kept."
            )
        else:
            lines.append(
                f"- A step that runs longer than {cell_timeout_s:g} s kills the session and "
                "every variable you made is lost: keep steps short."
            )
    return lines


def _tool_text(spec: ToolSpec) -> str:
    doc = " ".join(spec.doc.split("\n\n")[0].split()) if spec.doc else ""
    return f"- `{spec.render()}`" + (f": {doc}" if doc else "")


def system_prompt(
    spec: SignatureSpec,
    *,
    capabilities: Capabilities,
    builtins: Mapping[str, str],
    tools: Sequence[ToolSpec],
    max_iterations: int,
    sub_calls_left: int | None,
    can_recurse: bool,
    cell_timeout_s: float | None,
    max_output_chars: int,
) -> str:
    """The system message: the role, the REPL, its built-ins and tools, the budget, the rules.

    ``builtins`` maps each built-in tool the guest has to its rendered signature, read from the
    function itself, so the prompt cannot drift from what the guest calls.
    """
    outputs = ", ".join(f.name for f in spec.outputs)
    builtin_lines = [
        f"- `{builtins['llm_query']}`: ask a language model about a piece of text "
        "(it sees only the prompt you pass; it can read a few hundred thousand characters).",
        f"- `{builtins['llm_query_batched']}`: many llm_query calls run "
        "concurrently; answers come back in order; a failed prompt gives a string starting "
        f"with '{FAILED_PROMPT_PREFIX}'. Much faster than a loop of llm_query.",
    ]
    if can_recurse:
        builtin_lines.append(
            f"- `{builtins['rlm_query']}`: hand a sub-task to another "
            "agent like you, with its own REPL holding `context` (any JSON value or string)."
        )
    builtin_lines.append(
        f"- `SUBMIT({outputs})`: give the final outputs (positionally or by keyword) and end the "
        "run at once."
    )
    builtin_lines.append(
        "- `print(...)`: the only way to see values; output is cut to "
        f"{max_output_chars:,} characters (head and tail) per step."
    )
    budget = (
        "unlimited"
        if sub_calls_left is None
        else f"{sub_calls_left} in total (llm_query prompts and sub-agent steps)"
    )
    parts = [
        "You are a careful programmer answering a task about inputs too large to read at once. "
        "The inputs are variables in a persistent Python REPL. You explore them by writing "
        "code, reading what it prints, and iterating.",
        "How to reply, every step: first a few sentences of reasoning (what you know, what "
        "remains, what this step does), then exactly one ```python code block. The code runs, "
        "and you see its output in the next message. Never write the output yourself.",
        "The REPL sandbox:\n" + "\n".join(_capabilities_text(capabilities, cell_timeout_s)),
        "Built-in functions:\n" + "\n".join(builtin_lines),
    ]
    if tools:
        parts.append(
            "Host tools (call them like Python functions; they run outside the sandbox):\n"
            + "\n".join(_tool_text(t) for t in tools)
        )
    parts.append(
        f"Budget: at most {max_iterations} steps; language-model calls from code: {budget}."
    )
    parts.append(
        "Rules:\n"
        "1. Explore first: print sizes, samples and structure before deciding anything.\n"
        "2. Iterate: build on the variables of earlier steps; keep each step small.\n"
        "3. Use code for finding and counting (re, str methods, collections), and llm_query for "
        "meaning: code finds where, the model reads what.\n"
        "4. Never re-type long values; slice variables instead.\n"
        "5. Verify before submitting: print the values you are about to SUBMIT.\n"
        "6. SUBMIT only after you have seen the values in an earlier output; it ends the run."
    )
    return "\n\n".join(parts)


def first_message(spec: SignatureSpec, inputs_info: Sequence[str], max_iterations: int) -> str:
    """The first user message: the task, the outputs to produce, the inputs' metadata."""
    task = spec.instructions or (
        "Produce "
        + ", ".join(f"`{f.name}`" for f in spec.outputs)
        + " from "
        + ", ".join(f"`{f.name}`" for f in spec.inputs)
        + "."
    )
    outputs = []
    for f in spec.outputs:
        line = f"- `{f.name}`: {f.type_name}"
        if f.description:
            line += f" ({f.description})"
        outputs.append(line)
    return (
        f"Task: {task}\n\n"
        "Outputs to SUBMIT:\n" + "\n".join(outputs) + "\n\n"
        "Inputs:\n\n" + "\n\n".join(inputs_info) + "\n\n"
        f"Step 1 of {max_iterations}: explore the inputs."
    )


def budget_note(step: int, max_iterations: int, sub_calls_left: int | None) -> str:
    """The line that ends each step's message: where the run stands."""
    calls = "" if sub_calls_left is None else f" LLM calls left: {sub_calls_left}."
    left = max_iterations - step + 1
    hurry = " This is the last step: SUBMIT now." if left == 1 else ""
    return f"Step {step} of {max_iterations}.{calls}{hurry}"


def _cap(text: str, true_chars: int | None, limit: int) -> str:
    # Backends already cut output in the guest (head, marker, tail); cutting again would nest
    # markers, so only text that arrived whole is cut here.
    already_cut = true_chars is not None and true_chars > len(text)
    slack = len(truncation_marker(10**12))
    if already_cut or len(text) <= limit + (slack if true_chars is None else 0):
        return text
    return truncate_output(text, limit)


def format_execution(result: ExecutionResult, max_output_chars: int) -> str:
    """What one cell did, as the model reads it; every part is cut to ``max_output_chars``."""
    parts: list[str] = []
    if result.stdout:
        chars = max(result.stdout_chars, len(result.stdout))
        shown = _cap(result.stdout, result.stdout_chars, max_output_chars).rstrip("\n")
        parts.append(f"stdout ({chars:,} chars):\n{shown}")
    if result.stderr:
        chars = max(result.stderr_chars, len(result.stderr))
        shown = _cap(result.stderr, result.stderr_chars, max_output_chars).rstrip("\n")
        parts.append(f"stderr ({chars:,} chars):\n{shown}")
    if result.value is not None:
        shown = _cap(result.value, None, max_output_chars)
        parts.append("value of the last expression:\n" + shown)
    if result.timed_out:
        parts.append("The step ran past its timeout and was interrupted; variables are kept.")
    elif result.error is not None:
        detail = _cap(str(result.error).rstrip(), None, max_output_chars)
        parts.append(f"Error: {detail}")
    return "\n\n".join(parts) if parts else NO_OUTPUT


def submitted(values: dict[str, Any]) -> str:
    """The record of an accepted SUBMIT."""
    return "SUBMIT accepted: " + ", ".join(f"{k}={v!r}" for k, v in values.items())


def missing_code() -> str:
    """The nudge for a reply that holds no code."""
    return (
        "Your reply had no code to run. Reply with a little reasoning, then exactly one "
        "```python block. To finish, call SUBMIT(...) inside that block."
    )


def wrong_language(tag: str) -> str:
    """The error for a reply whose only code block is not Python."""
    return (
        f"Error: expected Python code but got a ```{tag} block. This REPL runs Python only; "
        "write Python (use the standard library for what a shell command would do)."
    )


def session_replaced(reason: str) -> str:
    """The notice that the sandbox was lost and replaced."""
    return (
        f"The sandbox session was lost ({reason}) and replaced by a fresh one. Every variable, "
        "import and function you defined is gone; the inputs are bound again under their "
        "names. Redo what you still need, in smaller steps."
    )


def invalid_outputs(problems: Sequence[str], spec: SignatureSpec) -> str:
    """The error for a SUBMIT whose values do not match the signature's types."""
    expected = ", ".join(f"{f.name}: {f.type_name}" for f in spec.outputs)
    return (
        "SUBMIT was rejected, the run continues:\n"
        + "\n".join(f"- {p}" for p in problems)
        + f"\nExpected: SUBMIT({expected}). Fix the values and SUBMIT again."
    )


def extract_request(spec: SignatureSpec) -> str:
    """The final request after the step budget is spent: the outputs as one JSON object."""
    fields = "\n".join(
        f'- "{f.name}": {f.type_name}' + (f" ({f.description})" if f.description else "")
        for f in spec.outputs
    )
    return (
        "You have used every step. From what the steps above showed, give the final outputs now, "
        "without running more code, as one JSON object in a ```json block with these keys:\n"
        f"{fields}\nIf something is unknown, give your best estimate from the evidence."
    )


def extract_retry(problems: Sequence[str]) -> str:
    """The second extract request, after an unusable first answer."""
    return (
        "That answer was unusable:\n"
        + "\n".join(f"- {p}" for p in problems)
        + ("\nReply with the corrected JSON object only.")
    )


def child_instructions() -> str:
    """Instructions of a run started by ``rlm_query``."""
    return "Answer `prompt`, using `context` when it is given. SUBMIT the answer as a string."

"""What DSPy sees of our sandboxes: its "Execution environment" text, and each step's result.

DSPy's ``CodeInterpreter.execute`` returns ``FinalOutput`` after ``SUBMIT``, otherwise the
step's output as a Python value or text, and raises ``CodeExecutionError``/``SyntaxError`` for
the code's own failures; our :class:`~rlm_core.interpreter.ExecutionResult` keeps all of that
as data, and this module maps one onto the other.
"""

from __future__ import annotations

import ast
from typing import Any

from dspy.primitives.code_interpreter import CodeExecutionError, FinalOutput

from rlm_core.interpreter import Capabilities, ExecutionResult

__all__ = ["execution_instructions", "to_dspy"]

_ISOLATION_TEXT = {
    "none": "in the host process itself (no isolation: a test backend, not a sandbox)",
    "process": "in a separate local Python process (not a security boundary)",
    "wasm": "in Pyodide/WebAssembly inside a locked-down Deno process",
    "container": "in a container",
    "microvm": "in a micro-VM",
}


def execution_instructions(capabilities: Capabilities) -> str:
    """DSPy's "Execution environment" text for a backend, from what it enforces."""
    python = f"Python {capabilities.python_version}" if capabilities.python_version else "Python"
    packages = "The standard library (re, json, collections, math, ...) is available" + (
        "; so are " + ", ".join(capabilities.packages) + "." if capabilities.packages else "."
    )
    return " ".join(
        [
            f"{python} runs {_ISOLATION_TEXT[capabilities.isolation]}.",
            "State persists across executions; the inputs are bound once and stay bound.",
            "Printed output and the value of a final expression are both shown.",
            packages,
            "Network access is "
            + ("available." if capabilities.network else "blocked.")
            + " The filesystem is "
            + ("writable." if capabilities.writable_filesystem else "read-only."),
        ]
    )


def to_dspy(result: ExecutionResult) -> Any:
    """The step's result as ``DSPyInterpreter.execute`` returns or raises it."""
    if result.submitted is not None:
        return FinalOutput(dict(result.submitted))
    error = result.error
    if error is not None:
        printed = result.stdout + result.stderr
        before = f"\n(output before the error)\n{printed}" if printed else ""
        if error.type == "SyntaxError":
            raise SyntaxError(f"Invalid Python syntax. message: {error}{before}")
        raise CodeExecutionError(f"{error}{before}")
    if result.timed_out:
        raise CodeExecutionError("TimeoutError: the code ran past its timeout and was stopped")
    printed = result.stdout + result.stderr
    if not printed:
        return None if result.value is None else _python_value(result.value)
    return printed if result.value is None else f"{printed}{result.value}"


def _python_value(text: str) -> Any:
    """The value a repr stands for when it is a literal; otherwise the repr itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text

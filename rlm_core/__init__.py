"""Recursive Language Models with pluggable sandboxes.

The interpreter contract (:class:`Interpreter` and its value types), the error tree, backend
discovery (:func:`create`), settings (:func:`load_settings`), the blocking facade, and the
loop itself: :class:`RLM`, with its signatures and models.

Every public name is imported on first use (PEP 562), so a backend or the conformance plugin
that needs only the contract and the bridge does not pay for the loop, litellm or rich.
"""

from __future__ import annotations

import ast
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_core.config import Settings, load_settings
    from rlm_core.errors import (
        BridgeProtocolError,
        BudgetExceededError,
        ConfigError,
        InterpreterClosedError,
        InterpreterError,
        InterpreterNotStartedError,
        InterpreterUnavailableError,
        LMError,
        OutputValidationError,
        RLMError,
        RunError,
        SessionError,
        SessionLostError,
        SessionOpenError,
    )
    from rlm_core.interpreter import (
        JSON,
        Capabilities,
        CodeError,
        ExecutionResult,
        Interpreter,
        SubmitField,
        truncate_output,
    )
    from rlm_core.lm import LM, LiteLLM
    from rlm_core.registry import available, create
    from rlm_core.result import RLMResult
    from rlm_core.rlm import RLM
    from rlm_core.signature import InputField, OutputField, Signature
    from rlm_core.sync import BlockingInterpreter

__all__ = [
    "JSON",
    "LM",
    "RLM",
    "BlockingInterpreter",
    "BridgeProtocolError",
    "BudgetExceededError",
    "Capabilities",
    "CodeError",
    "ConfigError",
    "ExecutionResult",
    "InputField",
    "Interpreter",
    "InterpreterClosedError",
    "InterpreterError",
    "InterpreterNotStartedError",
    "InterpreterUnavailableError",
    "LMError",
    "LiteLLM",
    "OutputField",
    "OutputValidationError",
    "RLMError",
    "RLMResult",
    "RunError",
    "SessionError",
    "SessionLostError",
    "SessionOpenError",
    "Settings",
    "Signature",
    "SubmitField",
    "available",
    "create",
    "load_settings",
    "truncate_output",
]


def _homes() -> dict[str, str]:
    """Map each public name to its module, read from the ``TYPE_CHECKING`` imports above.

    Those imports are the one list of where each name lives: type checkers read them, and this
    reads them too, so the lazy path cannot drift from what mypy sees.
    """
    with open(__file__, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    block = next(node for node in tree.body if isinstance(node, ast.If))
    return {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


_MODULE_OF = _homes()


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

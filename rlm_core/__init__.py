"""Recursive Language Models with pluggable sandboxes.

The interpreter contract (:class:`Interpreter` and its value types), the error tree, backend
discovery (:func:`create`), settings (:func:`load_settings`) and the blocking facade. The RLM
loop itself is :class:`rlm_core.rlm.RLM`.
"""

from rlm_core.config import Settings, load_settings
from rlm_core.errors import (
    BridgeProtocolError,
    BudgetExceededError,
    ConfigError,
    InterpreterClosedError,
    InterpreterError,
    InterpreterNotStartedError,
    InterpreterUnavailableError,
    RLMError,
    RunError,
    SessionError,
    SessionLostError,
)
from rlm_core.interpreter import (
    JSON,
    Capabilities,
    CodeError,
    ExecutionResult,
    Interpreter,
    OutputField,
    truncate_output,
)
from rlm_core.registry import available, create
from rlm_core.sync import BlockingInterpreter

__all__ = [
    "JSON",
    "BlockingInterpreter",
    "BridgeProtocolError",
    "BudgetExceededError",
    "Capabilities",
    "CodeError",
    "ConfigError",
    "ExecutionResult",
    "Interpreter",
    "InterpreterClosedError",
    "InterpreterError",
    "InterpreterNotStartedError",
    "InterpreterUnavailableError",
    "OutputField",
    "RLMError",
    "RunError",
    "SessionError",
    "SessionLostError",
    "Settings",
    "available",
    "create",
    "load_settings",
    "truncate_output",
]

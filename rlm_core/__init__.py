"""Recursive Language Models with pluggable sandboxes.

The interpreter contract (:class:`Interpreter` and its value types), the error tree, backend
discovery (:func:`create`), settings (:func:`load_settings`), the blocking facade, and the
loop itself: :class:`RLM`, with its signatures and models.

Every public name is imported on first use (PEP 562), so a backend or the conformance plugin
that needs only the contract and the bridge does not pay for the loop, litellm or rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm_core._lazy import attach

if TYPE_CHECKING:
    from rlm_core.config import Settings, load_settings
    from rlm_core.errors import (
        BridgeProtocolError,
        BudgetExceededError,
        ConfigError,
        GuestRefusedError,
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
    "GuestRefusedError",
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

__getattr__, __dir__ = attach(__name__, __file__, __all__)

"""DSPy both ways: an RLM inside a DSPy program, and DSPy's code modules on our sandboxes.

- :class:`RLMModule` runs this toolkit's RLM loop as a ``dspy.Module`` that DSPy's optimizers
  can tune.
- :class:`DSPyInterpreter` and :func:`interpreter_factory` run DSPy's own ``dspy.RLM`` (and
  ``ProgramOfThought``, ``CodeAct``, ``Flex``) on any of our backends:
  ``dspy.configure(interpreter_factory=interpreter_factory("docker"))``.

Requires ``dspy`` (``pip install "rlmbox[dspy]"``); nothing else in ``rlm_core`` imports this
package. See ``docs/dspy.md``.
"""

from __future__ import annotations

try:
    import dspy  # noqa: F401  # fail here, with the fix, rather than deep in a submodule
except ImportError as exc:
    raise ImportError('rlm_core.dspy needs DSPy: pip install "rlmbox[dspy]"') from exc

from rlm_core.dspy._interpreter import (
    DEFAULT_MAX_OUTPUT_CHARS,
    DSPyInterpreter,
    InterpreterFactory,
    interpreter_factory,
)
from rlm_core.dspy._module import RLMModule
from rlm_core.dspy._results import execution_instructions

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "DSPyInterpreter",
    "InterpreterFactory",
    "RLMModule",
    "execution_instructions",
    "interpreter_factory",
]

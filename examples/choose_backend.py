"""Choosing a sandbox backend by configuration instead of in code.

The same program runs on any installed backend. Pick one, most specific first:

    RLM(..., interpreter="docker://rlm-python:3.11?memory=1g")   # in code
    RLM_INTERPRETER=subprocess python examples/choose_backend.py  # environment
    # rlm.toml (or [tool.rlm] in pyproject.toml):
    #   interpreter = "docker"
    #   [interpreters.docker]
    #   image = "rlm-python:3.11"

``rlm interpreters`` lists the backends and whether each can run on this machine.
"""

from __future__ import annotations

from rlm_core import RLM, RLMResult, load_settings
from rlm_core.lm import LM
from rlm_core.registry import InterpreterSpec


def main(lm: str | LM | None = None, interpreter: InterpreterSpec | None = None) -> RLMResult:
    settings = load_settings({"interpreter": interpreter if isinstance(interpreter, str) else None})
    print(f"backend from configuration: {settings.interpreter}")
    # No interpreter argument when none is given: the RLM reads the same settings.
    rlm = RLM("numbers -> total: int", lm=lm, interpreter=interpreter)
    result = rlm(numbers=list(range(1, 101)))
    print(result.total)
    return result


if __name__ == "__main__":
    main()

"""Quickstart: ask a question about a long document without putting it in the prompt.

Run it with any litellm model, on the default sandbox (or RLM_INTERPRETER=subprocess):

    RLM_MODEL=openai/gpt-4o-mini python examples/quickstart.py
"""

from __future__ import annotations

from pathlib import Path

from rlm_core import RLM, RLMResult
from rlm_core.lm import LM
from rlm_core.registry import InterpreterSpec

DOCUMENT = Path(__file__).with_name("data") / "observatory_log.txt"


def main(lm: str | LM | None = None, interpreter: InterpreterSpec | None = None) -> RLMResult:
    rlm = RLM("context, query -> answer", lm=lm, interpreter=interpreter, max_iterations=10)
    result = rlm(
        context=DOCUMENT.read_text(encoding="utf-8"),
        query="Which subsystem logged the most CRITICAL events, and how many?",
    )
    print(result.answer)
    print(f"{len(result.trajectory)} steps, ${result.usage.cost_usd:.4f}")
    return result


if __name__ == "__main__":
    main()

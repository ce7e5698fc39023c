"""A cheaper sub-model: the root model plans, a small model reads the slices.

``llm_query`` and ``llm_query_batched`` go to ``sub_lm``; the usage summary shows what each
model cost.
"""

from __future__ import annotations

from pathlib import Path

from rlm_core import RLM, RLMResult
from rlm_core.lm import LM
from rlm_core.registry import InterpreterSpec

DOCUMENT = Path(__file__).with_name("data") / "observatory_log.txt"


def main(
    lm: str | LM | None = None,
    sub_lm: str | LM | None = None,
    interpreter: InterpreterSpec | None = None,
) -> RLMResult:
    rlm = RLM(
        "context, query -> summary",
        lm=lm or "openai/gpt-4o",
        sub_lm=sub_lm or "openai/gpt-4o-mini",
        interpreter=interpreter,
        max_llm_calls=40,
    )
    result = rlm(
        context=DOCUMENT.read_text(encoding="utf-8"),
        query="Summarise each quarter's maintenance problems in one sentence each.",
    )
    print(result.summary)
    for model, usage in result.usage.models.items():
        print(f"{model}: {usage.calls} calls, {usage.total_tokens:,} tokens, ${usage.cost_usd:.4f}")
    return result


if __name__ == "__main__":
    main()

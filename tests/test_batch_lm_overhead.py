"""Host work per model call: a batch makes thousands, so the price is looked up once per call."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from rlm_core.lm import LiteLLM, Message, import_litellm
from rlm_core.testing import OpenAIStubServer


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "openai/local-unpriced-model"])
def test_usage_reuses_the_price_litellm_already_computed(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    litellm = import_litellm()
    calls: list[Any] = []
    real = litellm.completion_cost

    def counting(*args: Any, **kwargs: Any) -> float:
        calls.append(kwargs)
        return float(real(*args, **kwargs))

    monkeypatch.setattr(litellm, "completion_cost", counting)
    with OpenAIStubServer(["x" * 40]) as server:
        lm = LiteLLM(model, api_base=server.api_base, num_retries=0)
        usage = anyio.run(lm.complete, [Message(role="user", content="y" * 400)]).usage
    assert usage.prompt_tokens > 0
    # A priced model keeps its price; an unpriced one stays None instead of a second,
    # failing lookup through litellm's whole price map.
    assert (usage.cost_usd is not None) == (model == "openai/gpt-4o-mini")
    assert calls == []

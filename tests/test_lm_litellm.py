"""The real litellm path, against the OpenAI-compatible stub server on loopback."""

import socket

import anyio
import pytest

from rlm_core.errors import ConfigError
from rlm_core.lm import LiteLLM, Message
from rlm_core.rlm import RLM
from rlm_core.testing import OpenAIStubServer
from rlm_mock import MockInterpreter


def py(src: str) -> str:
    return f"Step.\n```python\n{src}\n```"


def test_completion_text_usage_and_request() -> None:
    with OpenAIStubServer(["hello from the stub"]) as server:
        lm = LiteLLM("openai/stub-model", api_base=server.api_base, num_retries=0)
        completion = anyio.run(lm.complete, [Message(role="user", content="hi there")])
    assert completion.text == "hello from the stub"
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert server.requests[0]["model"] == "stub-model"
    assert server.requests[0]["messages"] == [{"role": "user", "content": "hi there"}]


def test_cost_comes_from_the_price_map() -> None:
    with OpenAIStubServer(["x" * 400]) as server:
        priced = LiteLLM("openai/gpt-4o-mini", api_base=server.api_base, num_retries=0)
        unpriced = LiteLLM("openai/not-a-real-model", api_base=server.api_base, num_retries=0)
        messages = [Message(role="user", content="y" * 400)]
        cost = anyio.run(priced.complete, messages).usage.cost_usd
        unknown = anyio.run(unpriced.complete, messages).usage.cost_usd
    assert cost is not None
    assert cost > 0
    assert unknown is None


def test_unreachable_server_is_a_config_error_naming_api_base() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lm = LiteLLM("openai/x", api_base=f"http://127.0.0.1:{port}/v1", num_retries=0, timeout=5)
    with pytest.raises(ConfigError, match=f"api_base 'http://127.0.0.1:{port}/v1' is unreachable"):
        anyio.run(lm.complete, [Message(role="user", content="hi")])


def test_rlm_run_with_batched_sub_calls_over_http() -> None:
    def reply(messages: list[dict[str, str]]) -> str:
        last = messages[-1]["content"]
        if last.startswith("part "):
            return last.upper()
        if len(messages) == 2:
            return py("parts = llm_query_batched(['part ' + c for c in 'abc'])\nprint(parts)")
        return py("SUBMIT(parts)")

    with OpenAIStubServer(reply, latency_s=0.05) as server:
        rlm = RLM(
            "q -> parts: list[str]",
            lm="openai/root",
            sub_lm="openai/cheap",
            api_base=server.api_base,
            interpreter=MockInterpreter,
        )
        result = rlm(q="?")
    assert result.parts == ["PART A", "PART B", "PART C"]
    assert result.usage.models["openai/cheap"].calls == 3
    assert result.usage.models["openai/root"].calls == 2
    assert result.usage.total_tokens > 0

"""A real ``dspy.LM`` drives an RLM: its model string and litellm arguments carry over."""

from __future__ import annotations

import dspy

from rlm_core import RLM
from rlm_core.lm import LiteLLM, resolve_lm
from rlm_core.testing import OpenAIStubServer
from rlm_mock import MockInterpreter


def py(code: str) -> str:
    return f"Let me run this.\n```python\n{code}\n```"


def test_dspy_lm_settings_become_litellm_arguments() -> None:
    lm = resolve_lm(dspy.LM("openai/gpt-4o-mini", temperature=0.2, api_key="sk-x", num_retries=1))
    assert isinstance(lm, LiteLLM)
    assert lm.model == "openai/gpt-4o-mini"


def test_rlm_runs_with_a_dspy_lm_against_a_local_server() -> None:
    replies = [py("words = context.split()\nprint(len(words))"), py("SUBMIT(len(words))")]
    with OpenAIStubServer(replies) as server:
        lm = dspy.LM("openai/stub", api_base=server.api_base, api_key="sk-x", num_retries=0)
        rlm = RLM("context -> count: int", lm=lm, interpreter=MockInterpreter)
        result = rlm(context="one two three")
    assert result.count == 3
    assert len(server.requests) == 2
    assert server.requests[0]["model"] == "stub"

"""The lean path to OpenAI-compatible servers: same request, usage, price, errors and retries.

``LiteLLM("openai/<name>", api_base=...)`` posts straight to the server (rlm_core.lm_openai)
instead of going through litellm. Each test runs a real HTTP server on loopback
(``OpenAIStubServer``) that answers from a script of steps and records what it received;
tests of the lean path make litellm's own call fail, so they cannot pass through litellm by
accident.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from rlm_core import lm_failures, lm_openai
from rlm_core.errors import ConfigError, LMError
from rlm_core.interpreter import JSON
from rlm_core.lm import LiteLLM, Message, import_litellm
from rlm_core.testing import OpenAIStubServer, StubStep

HI = [Message(role="user", content="hi")]
USAGE: dict[str, JSON] = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}

# litellm's error path imports response types whose definitions make pydantic warn.
pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier")


def scripted(
    steps: list[StubStep], reply: str = "fine", usage: Mapping[str, JSON] = USAGE
) -> OpenAIStubServer:
    """A server that handles each request with the next step (the last one repeats)."""
    return OpenAIStubServer([reply], steps=steps, usage=usage)


@pytest.fixture
def litellm_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models litellm.acompletion was asked for (it still makes the call)."""
    litellm = import_litellm()
    real = litellm.acompletion
    seen: list[str] = []

    async def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["model"])
        return await real(*args, **kwargs)

    monkeypatch.setattr(litellm, "acompletion", counting)
    return seen


@pytest.fixture
def no_litellm_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call through litellm fails the test, with an error no classification retries."""
    litellm = import_litellm()

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the call went through litellm")

    monkeypatch.setattr(litellm, "acompletion", refuse)


def call(lm: LiteLLM, messages: list[Message] = HI) -> Any:
    return anyio.run(lm.complete, messages)


# ---- the request, the reply, the price ------------------------------------------------------


@pytest.mark.usefixtures("no_litellm_call")
def test_an_openai_compatible_server_is_called_without_litellm() -> None:
    with scripted([200], reply="hello") as server:
        lm = LiteLLM("openai/local-model", api_base=server.api_base + "/", num_retries=0)
        completion = call(lm, [Message(role="user", content="hi there")])
    assert completion.text == "hello"
    assert completion.model == "openai/local-model"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1000, 200)
    assert completion.usage.cost_usd is None  # not in litellm's price map
    assert server.paths == ["/v1/chat/completions"]
    assert server.requests[0]["model"] == "local-model"
    assert server.requests[0]["messages"] == [{"role": "user", "content": "hi there"}]
    assert server.headers[0]["authorization"] == "Bearer sk-local"


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("openai/gpt-4o-mini", {"temperature": 0.2, "max_tokens": 50, "stop": ["\n"]}),
        ("openai/o1", {"max_tokens": 50}),  # litellm renames it max_completion_tokens
        ("openai/local-model", {"seed": 7, "top_p": 0.5}),
    ],
)
def test_both_paths_send_the_same_body_and_report_the_same_usage(
    model: str, params: dict[str, Any], litellm_calls: list[str]
) -> None:
    usage: dict[str, JSON] = {**USAGE, "prompt_tokens_details": {"cached_tokens": 600}}
    with scripted([200], usage=usage) as server:
        direct = call(LiteLLM(model, api_base=server.api_base, api_key="sk-1", **params))
        assert litellm_calls == []
        via_litellm = call(
            LiteLLM(model, api_base=server.api_base, api_key="sk-1", direct=False, **params)
        )
        assert litellm_calls == [model]
    lean_body, litellm_body = server.requests
    assert lean_body == {k: v for k, v in litellm_body.items() if k != "stream"}
    assert server.headers[0]["authorization"] == server.headers[1]["authorization"]
    assert direct.text == via_litellm.text == "fine"
    assert direct.usage.prompt_tokens == via_litellm.usage.prompt_tokens
    assert direct.usage.completion_tokens == via_litellm.usage.completion_tokens
    if via_litellm.usage.cost_usd is None:
        assert direct.usage.cost_usd is None
    else:
        assert direct.usage.cost_usd == pytest.approx(via_litellm.usage.cost_usd, rel=1e-9)
    if model != "openai/local-model":
        assert direct.usage.cost_usd is not None
        assert direct.usage.cost_usd > 0


def test_a_model_priced_later_is_priced_from_then_on(monkeypatch: pytest.MonkeyPatch) -> None:
    litellm = import_litellm()
    monkeypatch.setattr(litellm, "model_cost", dict(litellm.model_cost))
    with scripted([200]) as server:
        lm = LiteLLM("openai/house-model", api_base=server.api_base)
        assert call(lm).usage.cost_usd is None
        litellm.register_model(
            {
                "house-model": {
                    "litellm_provider": "openai",
                    "mode": "chat",
                    "input_cost_per_token": 1e-6,
                    "output_cost_per_token": 2e-6,
                }
            }
        )
        assert call(lm).usage.cost_usd == pytest.approx(1000 * 1e-6 + 200 * 2e-6)


def test_parameters_the_lean_path_does_not_know_go_through_litellm(
    litellm_calls: list[str],
) -> None:
    with scripted([200]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, extra_headers={"X-Trace": "t-1"})
        assert call(lm).text == "fine"
    assert litellm_calls == ["openai/m"]
    assert server.headers[0]["x-trace"] == "t-1"


def test_litellm_callbacks_keep_calls_on_litellm(
    litellm_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    litellm = import_litellm()
    with scripted([200]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base)
        call(lm)
        assert litellm_calls == []
        # A user who logs every call through litellm keeps that logging.
        monkeypatch.setattr(litellm, "success_callback", [lambda *args: None])
        call(lm)
    assert litellm_calls == ["openai/m"]


@pytest.mark.usefixtures("no_litellm_call")
def test_the_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    with scripted([200]) as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.api_base.removesuffix("/v1"))
        lm = LiteLLM("openai/m", api_base="http://models.internal.invalid/v1", num_retries=0)
        assert call(lm).text == "fine"
    assert proxy.paths == ["http://models.internal.invalid/v1/chat/completions"]


# ---- failures: the same classification and retries as litellm's ---------------------------


@pytest.mark.usefixtures("no_litellm_call")
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_one_attempt(status: int) -> None:
    with scripted([status]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, api_key="sk-wrong", num_retries=3)
        with pytest.raises(ConfigError, match=r"refused the API key for model 'openai/m'") as info:
            call(lm)
        assert len(server.requests) == 1
    assert str(info.value).endswith(
        f"(the key came from argument api_key): HTTP {status}: scripted {status}"
    )


@pytest.mark.usefixtures("no_litellm_call")
def test_a_model_the_server_does_not_have_is_one_attempt() -> None:
    with scripted([404]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        with pytest.raises(ConfigError, match=r"model 'openai/m' was not found by the provider"):
            call(lm)
        assert len(server.requests) == 1


@pytest.mark.usefixtures("no_litellm_call")
def test_a_bad_request_is_reported_without_retries() -> None:
    with scripted([400]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        with pytest.raises(LMError, match=r"^openai/m: HTTP 400: scripted 400$") as info:
            call(lm)
        assert not isinstance(info.value, ConfigError)
        assert len(server.requests) == 1


@pytest.mark.usefixtures("no_litellm_call")
@pytest.mark.parametrize("status", [429, 500])
def test_rate_limits_and_server_errors_are_retried(status: int) -> None:
    with scripted([status, status, 200]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        assert call(lm).text == "fine"
        assert len(server.requests) == 3


@pytest.mark.usefixtures("no_litellm_call")
def test_a_lasting_outage_gives_up_after_the_retries() -> None:
    with scripted([503]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=1)
        with pytest.raises(
            LMError, match=r"^openai/m: HTTP 503: scripted 503 \(after 2 attempts\)$"
        ):
            call(lm)
        assert len(server.requests) == 2


@pytest.mark.usefixtures("no_litellm_call")
def test_a_timeout_is_retried() -> None:
    with scripted(["slow", 200]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=1, timeout=0.3)
        assert call(lm).text == "fine"
        assert len(server.requests) == 2
    with scripted(["slow"]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=1, timeout=0.3)
        with pytest.raises(LMError, match=r"timed out after 0.3 s \(after 2 attempts\)$") as info:
            call(lm)
        assert not isinstance(info.value, ConfigError)


@pytest.mark.usefixtures("no_litellm_call")
def test_a_dropped_connection_after_an_answer_is_retried() -> None:
    with scripted([200, "drop", 200]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=2)
        assert call(lm).text == "fine"
        assert call(lm).text == "fine"
        assert len(server.requests) == 3


@pytest.mark.usefixtures("no_litellm_call")
@pytest.mark.parametrize("step", ["garbage", 200])
def test_an_answer_without_message_text_is_an_error_not_retried(step: StubStep) -> None:
    # The reply None sends a null content, which reads as an empty text.
    with scripted([step], reply=None, usage={}) as server:  # type: ignore[arg-type]
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        if step == 200:
            assert call(lm).text == ""
            return
        with pytest.raises(LMError, match=r"not a JSON object: <html>oops"):
            call(lm)
        assert len(server.requests) == 1


def test_a_refused_connection_sorts_as_an_unreachable_api_base() -> None:
    with scripted([200]) as server:
        api_base = server.api_base
    settings = lm_failures.ModelSettings("openai/m", api_base, True, {"api_base": "option x"})
    target = lm_openai.route(
        import_litellm(), "openai/m", api_base=api_base, api_key="sk-secret-1", params={}
    )
    assert target is not None
    assert "sk-secret-1" not in repr(target)  # tracebacks and logs may show the route

    async def refused() -> BaseException:
        with pytest.raises(lm_openai.APIConnectionError) as info:
            await target.post(HI, 5)
        return info.value

    exc = anyio.run(refused)
    failure = lm_failures.classify(exc, settings, answered=False)
    assert str(failure.error()) == (
        f"api_base '{api_base}' (from option x) is unreachable (Connection refused)"
    )
    assert failure.setting_is_wrong
    assert lm_failures.classify(exc, settings, answered=True).transient


# ---- one keep-alive session per event loop, closed with it ---------------------------------


@pytest.mark.usefixtures("no_litellm_call")
def test_calls_share_connections_and_the_session_closes_with_its_loop() -> None:
    async def many(lm: LiteLLM) -> None:
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(lm.complete, HI)
        await lm.complete(HI)  # after the burst: a kept-alive connection, not a new one

    with scripted([200]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base)
        anyio.run(many, lm)  # the first calls also check that api_base accepts connections
        before = server.connections
        anyio.run(many, lm)  # a new loop: a new session
        assert len(server.requests) == 18
        assert server.connections - before <= 8  # the ninth call reused a connection
        assert lm_openai._sessions == {}  # each closed when anyio.run shut its loop down
    gc.collect()  # an unclosed session or connector would warn here (warnings are errors)


# asyncio itself warns of the sockets a loop closed without its shutdown leaves open.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.usefixtures("no_litellm_call")
def test_a_loop_closed_without_its_shutdown_leaves_no_session_behind() -> None:
    with scripted([200]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base)
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(lm.complete(HI)).text == "fine"
        loop.close()
        assert call(lm).text == "fine"  # forgets the closed loop's session
        assert lm_openai._sessions == {}
    del loop
    gc.collect()  # here, where those warnings are expected, not at the end of the session

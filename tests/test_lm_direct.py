"""The lean path to OpenAI-compatible servers: same request, usage, price, errors and retries.

``LiteLLM("openai/<name>", api_base=...)`` posts straight to the server (rlm_core.lm_openai)
instead of going through litellm. Each test runs a real HTTP server on loopback that answers
from a script and records what it received; tests of the lean path make litellm's own call
fail, so they cannot pass through litellm by accident.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest

from rlm_core import lm_failures, lm_openai
from rlm_core.errors import ConfigError, LMError
from rlm_core.lm import LiteLLM, Message, import_litellm

HI = [Message(role="user", content="hi")]
USAGE = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}

# litellm's error path imports response types whose definitions make pydantic warn.
pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier")


class ScriptedServer:
    """Answers each chat request with the next step of a script (the last step repeats).

    A step is an HTTP status (200 answers with ``reply`` and ``usage``, others with an
    OpenAI-style error body), ``"drop"`` (close the connection without answering), ``"slow"``
    (answer 200 after 2 s) or ``"garbage"`` (200 with a body that is not JSON).
    """

    def __init__(
        self, script: list[int | str], reply: str = "fine", usage: dict[str, Any] | None = None
    ) -> None:
        self.script = script
        self.reply = reply
        self.usage = usage or USAGE
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.connections = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.connections += 1

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with server.lock:
                    step = server.script[min(len(server.bodies), len(server.script) - 1)]
                    server.bodies.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.paths.append(self.path)
                if step == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if step == "slow":
                    time.sleep(2)
                status = step if isinstance(step, int) else 200
                payload: dict[str, Any] = {"error": {"message": f"scripted {status}"}}
                if status == 200:
                    payload = {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": server.reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": server.usage,
                    }
                data = b"<html>oops" if step == "garbage" else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out closed the socket the "slow" answer goes to

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def attempts(self) -> int:
        return len(self.bodies)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def scripted(script: list[int | str], **kwargs: Any) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script, **kwargs)
    try:
        yield server
    finally:
        server.close()


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
    for server in scripted([200], reply="hello"):
        lm = LiteLLM("openai/local-model", api_base=server.api_base + "/", num_retries=0)
        completion = call(lm, [Message(role="user", content="hi there")])
    assert completion.text == "hello"
    assert completion.model == "openai/local-model"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1000, 200)
    assert completion.usage.cost_usd is None  # not in litellm's price map
    assert server.paths == ["/v1/chat/completions"]
    assert server.bodies[0]["model"] == "local-model"
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "hi there"}]
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
    usage = dict(USAGE, prompt_tokens_details={"cached_tokens": 600})
    for server in scripted([200], usage=usage):
        direct = call(LiteLLM(model, api_base=server.api_base, api_key="sk-1", **params))
        assert litellm_calls == []
        via_litellm = call(
            LiteLLM(model, api_base=server.api_base, api_key="sk-1", direct=False, **params)
        )
        assert litellm_calls == [model]
    lean_body, litellm_body = server.bodies
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
    for server in scripted([200]):
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
    for server in scripted([200]):
        lm = LiteLLM("openai/m", api_base=server.api_base, extra_headers={"X-Trace": "t-1"})
        assert call(lm).text == "fine"
    assert litellm_calls == ["openai/m"]
    assert server.headers[0]["x-trace"] == "t-1"


def test_litellm_callbacks_keep_calls_on_litellm(
    litellm_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    litellm = import_litellm()
    for server in scripted([200]):
        lm = LiteLLM("openai/m", api_base=server.api_base)
        call(lm)
        assert litellm_calls == []
        # A user who logs every call through litellm keeps that logging.
        monkeypatch.setattr(litellm, "success_callback", [lambda *args: None])
        call(lm)
    assert litellm_calls == ["openai/m"]


@pytest.mark.usefixtures("no_litellm_call")
def test_the_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for proxy in scripted([200]):
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.httpd.server_address[1]}")
        lm = LiteLLM("openai/m", api_base="http://models.internal.invalid/v1", num_retries=0)
        assert call(lm).text == "fine"
    assert proxy.paths == ["http://models.internal.invalid/v1/chat/completions"]


# ---- failures: the same classification and retries as litellm's ---------------------------


@pytest.mark.usefixtures("no_litellm_call")
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_one_attempt(status: int) -> None:
    for server in scripted([status]):
        lm = LiteLLM("openai/m", api_base=server.api_base, api_key="sk-wrong", num_retries=3)
        with pytest.raises(ConfigError, match=r"refused the API key for model 'openai/m'") as info:
            call(lm)
        assert server.attempts == 1
    assert str(info.value).endswith(
        f"(the key came from argument api_key): HTTP {status}: scripted {status}"
    )


@pytest.mark.usefixtures("no_litellm_call")
def test_a_model_the_server_does_not_have_is_one_attempt() -> None:
    for server in scripted([404]):
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        with pytest.raises(ConfigError, match=r"model 'openai/m' was not found by the provider"):
            call(lm)
        assert server.attempts == 1


@pytest.mark.usefixtures("no_litellm_call")
def test_a_bad_request_is_reported_without_retries() -> None:
    for server in scripted([400]):
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        with pytest.raises(LMError, match=r"^openai/m: HTTP 400: scripted 400$") as info:
            call(lm)
        assert not isinstance(info.value, ConfigError)
        assert server.attempts == 1


@pytest.mark.usefixtures("no_litellm_call")
@pytest.mark.parametrize("status", [429, 500])
def test_rate_limits_and_server_errors_are_retried(status: int) -> None:
    for server in scripted([status, status, 200]):
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        assert call(lm).text == "fine"
        assert server.attempts == 3


@pytest.mark.usefixtures("no_litellm_call")
def test_a_lasting_outage_gives_up_after_the_retries() -> None:
    for server in scripted([503]):
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=1)
        with pytest.raises(
            LMError, match=r"^openai/m: HTTP 503: scripted 503 \(after 2 attempts\)$"
        ):
            call(lm)
        assert server.attempts == 2


@pytest.mark.usefixtures("no_litellm_call")
def test_a_timeout_is_retried() -> None:
    for server in scripted(["slow", 200]):
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=1, timeout=0.3)
        assert call(lm).text == "fine"
        assert server.attempts == 2
    for server in scripted(["slow"]):
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=1, timeout=0.3)
        with pytest.raises(LMError, match=r"timed out after 0.3 s \(after 2 attempts\)$") as info:
            call(lm)
        assert not isinstance(info.value, ConfigError)


@pytest.mark.usefixtures("no_litellm_call")
def test_a_dropped_connection_after_an_answer_is_retried() -> None:
    for server in scripted([200, "drop", 200]):
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=2)
        assert call(lm).text == "fine"
        assert call(lm).text == "fine"
        assert server.attempts == 3


@pytest.mark.usefixtures("no_litellm_call")
@pytest.mark.parametrize("step", ["garbage", 200])
def test_an_answer_without_message_text_is_an_error_not_retried(step: int | str) -> None:
    for server in scripted([step]):
        server.usage = {}
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        if step == 200:
            server.reply = None  # type: ignore[assignment]  # a null content is an empty text
            assert call(lm).text == ""
            return
        with pytest.raises(LMError, match=r"not a JSON object: <html>oops"):
            call(lm)
        assert server.attempts == 1


def test_a_refused_connection_sorts_as_an_unreachable_api_base() -> None:
    for server in scripted([200]):
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

    for server in scripted([200]):
        lm = LiteLLM("openai/m", api_base=server.api_base)
        anyio.run(many, lm)  # the first calls also check that api_base accepts connections
        before = server.connections
        anyio.run(many, lm)  # a new loop: a new session
        assert server.attempts == 18
        assert server.connections - before <= 8  # the ninth call reused a connection
        assert lm_openai._sessions == {}  # each closed when anyio.run shut its loop down
    gc.collect()  # an unclosed session or connector would warn here (warnings are errors)


# asyncio itself warns of the sockets a loop closed without its shutdown leaves open.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.usefixtures("no_litellm_call")
def test_a_loop_closed_without_its_shutdown_leaves_no_session_behind() -> None:
    for server in scripted([200]):
        lm = LiteLLM("openai/m", api_base=server.api_base)
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(lm.complete(HI)).text == "fine"
        loop.close()
        assert call(lm).text == "fine"  # forgets the closed loop's session
        assert lm_openai._sessions == {}
    del loop
    gc.collect()  # here, where those warnings are expected, not at the end of the session

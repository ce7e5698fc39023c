"""Model mistakes fail at once with one message naming the setting; outages are retried.

A local ``OpenAIStubServer`` answers with scripted HTTP statuses and records the requests it got,
so each test shows how many attempts the real litellm path made.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from rlm_core.cli import main, results_only_on_stdout
from rlm_core.errors import ConfigError, LMError
from rlm_core.interpreter import JSON
from rlm_core.lm import LiteLLM, Message
from rlm_core.testing import OpenAIStubServer, StubStep

HI = [Message(role="user", content="hi")]

# litellm's error path imports response types whose definitions make pydantic warn; this suite
# turns warnings into errors, which would replace the very failure under test.
pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier")


def serve(steps: list[StubStep]) -> OpenAIStubServer:
    """A server that handles each request with the next step (the last one repeats)."""
    return OpenAIStubServer(["fine"], steps=steps)


@pytest.fixture
def ok_server() -> Iterator[OpenAIStubServer]:
    with serve([200]) as server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(lm: LiteLLM) -> str:
    return anyio.run(lm.complete, HI).text


# ---- settings that cannot work fail before any request ------------------------------------


def test_unknown_model_string_fails_before_any_request(ok_server: OpenAIStubServer) -> None:
    lm = LiteLLM("nope/model", api_base=ok_server.api_base, sources={"model": "option --model"})
    with pytest.raises(ConfigError) as info:
        call(lm)
    message = str(info.value)
    assert message.startswith("model 'nope/model' (from option --model) is not a model litellm")
    assert "'openai/<name>' with an api_base" in message
    assert "\n" not in message
    assert len(ok_server.requests) == 0


def test_missing_api_key_names_the_variable_and_where_the_model_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    lm = LiteLLM("anthropic/claude-sonnet-4-5", sources={"model": "environment variable RLM_MODEL"})
    with pytest.raises(ConfigError) as info:
        call(lm)
    assert str(info.value) == (
        "model 'anthropic/claude-sonnet-4-5' (from environment variable RLM_MODEL) needs the "
        "environment variable ANTHROPIC_API_KEY, which is not set: export it, pass api_key, or "
        "use a local server with api_base"
    )


def test_refused_port_fails_at_once_naming_api_base() -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    lm = LiteLLM("openai/m", api_base=base, sources={"api_base": "/proj/rlm.toml"})
    with pytest.raises(ConfigError) as info:
        call(lm)
    assert str(info.value) == (
        f"api_base '{base}' (from /proj/rlm.toml) is unreachable (Connection refused): start "
        "the server there, or correct the setting"
    )


def test_silent_host_fails_after_the_connect_timeout() -> None:
    # A listener whose accept queue is full drops new SYNs, like a host that never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            lm = LiteLLM("openai/m", api_base=f"http://127.0.0.1:{port}/v1")
            lm.connect_timeout_s = 0.5
            with pytest.raises(ConfigError, match=r"is unreachable \(no connection within 0.5 s\)"):
                call(lm)
        finally:
            for filler in fillers:
                filler.close()


def test_a_busy_event_loop_does_not_make_a_live_server_unreachable(
    ok_server: OpenAIStubServer,
) -> None:
    # A batch of a hundred runs can keep the loop from looking at a socket for seconds; the
    # probe's clock must not count that against the server.
    lm = LiteLLM("openai/m", api_base=ok_server.api_base)
    lm.connect_timeout_s = 0.5
    answers: list[str] = []

    async def call() -> None:
        answers.append((await lm.complete(HI)).text)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(call)
            await anyio.lowlevel.checkpoint()  # the call starts probing the server...
            time.sleep(1.5)  # noqa: ASYNC251 - ...while the loop is blocked past its timeout

    anyio.run(main)
    assert answers == ["fine"]
    assert len(ok_server.requests) == 1


def test_malformed_api_base_is_named() -> None:
    lm = LiteLLM(
        "openai/m", api_base="127.0.0.1:8000/v1", sources={"api_base": "option --api-base"}
    )
    with pytest.raises(
        ConfigError, match=r"api_base '127.0.0.1:8000/v1' \(from option --api-base\) is not an http"
    ):
        call(lm)


# ---- the provider answered: wrong settings are not retried, outages are --------------------


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_one_attempt(status: int) -> None:
    with serve([status]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, api_key="sk-wrong", num_retries=3)
        with pytest.raises(ConfigError, match=r"refused the API key for model 'openai/m'") as info:
            call(lm)
        assert "the key came from argument api_key" in str(info.value)
        assert len(server.requests) == 1


def test_unknown_model_on_the_server_is_one_attempt() -> None:
    with serve([404]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        with pytest.raises(ConfigError, match=r"model 'openai/m' was not found by the provider"):
            call(lm)
        assert len(server.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_until_an_answer(status: int) -> None:
    with serve([status, status, 200]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=3)
        assert call(lm) == "fine"
        assert len(server.requests) == 3


def test_a_lasting_outage_gives_up_after_the_retries() -> None:
    with serve([503]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=2)
        with pytest.raises(LMError, match=r"\(after 3 attempts\)$") as info:
            call(lm)
        assert not isinstance(info.value, ConfigError)
        assert len(server.requests) == 3


def test_lost_connection_after_an_answer_is_retried_not_a_setting_error() -> None:
    with serve([200]) as server:
        lm = LiteLLM("openai/m", api_base=server.api_base, num_retries=1)
        assert call(lm) == "fine"
    with pytest.raises(LMError, match=r"lost the connection.*\(after 2 attempts\)") as info:
        call(lm)
    assert not isinstance(info.value, ConfigError)


# ---- through the command line: the source is the option, variable or file ------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("RLM_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("some text\n")
    return tmp_path


def test_cli_names_the_environment_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RLM_MODEL", "nope/model")
    status = main(["run", "notes.txt", "-q", "?", "-i", "mock"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith(
        "rlm: model 'nope/model' (from environment variable RLM_MODEL) is not a model litellm"
    )


def test_cli_names_the_project_file_and_the_option(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "rlm.toml").write_text('model = "openai/m"\n')
    base = f"http://127.0.0.1:{free_port()}/v1"
    status = main(["run", "notes.txt", "-q", "?", "-i", "mock", "--api-base", base])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.strip().splitlines()[-1] == (
        f"rlm: api_base '{base}' (from option --api-base) is unreachable (Connection refused): "
        "start the server there, or correct the setting"
    )
    (project / "rlm.toml").write_text('model = "nope/m"\n')
    with serve([200]) as server:
        assert (
            main(["run", "notes.txt", "-q", "?", "-i", "mock", "--api-base", server.api_base]) == 2
        )
        assert len(server.requests) == 0
    assert f"model 'nope/m' (from {project / 'rlm.toml'})" in capsys.readouterr().err


# ---- nothing but the result on stdout -------------------------------------------------------


def test_json_output_stays_one_document_when_a_call_is_retried(project: Path) -> None:
    # litellm prints banners on stdout for every failed call unless told not to.
    reply = "```python\nSUBMIT(str(len(context)))\n```"
    with OpenAIStubServer([reply], steps=[503, 200]) as server:
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("rlm")),
                "run",
                "notes.txt",
                "-q",
                "how long?",
                "--json",
                "-i",
                "mock",
                "-m",
                "openai/stub",
                "--api-base",
                server.api_base,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    assert len(server.requests) == 2
    assert json.loads(done.stdout)["outputs"] == {"answer": "10"}


def test_prints_inside_a_command_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with results_only_on_stdout() as out:
        print("a library's banner")
        print("the result", file=out)
    captured = capsys.readouterr()
    assert captured.out == "the result\n"
    assert captured.err == "a library's banner\n"


# ---- the stub server's steps, which the tests above script ---------------------------------


def post(server: OpenAIStubServer) -> tuple[int, bytes]:
    """One chat request on a connection of its own: the status and body of the answer."""
    connection = http.client.HTTPConnection(server.api_base.split("/")[2], timeout=30)
    try:
        request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        connection.request("POST", "/v1/chat/completions", json.dumps(request), {"X-Trace": "t"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_stub_server_takes_its_steps_in_order_and_records_each_request() -> None:
    usage: dict[str, JSON] = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    steps: list[StubStep] = [503, "garbage", "drop", 200]
    with OpenAIStubServer(["one", "two"], steps=steps, usage=usage) as server:
        status, body = post(server)
        assert (status, json.loads(body)) == (503, {"error": {"message": "scripted 503"}})
        assert post(server) == (200, b"<html>oops")
        with pytest.raises(ConnectionError):
            post(server)
        # Only answers use up replies; the last step and the last reply repeat.
        for reply in ("one", "two", "two"):
            status, body = post(server)
            answer = json.loads(body)
            assert (status, answer["choices"][0]["message"]["content"]) == (200, reply)
            assert answer["usage"] == usage
    assert len(server.requests) == 6
    assert server.requests[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert server.paths == ["/v1/chat/completions"] * 6
    assert [headers["x-trace"] for headers in server.headers] == ["t"] * 6
    assert server.connections == 6


@pytest.mark.parametrize("steps", [[], ["hang"], [99], [True]])
def test_the_stub_server_refuses_a_step_it_cannot_take(steps: list[Any]) -> None:
    with pytest.raises(ValueError, match=r"step"):
        OpenAIStubServer(steps=steps)

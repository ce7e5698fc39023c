"""A lean path for chat completions from an OpenAI-compatible server at an ``api_base``.

litellm costs about 5 ms of host CPU per call (its logging, price lookups, and the OpenAI SDK's
request building), which a batch pays thousands of times. For ``openai/<name>`` with an
``api_base`` on asyncio, :class:`rlm_core.lm.LiteLLM` posts here instead, through one
keep-alive aiohttp session per event loop, with the request body litellm would have sent and
the price from litellm's price map. Failures are raised as exceptions that
:func:`rlm_core.lm_failures.classify` sorts exactly like litellm's. Every other provider, and
any parameter this path does not know, stays on litellm.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp

from rlm_core.errors import LMError

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Route",
    "chat",
    "litellm_hooks_set",
    "price_usd",
    "prime",
    "reply_text",
    "route",
    "tokens",
]

# Request parameters that mean the same to every OpenAI-compatible server; anything else
# (extra_headers, tools, caching, mock_response...) is litellm's to handle.
_PLAIN_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "n",
        "stop",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
        "seed",
        "reasoning_effort",
    }
)
_MAX_DETAIL_CHARS = 300


class APIStatusError(Exception):
    """The server answered with an HTTP error status (``status_code``), as litellm's errors do."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class APIConnectionError(ConnectionError):
    """No connection, or it broke before the answer was read (the cause says how)."""


class APITimeoutError(TimeoutError):
    """The server took longer than the request's timeout to answer."""


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """Where and what to post for one model: decided once, on its first call."""

    url: str
    model: str
    """The model name the server sees (the string without its ``openai/`` prefix)."""
    params: Mapping[str, Any]
    """The body fields litellm would add for this model (``max_tokens`` becomes
    ``max_completion_tokens`` for reasoning models, for instance)."""
    headers: Mapping[str, str] = dataclasses.field(repr=False)  # holds the API key
    proxy: str | None = None
    """The proxy from ``HTTP(S)_PROXY`` for this URL (None when none, or ``NO_PROXY`` says so)."""

    async def post(
        self, messages: Sequence[Mapping[str, object]], timeout: float | None
    ) -> dict[str, Any]:
        """:func:`chat` on this route."""
        return await chat(self, messages, timeout)


# litellm features that act on every call it makes; while any is set, calls stay with litellm.
_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_input_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


def litellm_hooks_set(litellm: Any) -> bool:
    """Whether the user gave litellm callbacks (logging, tracing) or a cache to apply to calls."""
    if getattr(litellm, "cache", None) is not None:
        return True
    return any(getattr(litellm, name, None) for name in _CALLBACK_LISTS)


def route(
    litellm: Any,
    model: str,
    *,
    api_base: str | None,
    api_key: str | None,
    params: Mapping[str, Any],
) -> Route | None:
    """The direct route for ``model``, or None when litellm must make the call.

    Direct means litellm itself would send the call to an OpenAI-compatible ``api_base``
    with plain parameters, and no litellm-wide setting that this path does not copy (an
    organization) would change the request.
    """
    if not api_base or any(key not in _PLAIN_PARAMS for key in params):
        return None
    if getattr(litellm, "organization", None) or os.environ.get("OPENAI_ORGANIZATION"):
        return None
    try:
        name, provider, _, _ = litellm.get_llm_provider(model=model, api_base=api_base)
        body = dict(litellm.get_optional_params(model=name, custom_llm_provider=provider, **params))
    except Exception:  # litellm will raise the same error, worded its way, on the call
        return None
    if provider != "openai":
        return None
    extra = body.pop("extra_body", None) or {}
    body.pop("stream", None)
    body.update(extra)
    # litellm's order for the OpenAI provider: the argument, its globals, the environment.
    key = (
        api_key
        or getattr(litellm, "api_key", None)
        or getattr(litellm, "openai_key", None)
        or os.environ.get("OPENAI_API_KEY")
    )
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = api_base.rstrip("/") + "/chat/completions"
    return Route(url=url, model=name, params=body, headers=headers, proxy=_env_proxy(url))


def _env_proxy(url: str) -> str | None:
    """The ``HTTP(S)_PROXY`` for ``url`` unless ``NO_PROXY`` exempts it, as litellm honours.

    Looked up once per route: aiohttp's ``trust_env`` does it on a worker thread per request.
    """
    split = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(split.scheme)
    if proxy is None or urllib.request.proxy_bypass(split.hostname or ""):
        return None
    return proxy


async def chat(
    target: Route, messages: Sequence[Mapping[str, object]], timeout: float | None
) -> dict[str, Any]:
    """Post one chat completion; returns the server's JSON object.

    Raises:
        APIStatusError: The server answered with an error status.
        APIConnectionError: No connection, or it broke before the answer was read.
        APITimeoutError: No answer within ``timeout`` seconds.
        LMError: The answer is not a JSON object.
    """
    body = json.dumps({"model": target.model, "messages": list(messages), **target.params})
    session = await _session()
    try:
        async with session.post(
            target.url,
            data=body.encode(),
            headers=target.headers,
            proxy=target.proxy,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            data = await response.read()
    except aiohttp.ConnectionTimeoutError as exc:  # before connecting: unreachable, not slow
        raise APIConnectionError(f"Connection error: {_describe(exc)}") from exc
    except TimeoutError as exc:  # aiohttp's socket-read and total timeouts are TimeoutErrors
        after = "" if timeout is None else f" after {timeout:g} s"
        raise APITimeoutError(f"Request timed out{after}") from exc
    except aiohttp.ClientError as exc:
        raise APIConnectionError(f"Connection error: {_describe(exc)}") from exc
    if status >= 400:
        raise APIStatusError(status, f"HTTP {status}: {_error_message(data)}")
    try:
        decoded = json.loads(data)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        raise LMError(f"{target.model}: the server's answer is not a JSON object: {_first(data)}")
    return decoded


def reply_text(answer: Mapping[str, Any]) -> str | None:
    """The first choice's message text ("" for a null content), or None when there is none."""
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if content is None:
        return ""
    return content if isinstance(content, str) else None


def tokens(answer: Mapping[str, Any]) -> tuple[int, int]:
    """Prompt and completion tokens from the answer's ``usage`` (0 where missing)."""
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def prime(litellm: Any) -> None:
    """Run litellm's parameter and price code once, so it imports what it imports lazily.

    That takes about 0.3 s on the first call; done on the thread importing litellm, it keeps
    the first call's event loop from stalling.
    """
    with contextlib.suppress(Exception):  # a failure here only means no warm-up
        route(
            litellm, "openai/gpt-4o-mini", api_base="http://127.0.0.1/v1", api_key=None, params={}
        )
        litellm.cost_per_token(
            model="gpt-4o-mini", custom_llm_provider="openai", prompt_tokens=1, completion_tokens=1
        )


# ---- prices ------------------------------------------------------------------------------

_unpriced: set[str] = set()
_unpriced_map_size = -1


def price_usd(litellm: Any, model: str, answer: Mapping[str, Any]) -> float | None:
    """What the call cost in USD by litellm's price map, or None for a model it has no price for.

    The same figure litellm reports as ``response_cost`` for an ``openai/<model>`` call. A
    model found unpriced is remembered (until the price map changes size, as
    ``litellm.register_model`` makes it), because a failed lookup walks the whole map.
    """
    global _unpriced_map_size
    size = len(getattr(litellm, "model_cost", ()) or ())
    if size != _unpriced_map_size:
        _unpriced.clear()
        _unpriced_map_size = size
    if model in _unpriced:
        return None
    prompt, completion = tokens(answer)
    usage = answer.get("usage")
    kwargs: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if isinstance(usage, dict) and any(k.endswith("_details") for k in usage):
        # Cached, audio and reasoning tokens have prices of their own: let litellm read them.
        with contextlib.suppress(Exception):  # an odd block still has its plain counts
            kwargs["usage_object"] = litellm.Usage(**usage)
    try:
        prompt_usd, completion_usd = litellm.cost_per_token(
            model=model, custom_llm_provider="openai", **kwargs
        )
    except Exception:  # litellm raises for models missing from its price map
        _unpriced.add(model)
        return None
    return float(prompt_usd) + float(completion_usd)


# ---- one keep-alive session per event loop -------------------------------------------------


@dataclasses.dataclass
class _Held:
    session: aiohttp.ClientSession
    closer: AsyncIterator[None]


_sessions: dict[asyncio.AbstractEventLoop, _Held] = {}
_sessions_lock = threading.Lock()

# As litellm's own aiohttp transport: many connections (a batch holds hundreds of calls in
# flight), kept alive between calls.
_CONNECTIONS = 1000
_CONNECTIONS_PER_HOST = 500
_KEEPALIVE_S = 120.0


async def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    held = _sessions.get(loop)
    if held is not None and not held.session.closed:
        return held.session
    connector = aiohttp.TCPConnector(
        limit=_CONNECTIONS, limit_per_host=_CONNECTIONS_PER_HOST, keepalive_timeout=_KEEPALIVE_S
    )
    session = aiohttp.ClientSession(connector=connector)  # each Route carries its proxy
    closer = _close_when_the_loop_ends(loop, session)
    # Its first step registers it with the loop, whose shutdown (asyncio.run, anyio.run)
    # closes every async generator still open: so the session closes with its loop.
    await closer.__anext__()
    with _sessions_lock:
        _forget_closed_loops()
        _sessions[loop] = _Held(session, closer)
    return session


async def _close_when_the_loop_ends(
    loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession
) -> AsyncIterator[None]:
    try:
        yield
    finally:
        with _sessions_lock:
            held = _sessions.get(loop)
            if held is not None and held.session is session:
                del _sessions[loop]
        await session.close()


def _forget_closed_loops() -> None:
    """Drop sessions of loops closed without a shutdown (``loop.close()`` alone)."""
    for loop in [loop for loop in _sessions if loop.is_closed()]:
        held = _sessions.pop(loop)
        connector = held.session.connector
        # No loop is left to await close() on: detach the connector and close it the way
        # aiohttp's own finalizer does, so neither warns "Unclosed ..." when collected.
        held.session.detach()
        if connector is not None:
            connector._close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        reason = os.strerror(errno) if isinstance(errno, int) else _describe(exc.os_error)
        return f"cannot connect to {exc.host}:{exc.port} ({reason})"
    text = str(exc).strip()
    return text.splitlines()[0][:_MAX_DETAIL_CHARS] if text else type(exc).__name__


def _error_message(data: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body's first line."""
    try:
        decoded = json.loads(data)
    except ValueError:
        return _first(data)
    if isinstance(decoded, dict):
        error = decoded.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message.strip():
            return message.strip().splitlines()[0][:_MAX_DETAIL_CHARS]
    return _first(data)


def _first(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text.splitlines()[0][:_MAX_DETAIL_CHARS] if text else "(empty body)"

"""Telling a wrong model setting from a passing outage, and saying which setting is wrong.

Before its first request, :class:`rlm_core.lm.LiteLLM` checks its settings here: that litellm
knows the model string, that the provider's API key is set (both first from litellm's files,
before the import that takes seconds, then with litellm itself), and that ``api_base``
accepts a connection. Failed calls are sorted by :func:`classify`: a setting the provider refused (a
key, a model name) or a provider never reached fails at once with a :class:`ConfigError`
naming the setting, its value and where it came from; rate limits, server errors, timeouts and
lost connections to a provider that answered before are transient and retried.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from rlm_core import lm_catalog
from rlm_core.errors import ConfigError, LMError, RLMError

__all__ = [
    "Failure",
    "ModelSettings",
    "backoff_s",
    "check_reachable",
    "check_settings",
    "check_settings_before_import",
    "classify",
]

_CONNECTION_ERROR_NAMES = frozenset({"APIConnectionError", "ConnectError", "ConnectTimeout"})
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
_MAX_DETAIL_CHARS = 300


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """What a model call was configured with, and where each setting came from."""

    model: str
    api_base: str | None
    api_key_given: bool
    sources: Mapping[str, str]

    def describe(self, setting: str) -> str:
        """``model 'x' (from option --model)``: the setting, its value and its source."""
        value = self.model if setting == "model" else self.api_base
        where = self.sources.get(setting)
        return f"{setting} {value!r}" + (f" (from {where})" if where else "")


@dataclasses.dataclass(frozen=True)
class Failure:
    """How a failed call is handled: retried (transient) or reported at once."""

    transient: bool
    answered: bool
    """The provider sent a response, so it is reachable (later lost connections are retried)."""
    message: str
    setting_is_wrong: bool

    def error(self, suffix: str = "") -> RLMError:
        """The exception to raise when the call gives up."""
        kind = ConfigError if self.setting_is_wrong else LMError
        return kind(self.message + suffix)


def check_settings(litellm: Any, settings: ModelSettings) -> None:
    """Fail fast on a model string litellm does not know, or a missing API key.

    Raises:
        ConfigError: Naming the setting, its value and where it came from.
    """
    _check_model_known(litellm, settings)
    _check_key_present(litellm, settings)


def check_settings_before_import(settings: ModelSettings) -> None:
    """The checks of :func:`check_settings` that litellm's files answer without importing it.

    Raises:
        ConfigError: Naming the setting, its value and where it came from.
    """
    if lm_catalog.model_is_unknown(settings.model, settings.api_base):
        raise _unknown_model(settings)
    if not (settings.api_key_given or settings.api_base):
        missing = lm_catalog.missing_key_variables(settings.model)
        if missing:
            raise _missing_key(settings, missing)


def _check_model_known(litellm: Any, settings: ModelSettings) -> None:
    try:
        litellm.get_llm_provider(model=settings.model, api_base=settings.api_base)
    except Exception:  # litellm raises BadRequestError, but any failure means the same here
        raise _unknown_model(settings) from None


def _unknown_model(settings: ModelSettings) -> ConfigError:
    return ConfigError(
        f"{settings.describe('model')} is not a model litellm knows: start it with the "
        "provider, as in 'openai/gpt-4o-mini' or 'anthropic/claude-sonnet-4-5', or use "
        "'openai/<name>' with an api_base for a local OpenAI-compatible server"
    )


def _missing_key(settings: ModelSettings, variables: Sequence[str]) -> ConfigError:
    return ConfigError(
        f"{settings.describe('model')} needs the environment variable {' or '.join(variables)}, "
        "which is not set: export it, pass api_key, or use a local server with api_base"
    )


def _check_key_present(litellm: Any, settings: ModelSettings) -> None:
    if settings.api_key_given or settings.api_base:
        return  # an explicit key, or a server of the user's own that may need none
    try:
        report = litellm.validate_environment(model=settings.model)
    except Exception:  # litellm cannot tell for this provider; the call itself will say
        return
    missing = [key for key in report.get("missing_keys") or () if isinstance(key, str)]
    # Only plain API-key variables: cloud credentials (AWS, Vertex) have other sources, such
    # as profiles and instance roles, that this check cannot see.
    if report.get("keys_in_environment") or not missing:
        return
    if all(key.endswith("_API_KEY") for key in missing):
        raise _missing_key(settings, missing)


async def check_reachable(settings: ModelSettings, timeout_s: float) -> None:
    """Fail fast when ``api_base`` is set and accepts no connection (needs no litellm).

    Raises:
        ConfigError: Naming the setting, its value, where it came from and why.
    """
    if not settings.api_base:
        return
    url = urllib.parse.urlsplit(settings.api_base or "")
    try:
        port = url.port
    except ValueError:
        port = -1
    if url.scheme not in ("http", "https") or not url.hostname or port == -1:
        raise ConfigError(
            f"{settings.describe('api_base')} is not an http(s) URL such as "
            "'http://127.0.0.1:8000/v1'"
        )
    if _proxied(url.scheme, url.hostname):
        return  # the request goes through the proxy; connecting directly proves nothing
    if time.monotonic() - _last_reached.get(settings.api_base, -_REACHED_TTL_S) < _REACHED_TTL_S:
        return  # every row of a batch starts a model; one connection proves it for a while
    address = (url.hostname, port or _DEFAULT_PORTS[url.scheme])
    reason = ""
    try:
        # A blocking connect on a worker thread: the clock then measures the network, not how
        # busy this event loop is (a batch of a hundred runs kept it from noticing a loopback
        # connection for over 3 s, and rows failed with a healthy server "unreachable").
        await anyio.to_thread.run_sync(_connect, address, timeout_s)
    except TimeoutError:
        reason = f"no connection within {timeout_s:g} s"
    except OSError as exc:
        reason = _root_reason(exc)
    else:
        _last_reached[settings.api_base] = time.monotonic()
        return
    raise ConfigError(
        f"{settings.describe('api_base')} is unreachable ({reason}): start the server there, "
        "or correct the setting"
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}
_REACHED_TTL_S = 300.0
_last_reached: dict[str, float] = {}
"""When each ``api_base`` last accepted a connection (monotonic seconds)."""


def _connect(address: tuple[str, int], timeout_s: float) -> None:
    socket.create_connection(address, timeout=timeout_s).close()


def _proxied(scheme: str, host: str) -> bool:
    proxies = urllib.request.getproxies()
    return scheme in proxies and not urllib.request.proxy_bypass(host)


def classify(exc: BaseException, settings: ModelSettings, *, answered: bool) -> Failure:
    """Sort a failed call: a wrong setting, a provider never reached, or a passing outage.

    Args:
        exc: What litellm raised.
        settings: The call's settings, for the message.
        answered: Whether the provider has answered an earlier call.
    """
    status = _status(exc)
    detail = _detail(exc)
    if _is_connection_failure(exc):
        if not answered:
            target = (
                settings.describe("api_base")
                if settings.api_base
                else f"the provider of {settings.describe('model')}"
            )
            reason = _root_reason(exc)
            return Failure(False, False, f"{target} is unreachable ({reason})", True)
        return Failure(True, False, f"{settings.model}: lost the connection: {detail}", False)
    if status in (401, 403):
        key = settings.sources.get("api_key", "the provider's key variable in the environment")
        return Failure(
            False,
            True,
            f"the provider refused the API key for {settings.describe('model')} (the key came "
            f"from {key}): {detail}",
            True,
        )
    if status == 404:
        where = (
            f" at {settings.describe('api_base')} (check the model name, and that api_base is "
            "the URL that /chat/completions is appended to, often ending in /v1)"
            if settings.api_base
            else ""
        )
        message = f"{settings.describe('model')} was not found by the provider{where}: {detail}"
        return Failure(False, True, message, True)
    if status is not None and (status in _TRANSIENT_STATUS or status >= 500):
        return Failure(True, True, f"{settings.model}: {detail}", False)
    if status is None and _is_timeout(exc):
        return Failure(True, False, f"{settings.model}: {detail}", False)
    return Failure(False, status is not None, f"{settings.model}: {detail}", False)


def backoff_s(attempt: int) -> float:
    """Seconds to wait before retry ``attempt + 1``: exponential, jittered, capped at 8 s."""
    return float(min(8.0, 0.5 * 2**attempt) * random.uniform(0.8, 1.2))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_connection_failure(exc: BaseException) -> bool:
    # litellm reports a refused connection as APIConnectionError or, for OpenAI-compatible
    # servers, as InternalServerError("Connection error."); the cause chain says which it was.
    for link in _chain(exc):
        if isinstance(link, ConnectionError) or type(link).__name__ in _CONNECTION_ERROR_NAMES:
            return True
        if str(link).rstrip(".").endswith("Connection error"):
            return True
    return False


def _is_timeout(exc: BaseException) -> bool:
    return any(
        isinstance(link, TimeoutError) or "Timeout" in type(link).__name__ for link in _chain(exc)
    )


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) and 100 <= status < 600 else None


def _detail(exc: BaseException) -> str:
    """The first line of litellm's message, without its repeated class-name prefixes."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("litellm.", type(exc).__name__ + ":", "litellm.", type(exc).__name__ + ":"):
        text = text.removeprefix(prefix).strip()
    return text[:_MAX_DETAIL_CHARS]


def _root_reason(exc: BaseException) -> str:
    """The most specific reason in the chain: "Connection refused" beats "Connection error"."""
    for link in reversed(_chain(exc)):
        if isinstance(link, OSError) and isinstance(link.errno, int):
            return os.strerror(link.errno)  # asyncio's strerror is "Connect call failed (...)"
    return _detail(_chain(exc)[-1]) or "connection failed"

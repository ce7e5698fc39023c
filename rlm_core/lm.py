"""Language models: the small async protocol the loop calls, and its litellm implementation.

Any litellm model string works (``"openai/gpt-4o-mini"``, ``"anthropic/..."``, or a local
OpenAI-compatible server with ``api_base=``). Each call reports its token usage and its cost in
USD from litellm's price map. litellm is imported on first use, because importing it is slow.
Calls to an OpenAI-compatible ``api_base`` skip litellm's per-call work (``rlm_core.lm_openai``).
Mistakes in the settings (a model litellm does not know, a missing key, an unreachable server)
fail on the first call, at once, naming the setting and where it came from; transient errors
from a provider that answered are retried (``rlm_core.lm_failures`` sorts them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

import anyio

from rlm_core import lm_failures
from rlm_core.errors import ConfigError, LMError

if TYPE_CHECKING:
    from rlm_core import lm_openai  # imported on the first call: it imports aiohttp

__all__ = ["LM", "Completion", "LiteLLM", "Message", "Usage", "resolve_lm"]


class Message(TypedDict):
    """One chat message."""

    role: str
    content: str


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost of one model call; ``cost_usd`` is None when the price is unknown."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclasses.dataclass(frozen=True, slots=True)
class Completion:
    """A model's reply and what it cost."""

    text: str
    usage: Usage = Usage()
    model: str = ""


@runtime_checkable
class LM(Protocol):
    """What the loop needs from a language model (a Protocol: any object with these fits)."""

    @property
    def model(self) -> str:
        """The model's name, used in usage summaries."""
        ...

    async def complete(self, messages: Sequence[Message]) -> Completion:
        """Answer a chat.

        Raises:
            LMError: The call failed after its retries.
        """
        ...


class LiteLLM:
    """A model reached through litellm.

    Args:
        model: Any litellm model string, e.g. ``"openai/gpt-4o-mini"``; for a local
            OpenAI-compatible server use ``"openai/<name>"`` with ``api_base``.
        api_base: Base URL of the server, such as ``"http://127.0.0.1:8000/v1"``.
        api_key: The key; litellm reads the provider's usual variable when omitted. A local
            server (``api_base`` set) with no key gets a placeholder, since most ignore it.
        num_retries: Retries of a call that failed transiently (rate limits, server errors,
            timeouts, lost connections to a provider that answered before), with backoff.
            Setting mistakes are never retried.
        timeout: Seconds per request.
        direct: Send calls for an OpenAI-compatible ``api_base`` (``openai/<name>``) straight
            to it, with the request and price litellm would use, at a fraction of litellm's
            host CPU per call (``rlm_core.lm_openai``). False sends every call through litellm.
            Calls go through litellm anyway while litellm callbacks or a litellm cache are set.
        sources: Where ``model``, ``api_base`` and ``api_key`` came from (``"option --model"``,
            ``"environment variable RLM_MODEL"``...), named by error messages.
        **params: Passed through to ``litellm.acompletion`` (``temperature``, ``max_tokens``...).
    """

    connect_timeout_s = 3.0
    """How long the first call waits for ``api_base`` to accept a connection."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        num_retries: int = 3,
        timeout: float | None = 600.0,
        direct: bool = True,
        sources: Mapping[str, str] | None = None,
        **params: Any,
    ) -> None:
        if not _nonempty_str(model):
            raise ConfigError("the model must be a litellm model string such as 'openai/gpt-4o'")
        self._model = model
        self.api_base = api_base
        self.api_key = api_key
        self.sources = dict(sources or {})
        if api_key is not None:
            self.sources.setdefault("api_key", "argument api_key")
        if api_base and api_key is None and not os.environ.get("OPENAI_API_KEY"):
            self.api_key = "sk-local"
            self.sources["api_key"] = "a placeholder (api_base is set and no key was given)"
        self.num_retries = num_retries
        self.timeout = timeout
        self.direct = direct
        self.params = params
        self._settings_checked = False  # the first call checks model, key and api_base
        self._provider_answered = False  # after that, a lost connection is worth a retry
        self._route: lm_openai.Route | None = None  # litellm's path, or the lean one
        self._route_decided = False  # on the first call

    @property
    def model(self) -> str:
        """The litellm model string."""
        return self._model

    def __repr__(self) -> str:
        base = f", api_base={self.api_base!r}" if self.api_base else ""
        return f"LiteLLM({self._model!r}{base})"

    def warm_up(self) -> None:
        """Start importing litellm (seconds) on a background thread, e.g. while a sandbox boots."""
        global _import_started
        with _import_lock:
            if _import_started or _litellm_module is not None:
                return
            _import_started = True
        threading.Thread(target=import_litellm, name="rlm-import-litellm", daemon=True).start()

    async def complete(self, messages: Sequence[Message]) -> Completion:
        """Call the model once (plus retries of transient failures).

        Raises:
            ConfigError: A setting is wrong (unknown model, missing or rejected key,
                unreachable ``api_base``); raised on the first call, without retries.
            LMError: The call failed, after its retries if the failure was transient.
        """
        settings = self._settings()
        if not self._settings_checked:  # before the import, which can take many seconds
            lm_failures.check_settings_before_import(settings)
            await lm_failures.check_reachable(settings, self.connect_timeout_s)
        # The first import takes seconds; do it on a worker thread so the event loop runs on.
        litellm = _litellm_module or await anyio.to_thread.run_sync(import_litellm)
        if not self._settings_checked:
            lm_failures.check_settings(litellm, settings)
            self._settings_checked = True
        direct = self._direct_route(litellm)
        attempt = 0
        while True:
            try:
                if direct is not None:
                    answer = await direct.post(messages, self.timeout)
                else:
                    response = await self._litellm_call(litellm, messages)
                self._provider_answered = True
                break
            except Exception as exc:  # both paths raise what lm_failures.classify sorts
                failure = lm_failures.classify(exc, settings, answered=self._provider_answered)
                if failure.transient:
                    self._provider_answered = self._provider_answered or failure.answered
                if not failure.transient or attempt >= self.num_retries:
                    tries = f" (after {attempt + 1} attempts)" if attempt else ""
                    raise failure.error(tries) from exc
            await anyio.sleep(lm_failures.backoff_s(attempt))
            attempt += 1
        if direct is not None:
            return self._direct_completion(litellm, direct, answer)
        try:
            text = response.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError) as exc:
            raise LMError(f"{self._model}: the response has no message text") from exc
        return Completion(text=str(text), usage=_usage(litellm, response), model=self._model)

    def _direct_route(self, litellm: Any) -> lm_openai.Route | None:
        """The lean route for this model on this event loop, or None for litellm's path."""
        from rlm_core import lm_openai  # imports aiohttp, which litellm has imported by now

        if not self._route_decided:
            self._route_decided = True
            if not self.direct:
                return None
            self._route = lm_openai.route(
                litellm,
                self._model,
                api_base=self.api_base,
                api_key=self.api_key,
                params=self.params,
            )
        if self._route is None or lm_openai.litellm_hooks_set(litellm):
            return None
        try:  # aiohttp needs asyncio; under trio, litellm's path (anyio runs both)
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._route

    async def _litellm_call(self, litellm: Any, messages: Sequence[Message]) -> Any:
        kwargs: dict[str, Any] = dict(self.params)
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        # Retries are ours (litellm's and the provider SDK's are off): they cannot tell a
        # wrong setting from a passing outage, and they add minutes to a typo.
        return await litellm.acompletion(
            model=self._model,
            messages=list(messages),
            num_retries=0,
            max_retries=0,
            timeout=self.timeout,
            **kwargs,
        )

    def _direct_completion(
        self, litellm: Any, direct: lm_openai.Route, answer: dict[str, Any]
    ) -> Completion:
        from rlm_core import lm_openai

        text = lm_openai.reply_text(answer)
        if text is None:
            raise LMError(f"{self._model}: the response has no message text")
        prompt, completion = lm_openai.tokens(answer)
        usage = Usage(prompt, completion, lm_openai.price_usd(litellm, direct.model, answer))
        return Completion(text=text, usage=usage, model=self._model)

    def _settings(self) -> lm_failures.ModelSettings:
        return lm_failures.ModelSettings(
            model=self._model,
            api_base=self.api_base,
            api_key_given=self.api_key is not None,
            sources=self.sources,
        )


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


_litellm_module: Any = None  # set once the import has finished (sys.modules has it earlier)
_import_lock = threading.Lock()
_import_started = False


def import_litellm() -> Any:
    """Import litellm without letting it fetch its price map from the network."""
    global _litellm_module
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    # Its "Give Feedback" and "Provider List" banners are printed to stdout on every failed
    # call; our errors say what to do, and stdout belongs to the caller's result.
    litellm.suppress_debug_info = True
    from rlm_core import lm_openai  # its aiohttp is litellm's own dependency, imported by now

    lm_openai.prime(litellm)  # here, off the event loop
    _litellm_module = litellm
    return litellm


def _usage(litellm: Any, response: Any) -> Usage:
    raw = getattr(response, "usage", None)
    prompt = int(getattr(raw, "prompt_tokens", 0) or 0)
    completion = int(getattr(raw, "completion_tokens", 0) or 0)
    cost: float | None = None
    hidden = getattr(response, "_hidden_params", None) or {}
    if isinstance(hidden, dict) and "response_cost" in hidden:
        # litellm priced the call while logging it; None there means the model has no price,
        # and asking again costs milliseconds of failed price-map lookups per call.
        known = hidden["response_cost"]
        cost = float(known) if isinstance(known, int | float) else None
    else:
        try:
            cost = float(litellm.completion_cost(completion_response=response))
        except Exception:  # models missing from the price map (local servers) have no price
            cost = None
    return Usage(prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost)


# DSPy's LM keeps its litellm arguments in ``kwargs``; these are the ones that mean the same
# thing to litellm.acompletion.
_DSPY_PASSTHROUGH = ("temperature", "max_tokens", "top_p", "stop", "api_base", "api_key")


def resolve_lm(
    lm: object, *, api_base: str | None = None, sources: Mapping[str, str] | None = None
) -> LM:
    """Turn what a user passed as a model into an :class:`LM`.

    Accepts an :class:`LM`, a litellm model string, or a ``dspy.LM`` (its model string and
    litellm arguments are reused, so its provider configuration carries over). ``sources``
    says where the model string and ``api_base`` came from, for error messages.

    Raises:
        ConfigError: The object is none of those.
    """
    if isinstance(lm, str):
        return LiteLLM(lm, api_base=api_base, sources=sources)
    if isinstance(lm, LM):
        return lm
    model = getattr(lm, "model", None)
    kwargs = getattr(lm, "kwargs", None)
    if type(lm).__module__.split(".")[0] == "dspy" and isinstance(model, str):
        params = {k: v for k, v in (kwargs or {}).items() if k in _DSPY_PASSTHROUGH}
        params.setdefault("api_base", api_base)
        retries = getattr(lm, "num_retries", 3)
        return LiteLLM(model, num_retries=int(retries), **params)
    raise ConfigError(
        f"cannot use a {type(lm).__name__} as a model; pass a litellm model string such as "
        "'openai/gpt-4o-mini', a dspy.LM, or an object with `model` and `async complete()`"
    )

"""What the installed litellm knows, read from its files without importing it.

Importing litellm costs seconds, so a misspelled model string or a missing API key would take
that long to report. Its provider names, its priced models and (for the common providers) the
variable holding the key are read here from the package's own files instead, so those
mistakes are answered at once. Every verdict is conservative: where this module cannot tell,
it says nothing, and litellm's own check runs after the import.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import ipaddress
import json
import os
import urllib.parse
from pathlib import Path

__all__ = ["KEY_VARIABLES", "missing_key_variables", "model_is_unknown"]

KEY_VARIABLES: dict[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY",),
    "gemini": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY",),
    "xai": ("XAI_API_KEY",),
}
"""The variables a provider's key is read from (any one will do), as litellm's
``validate_environment`` names them; a test keeps this table in step with it."""


def model_is_unknown(model: str, api_base: str | None) -> bool:
    """Whether litellm surely cannot map ``model`` to a provider (False when it may).

    A model is known when it starts with a provider's name (``openai/...``) or is one of the
    models litellm has a price for (``gpt-4o``). litellm also recognises hosted servers by
    their URL, so with an ``api_base`` that is not on this machine the answer is left to it.
    """
    providers, models = _providers(), _priced_models()
    if providers is None or models is None or model in models:
        return False
    prefix, slash, _ = model.partition("/")
    if slash and prefix in providers:
        return False
    return not api_base or _on_this_machine(api_base)


def missing_key_variables(model: str) -> tuple[str, ...]:
    """The key variables ``model``'s provider reads when none of them is set, else ``()``."""
    provider = _provider_of(model)
    names = KEY_VARIABLES.get(provider or "", ())
    if any(os.environ.get(name) for name in names):
        return ()
    return names


def _provider_of(model: str) -> str | None:
    prefix, slash, _ = model.partition("/")
    providers = _providers() or frozenset()
    if slash and prefix in providers:
        return prefix
    entry = (_price_map() or {}).get(model)
    provider = entry.get("litellm_provider") if isinstance(entry, dict) else None
    return provider if isinstance(provider, str) else None


def _on_this_machine(api_base: str) -> bool:
    host = urllib.parse.urlsplit(api_base).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def _package_dir() -> Path | None:
    # find_spec of a top-level name locates the package without running its __init__.
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _price_map() -> dict[str, object] | None:
    root = _package_dir()
    if root is None:
        return None
    try:
        data = json.loads((root / "model_prices_and_context_window_backup.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@functools.cache
def _priced_models() -> frozenset[str] | None:
    prices = _price_map()
    return None if prices is None else frozenset(prices)


@functools.cache
def _providers() -> frozenset[str] | None:
    """The ``LlmProviders`` enum's values plus the providers litellm configures by JSON."""
    root = _package_dir()
    if root is None:
        return None
    try:
        tree = ast.parse((root / "types" / "utils.py").read_text())
        registry = json.loads((root / "llms" / "openai_like" / "providers.json").read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    names = set(registry) if isinstance(registry, dict) else set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "LlmProviders":
            names.update(
                statement.value.value
                for statement in node.body
                if isinstance(statement, ast.Assign)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            )
            return frozenset(names)
    return None  # the enum moved: no verdicts rather than wrong ones

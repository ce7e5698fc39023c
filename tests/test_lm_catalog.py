"""The settings checks that run before litellm is imported agree with litellm itself.

They read litellm's files instead of importing it (seconds), so a typo in a model string or a
missing key is reported at once; these tests hold their verdicts to the installed litellm's.
"""

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from rlm_core import lm_catalog

pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier")

UNKNOWN = ["gpt4o-typo", "nope/model", "claude", "open-ai/gpt-4o", "gpt-4o-mini/openai"]


@pytest.fixture(scope="module")
def litellm() -> Any:
    from rlm_core.lm import import_litellm

    return import_litellm()


def test_every_provider_litellm_lists_is_known(litellm: Any) -> None:
    for provider in litellm.provider_list:
        name = getattr(provider, "value", provider)
        assert not lm_catalog.model_is_unknown(f"{name}/some-model", None), name


def test_every_priced_model_is_known(litellm: Any) -> None:
    for model in litellm.model_cost:
        assert not lm_catalog.model_is_unknown(model, None), model


@pytest.mark.parametrize("model", UNKNOWN)
def test_a_model_called_unknown_is_one_litellm_rejects(litellm: Any, model: str) -> None:
    assert lm_catalog.model_is_unknown(model, None)
    assert lm_catalog.model_is_unknown(model, "http://127.0.0.1:8000/v1")
    with pytest.raises(litellm.BadRequestError, match="LLM Provider NOT provided"):
        litellm.get_llm_provider(model=model)


def test_a_hosted_api_base_leaves_the_verdict_to_litellm() -> None:
    # litellm recognises hosted OpenAI-compatible servers by URL, whatever the model is called.
    assert not lm_catalog.model_is_unknown("llama-3-70b", "https://api.example.org/v1")


@pytest.mark.parametrize("provider", sorted(lm_catalog.KEY_VARIABLES))
def test_key_variables_are_the_ones_litellm_asks_for(
    litellm: Any,
    provider: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = lm_catalog.KEY_VARIABLES[provider]
    for name in variables:
        monkeypatch.delenv(name, raising=False)
    report = litellm.validate_environment(model=f"{provider}/some-model")
    assert sorted(report["missing_keys"]) == sorted(variables)
    assert lm_catalog.missing_key_variables(f"{provider}/some-model") == variables
    monkeypatch.setenv(variables[-1], "set")
    assert lm_catalog.missing_key_variables(f"{provider}/some-model") == ()


def test_a_bare_priced_model_is_checked_for_its_providers_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert lm_catalog.missing_key_variables("gpt-4o") == ("OPENAI_API_KEY",)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt4o-typo", "is not a model litellm knows"),
        ("anthropic/claude-sonnet-4-5", "needs the environment variable ANTHROPIC_API_KEY"),
    ],
)
def test_the_mistake_is_reported_without_importing_litellm(model: str, expected: str) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys, anyio
        os.environ.pop("ANTHROPIC_API_KEY", None)
        from rlm_core.errors import ConfigError
        from rlm_core.lm import LiteLLM
        try:
            anyio.run(LiteLLM({model!r}).complete, [{{"role": "user", "content": "hi"}}])
        except ConfigError as exc:
            print(exc)
        print("litellm imported:", "litellm" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert "litellm imported: False" in done.stdout

"""Settings: explicit arguments, then ``RLM_*`` environment variables, then project files.

The project file is the nearest ``rlm.toml``, or ``[tool.rlm]`` in the nearest
``pyproject.toml``, searched from the working directory upwards. Per-backend options live in
``[interpreters.<name>]`` (``[tool.rlm.interpreters.<name>]``) or ``RLM_<NAME>_<OPTION>``
variables. Values are validated with pydantic; a bad one names where it came from and what
is allowed. ``docs/configuration.md`` shows every setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from rlm_core.errors import ConfigError
from rlm_core.interpreter import DEFAULT_MAX_OUTPUT_CHARS, Interpreter
from rlm_core.registry import KNOWN_BACKENDS, available, check_installed, create, parse_spec

if TYPE_CHECKING:
    from rlm_core.lm import LM

__all__ = ["ENV_PREFIX", "NO_MODEL_HINT", "Settings", "find_project_file", "load_settings"]

ENV_PREFIX = "RLM_"

NO_MODEL_HINT = (
    "no model is configured. Pass lm='provider/model' (any litellm model string, e.g. "
    "'openai/gpt-4o-mini'), set RLM_MODEL, or add `model = ...` to rlm.toml or [tool.rlm] in "
    "pyproject.toml. For a local OpenAI-compatible server use model 'openai/<name>' with "
    "api_base='http://127.0.0.1:8000/v1' (RLM_API_BASE)."
)
"""What to do when no model is configured (``RLM`` and ``rlm batch`` raise it)."""


class Settings(BaseModel):
    """Every setting, with its default. Build it with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interpreter: str = Field("deno", description="Backend name or spec, e.g. 'docker://IMAGE'.")
    model: str | None = Field(None, description="litellm model string for the root model.")
    sub_model: str | None = Field(None, description="Model for llm_query; defaults to model.")
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible server.")
    max_iterations: int = Field(20, gt=0, description="REPL steps before the extract fallback.")
    max_llm_calls: int = Field(50, ge=0, description="Sub-LLM calls for the whole run tree.")
    max_output_chars: int = Field(
        DEFAULT_MAX_OUTPUT_CHARS, gt=0, description="Characters of output per step."
    )
    cell_timeout_s: float | None = Field(120.0, gt=0, description="Timeout of one cell.")
    max_depth: int = Field(1, ge=0, description="How deep rlm_query may recurse.")
    batch_concurrency: int = Field(16, gt=0, description="Parallel llm_query_batched calls.")
    max_tokens: int | None = Field(None, gt=0, description="Token budget for the run tree.")
    max_cost_usd: float | None = Field(None, gt=0, description="USD budget for the run tree.")
    max_time_s: float | None = Field(None, gt=0, description="Wall-time budget for the run.")
    interpreters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-backend options, keyed by backend name."
    )
    # Where each backend option came from, "backend.option" -> "environment variable ...".
    _option_sources: dict[str, str] = PrivateAttr(default_factory=dict)
    # Where each top-level setting came from, "model" -> "option --model"; unset: the default.
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def source(self, name: str) -> str:
        """Where setting ``name`` came from, for messages.

        For example ``"environment variable RLM_MODEL"``, ``"option --model"``, a project
        file's path, or ``"the default"``.
        """
        return self._sources.get(name, "the default")

    def resolve_models(self, lm: object = None, sub_lm: object = None) -> tuple[LM, LM]:
        """The root model and the sub-model (for llm_query and rlm_query), both at ``api_base``.

        ``lm`` and ``sub_lm`` (model strings, :class:`~rlm_core.lm.LM` or ``dspy.LM``) win
        over the ``model`` and ``sub_model`` settings; the sub-model defaults to the root one.
        Error messages name where each setting came from.

        Raises:
            ConfigError: No model is given or configured, or one cannot be used as a model.
        """
        from rlm_core.lm import resolve_lm

        lm = self.model if lm is None else lm
        if lm is None:
            raise ConfigError(NO_MODEL_HINT)
        sources = {"model": self.source("model"), "api_base": self.source("api_base")}
        root = resolve_lm(lm, api_base=self.api_base, sources=sources)
        sub_lm = self.sub_model if sub_lm is None else sub_lm
        if sub_lm is None:
            return root, root
        sub_sources = {**sources, "model": self.source("sub_model")}
        return root, resolve_lm(sub_lm, api_base=self.api_base, sources=sub_sources)

    def backend_options(self, name: str) -> dict[str, Any]:
        """The configured options for backend ``name`` (empty if none)."""
        return dict(self.interpreters.get(name, {}))

    def check_interpreter(self, spec: str | None = None) -> str:
        """Check that ``spec`` (default: the configured one) names an installed backend.

        Cheap (nothing is imported or started), so callers check when they are built rather
        than when they first need a sandbox. Returns the backend's name.

        Raises:
            ConfigError: The spec is malformed or names no installed backend; the message
                suggests the closest name, how to install it, and where the setting came from.
        """
        chosen = spec or self.interpreter
        try:
            name = parse_spec(chosen)[0]
            check_installed(name)
        except ConfigError as exc:
            if chosen != self.interpreter:
                raise
            raise ConfigError(
                f"setting 'interpreter' = {chosen!r} from {self.source('interpreter')}: {exc}"
            ) from None
        return name

    def create_interpreter(self, spec: str | None = None, **options: Any) -> Interpreter:
        """Build ``spec`` (default: the configured one) with its backend's configured options.

        Options in the spec and in ``options`` override the configured ones.
        """
        chosen = spec or self.interpreter
        backend = self.check_interpreter(chosen)
        configured = {k: v for k, v in self.backend_options(backend).items() if k not in options}
        try:
            return create(chosen, defaults=configured, **options)
        except ConfigError as exc:
            if not configured:
                raise
            origins = ", ".join(
                f"{key} from {self._option_sources.get(f'{backend}.{key}', 'settings')}"
                for key in sorted(configured)
            )
            raise ConfigError(f"{exc} (configured {backend!r} options: {origins})") from None


def find_project_file(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``rlm.toml`` or ``pyproject.toml`` with ``[tool.rlm]``, and its table."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        rlm_toml = folder / "rlm.toml"
        if rlm_toml.is_file():
            return rlm_toml, _read_toml(rlm_toml)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            table = _read_toml(pyproject).get("tool", {}).get("rlm")
            if isinstance(table, dict):
                return pyproject, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _from_environ(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    fields = set(Settings.model_fields) - {"interpreters"}
    backends = set(KNOWN_BACKENDS) | set(available())
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in fields:
            values[name] = raw
            sources[name] = f"environment variable {key}"
            continue
        backend = next((b for b in sorted(backends) if name.startswith(b + "_")), None)
        if backend is not None:
            option = name[len(backend) + 1 :]
            values.setdefault("interpreters", {}).setdefault(backend, {})[option] = raw
            sources[f"interpreters.{backend}"] = f"environment variable {key}"
            sources[f"interpreters.{backend}.{option}"] = f"environment variable {key}"
    return values, sources


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    start_dir: Path | None = None,
    labels: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the three sources (arguments win, then environment, then the project file).

    ``None`` values in ``overrides`` mean "not given". Per-backend option tables are merged
    key by key across sources. ``labels`` name how each override was given, for messages
    (``{"model": "option --model"}``); the default is ``"argument <name>"``.

    Raises:
        ConfigError: A value is invalid or a key unknown; the message names its source.
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers: list[tuple[dict[str, Any], dict[str, str]]] = []
    project = find_project_file(start_dir)
    if project is not None:
        path, table = project
        where = f"{path} ([tool.rlm])" if path.name == "pyproject.toml" else str(path)
        layers.append((dict(table), dict.fromkeys(table, where)))
    env_values, env_sources = _from_environ(os.environ if environ is None else environ)
    layers.append((env_values, env_sources))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    named = labels or {}
    layers.append((given, {key: named.get(key, f"argument {key}") for key in given}))
    for values, origin in layers:
        for key, value in values.items():
            if key == "interpreters" and isinstance(value, dict):
                table = merged.setdefault("interpreters", {})
                for backend, opts in value.items():
                    if not isinstance(opts, dict):
                        raise ConfigError(
                            f"interpreters.{backend} in {origin.get(key, 'settings')} must be a "
                            "table of options"
                        )
                    table.setdefault(backend, {}).update(opts)
                    sources[f"interpreters.{backend}"] = origin.get(
                        f"interpreters.{backend}", origin.get(key, "settings")
                    )
                    for option in opts:
                        sources[f"interpreters.{backend}.{option}"] = origin.get(
                            f"interpreters.{backend}.{option}", sources[f"interpreters.{backend}"]
                        )
            else:
                merged[key] = value
                sources[key] = origin.get(key, "settings")
    try:
        settings = Settings.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise ConfigError(_explain(exc, sources)) from None
    prefix = "interpreters."
    settings._sources = {key: where for key, where in sources.items() if "." not in key}
    settings._option_sources = {
        key[len(prefix) :]: where
        for key, where in sources.items()
        if key.startswith(prefix) and key.count(".") == 2
    }
    return settings


def _explain(exc: pydantic.ValidationError, sources: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = loc[0] if loc else "?"
        where = sources.get(key) or sources.get(".".join(loc[:2]), "settings")
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(Settings.model_fields))
            lines.append(f"unknown setting {key!r} in {where}; known settings: {allowed}")
            continue
        got = error.get("input")
        lines.append(f"setting {'.'.join(loc)!r} in {where} is {got!r}: {error['msg']}")
    return "; ".join(lines)

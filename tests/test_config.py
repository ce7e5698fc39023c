"""Settings merge arguments > RLM_* environment > project file, and name bad values' sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_core.config import load_settings
from rlm_core.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_any_source(tmp_path: Path) -> None:
    settings = load_settings(environ={}, start_dir=tmp_path)
    assert settings.interpreter == "deno"
    assert settings.max_iterations == 20
    assert settings.model is None


def test_rlm_toml_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    write(tmp_path / "rlm.toml", 'model = "openai/x"\n[interpreters.docker]\nmemory = "2g"\n')
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    settings = load_settings(environ={}, start_dir=nested)
    assert settings.model == "openai/x"
    assert settings.backend_options("docker") == {"memory": "2g"}


def test_pyproject_tool_rlm_section(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname="x"\n[tool.rlm]\nmax_iterations = 7\n')
    assert load_settings(environ={}, start_dir=tmp_path).max_iterations == 7


def test_environment_beats_file_and_arguments_beat_environment(tmp_path: Path) -> None:
    write(
        tmp_path / "rlm.toml",
        "max_iterations = 7\nmax_depth = 2\n[interpreters.docker]\nimage = 'a'\ncpus = 1\n",
    )
    env = {"RLM_MAX_ITERATIONS": "9", "RLM_MAX_DEPTH": "3", "RLM_DOCKER_IMAGE": "b"}
    settings = load_settings({"max_depth": 4, "model": None}, environ=env, start_dir=tmp_path)
    assert settings.max_iterations == 9
    assert settings.max_depth == 4
    assert settings.backend_options("docker") == {"image": "b", "cpus": 1}


def test_bad_file_value_names_the_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "rlm.toml", "max_iterations = 0\n")
    with pytest.raises(ConfigError, match=rf"'max_iterations' in {path}.*greater than 0"):
        load_settings(environ={}, start_dir=tmp_path)


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment variable RLM_CELL_TIMEOUT_S"):
        load_settings(environ={"RLM_CELL_TIMEOUT_S": "soon"}, start_dir=tmp_path)


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.rlm]\nmax_iteration = 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'max_iteration'.*max_iterations"):
        load_settings(environ={}, start_dir=tmp_path)


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path / "rlm.toml", "model = \n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(environ={}, start_dir=tmp_path)


def test_a_bad_backend_option_names_where_it_was_set(tmp_path: Path) -> None:
    write(tmp_path / "rlm.toml", '[interpreters.subprocess]\npython = "python3"\n')
    env = {"RLM_SUBPROCESS_NO_SUCH_OPTION": "1"}
    settings = load_settings(environ=env, start_dir=tmp_path)
    with pytest.raises(ConfigError) as caught:
        settings.create_interpreter("subprocess")
    message = str(caught.value)
    assert "no_such_option from environment variable RLM_SUBPROCESS_NO_SUCH_OPTION" in message
    assert f"python from {tmp_path / 'rlm.toml'}" in message


def test_explicit_options_override_configured_ones(tmp_path: Path) -> None:
    env = {"RLM_SUBPROCESS_PYTHON": "/no/such/python"}
    settings = load_settings(environ=env, start_dir=tmp_path)
    interp = settings.create_interpreter("subprocess", python="python3")
    assert getattr(interp, "python", None) == "python3"

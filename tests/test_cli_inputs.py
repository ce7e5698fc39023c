"""Inputs the command line and ``RLM`` must not take blindly: binary files, misspelled backends."""

import os
from pathlib import Path

import pytest

from rlm_core.cli import main, read_context
from rlm_core.errors import ConfigError
from rlm_core.rlm import RLM
from rlm_core.testing import OpenAIStubServer

PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("RLM_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- binary files ---------------------------------------------------------------------------


def test_a_binary_file_is_refused_with_what_to_do(here: Path) -> None:
    (here / "image.png").write_bytes(PNG_HEADER)
    with pytest.raises(ConfigError) as info:
        read_context(["image.png"])
    message = str(info.value)
    assert "image.png (a NUL byte at offset 8)" in message
    assert "not UTF-8 text" in message
    assert "--binary" in message


def test_text_that_is_not_utf8_is_refused_naming_the_byte(here: Path) -> None:
    (here / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (here / "utf16.txt").write_text("hello", encoding="utf-16")
    with pytest.raises(ConfigError) as info:
        read_context(["latin1.txt", "utf16.txt"])
    assert "latin1.txt (invalid UTF-8 at byte 3)" in str(info.value)
    assert "utf16.txt (" in str(info.value)


def test_a_binary_file_inside_a_folder_is_named(here: Path) -> None:
    (here / "docs").mkdir()
    (here / "docs" / "a.md").write_text("# notes\n")
    (here / "docs" / "logo.png").write_bytes(PNG_HEADER)
    with pytest.raises(ConfigError, match=r"docs/logo.png \(a NUL byte"):
        read_context(["docs"])


def test_utf8_with_a_byte_order_mark_is_text(here: Path) -> None:
    (here / "bom.txt").write_bytes("\ufeffhello ünïcode".encode())
    assert read_context(["bom.txt"]) == "hello ünïcode"


def test_binary_flag_binds_the_raw_bytes(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "image.png").write_bytes(PNG_HEADER)
    cell = "```python\nSUBMIT(f'{type(context).__name__} {len(context)} {context[:4]!r}')\n```"
    with OpenAIStubServer([cell]) as server:
        args = ["run", "image.png", "-q", "what is it?", "-i", "mock", "--binary"]
        status = main([*args, "-m", "openai/stub", "--api-base", server.api_base])
    assert status == 0
    assert capsys.readouterr().out == "bytes 16 b'\\x89PNG'\n"


def test_binary_flag_takes_exactly_one_file(here: Path) -> None:
    (here / "a.bin").write_bytes(b"\x00")
    (here / "b.bin").write_bytes(b"\x00")
    with pytest.raises(ConfigError, match="--binary binds one file as raw bytes, but 2 files"):
        read_context(["a.bin", "b.bin"], binary=True)


def test_refused_before_any_model_call(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (here / "image.png").write_bytes(PNG_HEADER)
    with OpenAIStubServer(["never used"]) as server:
        args = ["run", "image.png", "-q", "?", "-i", "mock"]
        assert main([*args, "-m", "openai/stub", "--api-base", server.api_base]) == 2
    assert server.requests == []
    assert "image.png (a NUL byte at offset 8)" in capsys.readouterr().err


# ---- misspelled backends --------------------------------------------------------------------


def test_rlm_with_a_misspelled_backend_fails_when_built(here: Path) -> None:
    with pytest.raises(ConfigError) as info:
        RLM("q -> a", lm="openai/x", interpreter="dnoo")
    message = str(info.value)
    assert message.startswith("setting 'interpreter' = 'dnoo' from argument interpreter: ")
    assert "no interpreter named 'dnoo' is installed" in message
    assert "Did you mean 'deno'?" in message


def test_rlm_and_exec_give_the_same_did_you_mean(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        RLM("q -> a", lm="openai/x", interpreter="subprocss")
    assert main(["exec", "-i", "subprocss", "print(1)"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlm: setting 'interpreter' = 'subprocss' from option --interpreter: ")
    assert err.split(": ", 2)[2] == str(info.value).split(": ", 1)[1] + "\n"


def test_a_misspelled_backend_in_rlm_toml_names_the_file_and_key(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "rlm.toml").write_text('interpreter = "dokcer"\n')
    with pytest.raises(ConfigError) as info:
        RLM("q -> a", lm="openai/x")
    expected = f"setting 'interpreter' = 'dokcer' from {here / 'rlm.toml'}: "
    assert str(info.value).startswith(expected)
    assert "Did you mean 'docker'?" in str(info.value)
    (here / "notes.txt").write_text("text\n")
    assert main(["run", "notes.txt", "-q", "?", "-m", "openai/x"]) == 2
    assert main(["exec", "print(1)"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.startswith(f"rlm: {expected}") for line in err] == [True, True]


def test_a_misspelled_backend_in_the_environment_names_the_variable(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RLM_INTERPRETER", "mokc")
    with pytest.raises(ConfigError, match="'mokc' from environment variable RLM_INTERPRETER: "):
        RLM("q -> a", lm="openai/x")

"""``rlm --version`` and the example in each subcommand's ``--help``."""

from importlib.metadata import version

import pytest

from rlm_core.cli import main


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"rlm {version('rlmbox')}\n"


@pytest.mark.parametrize("command", ["run", "exec", "interpreters"])
def test_each_subcommand_help_shows_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    example = text[text.index("example:") :].splitlines()[1].strip()
    assert f"rlm {command}" in example

"""The ``rlm`` command line."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm_core.cli import main, read_context
from rlm_core.errors import ConfigError
from rlm_core.testing import OpenAIStubServer

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "examples" / "data" / "observatory_log.txt"


def py(src: str) -> str:
    return f"Step.\n```python\n{src}\n```"


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env["HOME"] = str(tmp_path)
    return env


def test_no_model_stops_at_once_with_the_hint(tmp_path: Path) -> None:
    probe = (
        "import sys\nfrom rlm_core.cli import main\n"
        f"rc = main(['run', {str(DOCUMENT)!r}, '--query', 'q', '--interpreter', 'subprocess'])\n"
        "print('litellm' in sys.modules, 'rlm_subprocess' in sys.modules, rc)"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(tmp_path),
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.stdout.strip() == "False False 2"
    assert "no model is configured" in done.stderr
    assert "--model" in done.stderr
    assert "--api-base http://127.0.0.1" in done.stderr
    assert "RLM_MODEL" in done.stderr
    assert elapsed < 30  # generous: it must not boot a sandbox or wait on a network


def test_console_script_without_model(tmp_path: Path) -> None:
    rlm = Path(sys.executable).with_name("rlm")
    done = subprocess.run(
        [str(rlm), "run", str(DOCUMENT), "--query", "anything"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(tmp_path),
        timeout=60,
    )
    assert done.returncode == 2
    assert "no model is configured" in done.stderr


def test_run_against_the_stub_server_prints_the_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replies = [
        py(
            "import re, collections\n"
            "c = collections.Counter(re.findall(r'\\[CRITICAL\\] ([\\w-]+)/', context))\n"
            "print(c.most_common(2))"
        ),
        py("SUBMIT(c.most_common(1)[0][0])"),
    ]
    log = tmp_path / "run.jsonl"
    with OpenAIStubServer(replies) as server:
        rc = main(
            [
                "run",
                str(DOCUMENT),
                "--query",
                "Which subsystem logged the most CRITICAL events?",
                "--model",
                "openai/stub",
                "--api-base",
                server.api_base,
                "--interpreter",
                "mock",
                "--log",
                str(log),
            ]
        )
    out, err = capsys.readouterr()
    assert rc == 0
    assert out.strip() == "dome-3"
    assert "step 1: code" in err
    assert "2 steps, 2 model calls" in err
    assert [json.loads(x)["event"] for x in log.read_text().splitlines()][-1] == "run_end"
    assert "Length: 366,929 characters" in server.requests[0]["messages"][1]["content"]


def test_run_json_output_with_typed_signature(capsys: pytest.CaptureFixture[str]) -> None:
    with OpenAIStubServer([py("SUBMIT(len(context), ['a'])")]) as server:
        rc = main(
            [
                "run",
                str(DOCUMENT),
                "-q",
                "count",
                "--signature",
                "context, query -> n: int, tags: list[str]",
                "--model",
                "openai/stub",
                "--api-base",
                server.api_base,
                "-i",
                "mock",
                "--json",
            ]
        )
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outputs"] == {"n": 366929, "tags": ["a"]}
    assert data["extracted"] is False
    assert data["trajectory"][0]["final"] is True


def test_bad_signature_inputs_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", str(DOCUMENT), "-q", "x", "--signature", "doc -> a", "--model", "openai/x"])
    assert rc == 2
    assert "must be exactly 'context, query'" in capsys.readouterr().err


def test_read_context_files_folders_and_globs(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("beta")
    (tmp_path / ".hidden").write_text("secret")
    assert read_context([str(tmp_path / "a.txt")]) == "alpha"
    both = read_context([str(tmp_path)])
    assert "===== " in both
    assert "alpha" in both
    assert "beta" in both
    assert "secret" not in both
    assert "beta" in read_context([str(tmp_path / "**" / "*.md")])
    with pytest.raises(ConfigError, match="not a file or folder"):
        read_context([str(tmp_path / "missing.txt")])
    with pytest.raises(ConfigError, match="no files matched"):
        read_context([str(tmp_path / "*.csv")])


def test_exec_runs_one_cell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exec", "--interpreter", "mock", "print('hi'); 40 + 2"]) == 0
    out = capsys.readouterr().out
    assert out == "hi\n42\n"
    assert main(["exec", "-i", "subprocess", "import os; os.getpid() != 0"]) == 0
    assert capsys.readouterr().out == "True\n"
    assert main(["exec", "-i", "mock", "1/0"]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_exec_unknown_backend_names_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exec", "-i", "subprocesss", "1"]) == 2
    err = capsys.readouterr().err
    assert "no interpreter named 'subprocesss'" in err
    assert "Did you mean 'subprocess'?" in err


def test_interpreters_lists_each_backend_with_its_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rlm_core.registry as registry

    monkeypatch.setattr(registry, "available", lambda: ["mock", "subprocess"])
    assert main(["interpreters"]) == 0
    lines = capsys.readouterr().out.splitlines()
    status = dict(line.split(": ", 1) for line in lines)
    assert status["mock"] == "available (isolation: none)"
    assert status["subprocess"] == "available (isolation: process)"
    assert status["docker"] == 'not installed (pip install "rlmbox[docker]")'
    assert any(line.startswith("deno (default)") for line in lines)

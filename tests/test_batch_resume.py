"""``rlm batch`` killed midway (a real process, SIGKILL or Ctrl-C), then rerun: every row once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_core.testing import OpenAIStubServer

ROWS = 12
REPLY = "```python\nnote = llm_query('say hi')\nSUBMIT(len(text))\n```"


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer([REPLY], latency_s=0.3) as server:
        yield server


def _rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    with path.open("w") as f:
        for i in range(ROWS):
            f.write(json.dumps({"id": f"doc-{i}", "text": "x" * i}) + "\n")
    return path


def _command(rows: Path, out: Path, api_base: str) -> list[str]:
    code = "import sys; from rlm_core.cli import main; sys.exit(main(sys.argv[1:]))"
    return [
        sys.executable,
        "-c",
        code,
        "batch",
        str(rows),
        "--output",
        str(out),
        "--signature",
        "text -> n: int",
        "--model",
        "openai/stub",
        "--api-base",
        api_base,
        "--interpreter",
        "subprocess",
        "--concurrency",
        "3",
    ]


def _lines(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_killed_batch_resumes_with_every_row_once(
    tmp_path: Path, stub: OpenAIStubServer, kill: signal.Signals
) -> None:
    rows, out = _rows(tmp_path), tmp_path / "out.jsonl"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    # A new session: SIGKILL goes to the whole group, sandboxes too, like a machine crash.
    first = subprocess.Popen(
        _command(rows, out, stub.api_base),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len(_lines(out)) < 4:
            assert first.poll() is None, f"rlm batch ended early: {first.communicate()[1]}"
            assert time.monotonic() < deadline, "no rows finished within 240 s"
            time.sleep(0.05)
        if kill == signal.SIGKILL:
            os.killpg(first.pid, signal.SIGKILL)
        else:
            first.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        _, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == (-signal.SIGKILL if kill == signal.SIGKILL else 130), stderr
    done_before = {json.loads(line)["id"] for line in _lines(out)}
    assert 4 <= len(done_before) < ROWS, "the kill must land mid-batch"

    second = subprocess.run(
        _command(rows, out, stub.api_base), env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr
    assert f"{len(done_before)} already done" in second.stderr
    records = [json.loads(line) for line in _lines(out)]
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(f"doc-{i}" for i in range(ROWS))  # each row exactly once
    by_id = {r["id"]: r for r in records}
    assert all(by_id[f"doc-{i}"]["outputs"] == {"n": i} for i in range(ROWS))
    assert all(r["ok"] and r["usage"]["calls"] == 2 for r in records)

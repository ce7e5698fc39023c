"""A batch on the default Deno backend: its rows share Deno processes unless the spec says."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from rlm_conformance.processes import descendants
from rlm_core.batch import BatchJob, run_batch
from rlm_core.batch.sandboxes import batch_interpreter
from rlm_core.testing import OpenAIStubServer

ROWS = 6
REPLY = "```python\nnote = llm_query('say hi')\nSUBMIT(len(text))\n```"


def test_deno_specs_gain_shared_processes_unless_they_say() -> None:
    assert batch_interpreter("deno") == "deno://?sessions_per_process=16"
    assert batch_interpreter("deno://?memory_limit_mb=512") == (
        "deno://?memory_limit_mb=512&sessions_per_process=16"
    )
    assert batch_interpreter("deno://?sessions_per_process=1") == "deno://?sessions_per_process=1"
    assert batch_interpreter("deno", {"sessions_per_process": 1}) == "deno"  # configured
    assert batch_interpreter("subprocess") == "subprocess"


def test_configured_opt_out_reaches_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_DENO_SESSIONS_PER_PROCESS", "1")
    job = BatchJob("text -> n: int", model="openai/stub", interpreter="deno").resolved()
    assert job.interpreter == "deno"


def _deno_runners() -> set[int]:
    found = set()
    for pid in descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"runner.mjs" in cmdline:
            found.add(pid)
    return found


def test_rows_on_deno_share_one_process(tmp_path: Path) -> None:
    rows, out = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "text": "x" * i}) + "\n" for i in range(ROWS)))
    seen: set[int] = set()
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.05):
            seen.update(_deno_runners())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # Slow model calls keep every row's session open at once.
        with OpenAIStubServer([REPLY], latency_s=1.0) as stub:
            job = BatchJob(
                "text -> n: int",
                model="openai/stub",
                api_base=stub.api_base,
                interpreter="deno",
                options={"max_iterations": 3},
            )
            summary = run_batch(job, rows, out, concurrency=ROWS)
    finally:
        finished.set()
        watcher.join()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary.ok == ROWS, [r["error"] for r in records if not r["ok"]]
    assert sorted(r["outputs"]["n"] for r in records) == list(range(ROWS))
    assert len(seen) == 1, f"{ROWS} rows ran in {len(seen)} Deno processes"

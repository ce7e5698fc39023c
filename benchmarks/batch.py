"""Batch figures: rows/s of ``run_batch`` over a stub model, peak memory, host CPU per model call.

Each row is a real RLM run (a sandbox per row) whose scripted root model calls ``llm_query``
once and submits: three model calls of 200 ms each against the OpenAI-compatible stub, which
runs in a child process so it does not share our GIL.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from benchmarks.harness import Stat
from benchmarks.loop import stub_server
from benchmarks.memory import sampled_peak
from rlm_core.batch import BatchJob, default_concurrency, run_batch
from rlm_core.batch.sandboxes import batch_interpreter
from rlm_core.lm import LiteLLM, Message

ROW_REPLY = "```python\nnote = llm_query('one word for: ' + text[:20])\nSUBMIT(len(text))\n```"


def batch_rows(backend: str, rows: int, concurrency: int | None) -> dict[str, Any]:
    """Run ``rows`` rows through ``run_batch`` on ``backend``; rows/s, peak MB, concurrency."""
    workers = concurrency or default_concurrency(batch_interpreter(backend))
    with tempfile.TemporaryDirectory(prefix="rlm-bench-batch-") as tmp:
        inputs, output = Path(tmp) / "rows.jsonl", Path(tmp) / "out.jsonl"
        with inputs.open("w") as f:
            for i in range(rows):
                f.write(json.dumps({"id": i, "text": f"document {i} " * 20}) + "\n")
        with stub_server(0.2, [ROW_REPLY]) as api_base, sampled_peak() as peak:
            job = BatchJob(
                "text -> n: int",
                model="openai/stub",
                api_base=api_base,
                interpreter=backend,
                options={"max_iterations": 3},
            )
            started = time.perf_counter()
            summary = run_batch(job, inputs, output, concurrency=workers)
            seconds = time.perf_counter() - started
        records = [json.loads(line) for line in output.read_text().splitlines()]
    assert summary.ok == rows, (summary, [r for r in records if not r["ok"]][:3])
    return {
        "rows": rows,
        "concurrency": workers,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 2),
        "peak_mb": round(peak[0], 1),
    }


def host_cpu_per_call_ms(repeats: int, calls: int = 32, *, direct: bool = True) -> Stat:
    """Host CPU (ms) per model call, ``calls`` at once against the 200 ms stub.

    Process CPU time over the wall of each concurrent round, divided by the calls: what every
    ``llm_query`` costs this process besides waiting. ``direct=False`` measures the same calls
    through litellm instead of the lean OpenAI-compatible path (``rlm_core.lm_openai``).
    """

    async def rounds(api_base: str) -> list[float]:
        lm = LiteLLM("openai/stub", api_base=api_base, direct=direct)
        await lm.complete([Message(role="user", content="warm up")])
        samples = []
        for _ in range(repeats + 1):
            cpu = time.process_time()
            async with anyio.create_task_group() as group:
                for i in range(calls):
                    group.start_soon(lm.complete, [Message(role="user", content=f"item {i}")])
            samples.append(1000 * (time.process_time() - cpu) / calls)
        return samples[1:]  # the first round opens the connection pool

    with stub_server(0.2) as api_base:
        return Stat.of(anyio.run(rounds, api_base))

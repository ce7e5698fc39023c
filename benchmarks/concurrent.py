"""Memory of many runs at once: N concurrent RLM runs, each holding a sandbox with a 1 MB input.

Every run's scripted model writes one cell that waits, through an async host tool, until all
N runs have reached it, so the N sandboxes are alive together; the figure is the proportional
memory (PSS: shared pages counted once) of this process and every process under it, sampled
throughout and read once more at that moment.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from benchmarks.memory import sampled_peak, tree_pss_mb
from rlm_core import RLM
from rlm_core.parallel import run_many
from rlm_core.registry import create
from rlm_core.testing import ScriptedLM

INPUT_CHARS = 1_000_000
CELL = "```python\nwait_for_everyone()\nSUBMIT(len(text))\n```"


def concurrent_runs(spec: str, runs: int) -> dict[str, Any]:
    """``runs`` RLM runs at once on ``spec``; seconds, and peak PSS with all sandboxes alive."""
    arrived = 0
    everyone = anyio.Event()
    together: list[float] = []

    async def wait_for_everyone() -> int:
        nonlocal arrived
        arrived += 1
        if arrived == runs:
            together.append(await anyio.to_thread.run_sync(tree_pss_mb, os.getpid()))
            everyone.set()
        await everyone.wait()
        return runs

    async def one(text: str) -> int:
        rlm = RLM(
            "text -> n: int",
            lm=ScriptedLM([CELL]),
            interpreter=lambda: create(spec),
            tools=[wait_for_everyone],
            max_iterations=2,
            cell_timeout_s=600.0,
        )
        return int((await rlm.acall(text=text)).n)

    async def main() -> list[Any]:
        texts = [str(i % 10) * INPUT_CHARS for i in range(runs)]
        return await run_many(one, texts, limit=runs)

    started = time.perf_counter()
    with sampled_peak() as peak:
        results = anyio.run(main)
    seconds = time.perf_counter() - started
    failed = [r.error for r in results if not r.ok]
    assert not failed, failed[:3]
    assert all(r.value == INPUT_CHARS for r in results)
    return {
        "backend": spec,
        "runs": runs,
        "seconds": round(seconds, 1),
        "peak_pss_mb": round(max(peak[0], *together), 1),
        "pss_all_alive_mb": round(together[0], 1) if together else None,
    }

"""Loop figures: RLM overhead over a 10 MB input, and 32 batched sub-calls against a slow stub."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from benchmarks.harness import Stat
from rlm_core.registry import InterpreterSpec, create
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM

_STUB = """
import json, sys
from rlm_core.testing import OpenAIStubServer
with OpenAIStubServer(json.loads(sys.argv[2]), latency_s=float(sys.argv[1])) as server:
    print(server.api_base, flush=True)
    sys.stdin.read()
"""


def _cell(code: str) -> str:
    return f"Next step.\n```python\n{code}\n```"


def rlm_overhead(backend: str, repeats: int) -> Stat:
    """Seconds for a 5-iteration scripted run over a 10 MB input: everything but the model."""
    context = ("lorem ipsum dolor sit amet " * 400_000)[:10_000_000]
    samples = []
    for _ in range(repeats):
        lm = ScriptedLM(
            [
                _cell("print(len(context))"),
                _cell("n = context.count('lorem')\nprint(n)"),
                _cell("print(context[:100])"),
                _cell("words = context[:100000].split()\nprint(len(words))"),
                _cell("SUBMIT(n)"),
            ]
        )
        spec: InterpreterSpec = lambda: create(backend)  # noqa: E731 - a fresh session per run
        rlm = RLM("context -> n: int", lm=lm, interpreter=spec, max_iterations=5)
        started = time.perf_counter()
        result = rlm(context=context)
        samples.append(time.perf_counter() - started)
        assert result.n == context.count("lorem"), result
    return Stat.of(samples)


@contextmanager
def stub_server(latency_s: float, replies: Sequence[str] = ("stub answer",)) -> Iterator[str]:
    """Run the OpenAI-compatible stub in a child process; yields its ``api_base``."""
    # In a child process: a stub sharing our GIL would slow the client it is measuring.
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUB, str(latency_s), json.dumps(list(replies))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]


def batched_32(backend: str, repeats: int) -> Stat:
    """Seconds for one cell's ``llm_query_batched`` of 32 prompts, stub latency 200 ms each.

    ``batch_concurrency=32`` lets all 32 run at once, so the floor is one latency (0.20 s);
    with the default of 16 it is two (0.40 s).
    """
    code = "r = llm_query_batched([f'item {i}' for i in range(32)])\nprint(len(r))"
    samples = []
    with stub_server(0.2) as api_base:
        for attempt in range(repeats + 1):  # the first run pays litellm's import
            lm = ScriptedLM([_cell(code), _cell("SUBMIT(len(r))")])
            rlm = RLM(
                "q -> n: int",
                lm=lm,
                sub_lm="openai/stub",
                api_base=api_base,
                interpreter=lambda: create(backend),
                max_iterations=2,
                batch_concurrency=32,
            )
            result = rlm(q="go")
            assert result.n == 32, result
            cell = result.trajectory[0]
            if attempt:
                samples.append(float(cell["duration_s"]))
    return Stat.of(samples)

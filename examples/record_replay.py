"""Regression-test an RLM program with a cassette: record once with a real model, replay in CI.

The first run (no cassette yet) calls the model and the tools and records every answer; every
later run replays them with no model, no network and no tool call, on whichever backend you
choose, and fails at the first step whose output changed. Commit the cassette with the test.

    RLM_MODEL=openai/gpt-4o-mini python examples/record_replay.py     # records triage.cassette
    RLM_INTERPRETER=docker python examples/record_replay.py           # replays it in Docker
    rlm replay triage.cassette --interpreter deno                     # the same, from the shell
    rlm view triage.jsonl                                             # what the run did
"""

from __future__ import annotations

from pathlib import Path

from rlm_core import RLM, RLMResult
from rlm_core.lm import LM
from rlm_core.registry import InterpreterSpec

HERE = Path(__file__).resolve().parent
DOCUMENT = HERE / "data" / "observatory_log.txt"
SUPPORT = {"cryocooler": "vendor contract", "shutter motor": "in-house"}


def support_level(subsystem: str) -> str:
    """Who maintains a subsystem (a host lookup the sandbox cannot do itself)."""
    return SUPPORT.get(subsystem.split("/")[-1], "unknown")


def main(
    cassette: Path = HERE / "triage.cassette",
    lm: str | LM | None = None,
    interpreter: InterpreterSpec | None = None,
    document: Path = DOCUMENT,
) -> RLMResult:
    recording = not cassette.exists()
    rlm = RLM(
        "context, query -> answer",
        lm=lm if recording else None,
        interpreter=interpreter,
        tools=[support_level],
        log=cassette.with_suffix(".jsonl"),
        record=cassette if recording else None,
        replay=None if recording else cassette,
    )
    result = rlm(
        context=document.read_text(encoding="utf-8"),
        query="Which subsystem logged the most CRITICAL events, and who maintains it?",
    )
    what = "recorded to" if recording else "replayed from"
    print(f"{result.answer}  ({what} {cassette.name})")
    return result


if __name__ == "__main__":
    main()

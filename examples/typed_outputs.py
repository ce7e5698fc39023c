"""Typed outputs: a class signature with descriptions, a Literal and a list of pydantic models.

The model's SUBMIT values are validated on the host; a wrong type is sent back to the model to
fix, so ``result.incidents`` really is a ``list[Incident]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pydantic

from rlm_core import RLM, RLMResult
from rlm_core.lm import LM
from rlm_core.registry import InterpreterSpec
from rlm_core.signature import InputField, OutputField, Signature

DOCUMENT = Path(__file__).with_name("data") / "observatory_log.txt"


class Incident(pydantic.BaseModel):
    date: str
    subsystem: str
    summary: str


class Triage(Signature):
    """Review the maintenance log and report the CRITICAL incidents of August 2024."""

    log: str = InputField("one line per event: date, time, id, [SEVERITY], subsystem/part")
    risk: Literal["low", "medium", "high"] = OutputField("overall risk for the next month")
    incidents: list[Incident] = OutputField("one entry per CRITICAL event in August 2024")


def main(lm: str | LM | None = None, interpreter: InterpreterSpec | None = None) -> RLMResult:
    rlm = RLM(Triage, lm=lm, interpreter=interpreter)
    result = rlm(log=DOCUMENT.read_text(encoding="utf-8"))
    print(f"risk: {result.risk}")
    for incident in result.incidents:
        print(f"- {incident.date} {incident.subsystem}: {incident.summary}")
    return result


if __name__ == "__main__":
    main()

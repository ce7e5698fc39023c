"""Report rows: scores averaged per item over repeats, Student's t CI, p90s, failure counts."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from rlm_core.bench.report import summarize, write_markdown, write_plot


def _record(item: str, repeat: int, score: float, **extra: Any) -> dict[str, Any]:
    base = {
        "task": "oolong", "length": 8_000, "method": "rlm", "interpreter": "deno",
        "item_id": item, "repeat": repeat, "score": score, "failure": None,
        "tokens": 100, "usd": 0.01, "seconds": 1.0, "cut": False,
    }  # fmt: skip
    return {**base, **extra}


def test_ci_is_over_item_means_and_repeats_give_a_spread() -> None:
    records = [
        _record("a", 0, 1.0), _record("a", 1, 0.0),  # item mean 0.5, spread 0.5
        _record("b", 0, 1.0), _record("b", 1, 1.0),
        _record("c", 0, 0.0), _record("c", 1, 0.0, failure="timeout", seconds=10.0),
    ]  # fmt: skip
    (row,) = summarize(records)
    assert row["items"] == 3
    assert row["runs"] == 6
    assert row["score"] == pytest.approx(0.5)
    assert row["ci95"] == [0.0, 1.0]  # t(0.975, 2) * sd / sqrt(3) = 1.24, clipped to [0, 1]
    assert row["repeat_sd"] == pytest.approx(0.5 / 3)
    assert row["failures"] == {"timeout": 1}
    assert row["seconds"]["p90"] == 10.0
    assert row["seconds"]["mean"] == pytest.approx(2.5)


def test_ci_uses_students_t_for_few_items() -> None:
    (row,) = summarize([_record(i, 0, s) for i, s in (("a", 0.5), ("b", 0.6), ("c", 0.4))])
    half = 4.303 * statistics.stdev([0.5, 0.6, 0.4]) / math.sqrt(3)  # t(0.975, df=2)
    assert row["ci95"] == pytest.approx([0.5 - half, 0.5 + half])
    assert row["repeat_sd"] is None


def test_one_row_per_task_length_method_and_backend(tmp_path: Path) -> None:
    records = [
        _record("a", 0, 1.0),
        _record("a", 0, 1.0, interpreter="docker"),
        _record("a", 0, 0.0, method="direct", interpreter="-", cut=True),
        _record("b", 0, 1.0, length=32_000, item_id="b"),
    ]
    rows = summarize(records)
    assert [(r["length"], r["method"], r["interpreter"]) for r in rows] == [
        (8_000, "direct", "-"),
        (8_000, "rlm", "deno"),
        (8_000, "rlm", "docker"),
        (32_000, "rlm", "deno"),
    ]
    meta = {"model": "m", "tasks": ["oolong"], "lengths": [8_000, 32_000], "n": 1, "repeats": 1,
            "seed": 0}  # fmt: skip
    write_markdown(tmp_path / "r.md", meta, rows, [], "plot.png")
    md = (tmp_path / "r.md").read_text()
    assert "| oolong | 8k | direct (cut 1) | - | 1 | 0.000 |" in md
    assert "## Backend invariance (deno, docker)" in md
    assert "Every run gave the same answer on every backend." in md
    assert write_plot(tmp_path / "p.png", rows)
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")

"""``rlm bench`` end to end on the default backend: separations, resume, USD cap, timeouts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rlm_core.bench.report import invariance
from rlm_core.cli import main


def _bench(out: Path, *args: str) -> dict[str, Any]:
    assert main(["bench", *args, "--out", str(out), "--quiet"]) == 0
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def _rows(report: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {(r["task"], r["length"], r["method"]): r for r in report["rows"]}


@pytest.mark.timeout(1800)
def test_reference_beats_direct_beyond_its_window_and_lazy_is_near_chance(
    tmp_path: Path,
) -> None:
    """The issue's acceptance run: reference ~1.0 everywhere, direct fails past 100k chars."""
    tasks = "sniah,oolong,oolong-pairs"
    ref = _bench(
        tmp_path / "ref",
        tasks,
        "--model",
        "scripted:reference",
        "--lengths",
        "8k,128k",
        "--n",
        "10",
    )
    rows = _rows(ref)
    assert len(rows) == 3 * 2 * 3
    for task in tasks.split(","):
        for method in ("rlm", "rlm-depth2"):
            for length in (8_000, 128_000):
                row = rows[(task, length, method)]
                assert row["score"] >= 0.95, row
                assert row["failures"] == {}, row
        # The scripted direct model reads 100k characters: all of an 8k input, a fifth of 128k.
        assert rows[(task, 8_000, "direct")]["score"] >= 0.95
        # Most/least/comparison questions survive reading a sample; counts and pairs do not.
        assert rows[(task, 128_000, "direct")]["score"] <= 0.7, rows[(task, 128_000, "direct")]
    assert all(r["usd"]["mean"] > 0 and r["tokens"]["p90"] > 0 for r in ref["rows"])
    md = (tmp_path / "ref" / "report.md").read_text()
    assert "| sniah | 128k | rlm-depth2 | deno | 10 |" in md
    png = (tmp_path / "ref" / "plot.png").read_bytes()
    assert png.startswith(b"\x89PNG")

    lazy = _bench(
        tmp_path / "lazy", tasks, "--model", "scripted:lazy", "--lengths", "8k", "--n", "10",
        "--methods", "direct,rlm",
    )  # fmt: skip
    for row in lazy["rows"]:
        assert row["score"] <= 0.35, row  # chance: a random label, count, number or pair
        assert row["failures"] == {}, row


def test_rerun_after_a_kill_skips_the_finished_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "bench", "sniah", "--model", "scripted:reference", "--lengths", "2k", "--n", "8",
        "--methods", "rlm", "--concurrency", "1", "--out", str(out), "--quiet",
    ]  # fmt: skip
    code = "import sys; from rlm_core.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], start_new_session=True)
    results = out / "results.jsonl"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if results.exists() and results.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the bench and its sandboxes, mid-run
        proc.wait()
    before = [json.loads(line) for line in results.read_text().splitlines()]
    assert 2 <= len(before) < 8, "the kill must land mid-run for this test to mean anything"

    assert main(args) == 0
    after = [json.loads(line) for line in results.read_text().splitlines()]
    assert after[: len(before)] == before  # finished runs kept, not redone
    assert len(after) == 8
    assert len({r["key"] for r in after}) == 8
    meta = json.loads((out / "report.json").read_text())["meta"]
    assert meta["skipped_as_finished"] == len(before)


def test_max_usd_stops_before_the_run_that_would_pass_the_cap(tmp_path: Path) -> None:
    # Each direct sniah run at 8k costs about $0.0082 at the scripted models' nominal price.
    report = _bench(
        tmp_path, "sniah", "--model", "scripted:reference", "--lengths", "8k", "--n", "10",
        "--methods", "direct", "--concurrency", "1", "--max-usd", "0.03",
    )  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert sum(r["usd"] for r in records) <= 0.03
    assert report["meta"]["stopped_by_cap"] is True
    assert "Stopped early" in (tmp_path / "report.md").read_text()


def test_a_run_past_its_timeout_counts_as_a_timeout_failure(tmp_path: Path) -> None:
    report = _bench(
        tmp_path, "sniah", "--model", "scripted:reference", "--lengths", "2k", "--n", "1",
        "--methods", "rlm", "--timeout", "0.05",
    )  # fmt: skip
    (row,) = report["rows"]
    assert row["failures"] == {"timeout": 1}
    assert row["score"] == 0.0


def test_answers_that_differ_between_backends_are_listed() -> None:
    base = {"method": "rlm", "repeat": 0, "failure": None}
    records = [
        {**base, "item_id": "a", "interpreter": "deno", "answer": "Answer: 3"},
        {**base, "item_id": "a", "interpreter": "docker", "answer": "Answer:  3"},
        {**base, "item_id": "b", "interpreter": "deno", "answer": "Answer: 3"},
        {**base, "item_id": "b", "interpreter": "docker", "answer": "Answer: 4"},
        {**base, "item_id": "b", "interpreter": "-", "method": "direct", "answer": "x"},
    ]
    (diff,) = invariance(records)
    assert diff["item_id"] == "b"
    assert diff["answers"] == {"deno": "Answer: 3", "docker": "Answer: 4"}


def test_deno_and_docker_give_the_same_answers_in_lockstep(tmp_path: Path) -> None:
    report = _bench(
        tmp_path, "sniah,oolong,oolong-pairs", "--model", "scripted:reference", "--lengths", "4k",
        "--n", "2", "--methods", "rlm", "--interpreter", "deno,docker",
    )  # fmt: skip
    assert report["invariance"] == {"backends": ["deno", "docker"], "differing": []}
    assert {r["interpreter"] for r in report["rows"]} == {"deno", "docker"}
    assert all(r["score"] == 1.0 for r in report["rows"])


def test_direct_with_a_reader_of_n_characters_fails_beyond_n(tmp_path: Path) -> None:
    # The reader sees 20,000 characters: all of a 2k-token input, a quarter of a 20k one.
    report = _bench(
        tmp_path, "sniah,oolong-pairs", "--model", "scripted:reference:20000", "--lengths",
        "2k,20k", "--n", "10", "--methods", "direct",
    )  # fmt: skip
    rows = _rows(report)
    for task in ("sniah", "oolong-pairs"):
        assert rows[(task, 2_000, "direct")]["score"] == 1.0
        assert rows[(task, 20_000, "direct")]["score"] <= 0.4, rows[(task, 20_000, "direct")]


def test_a_failed_run_still_counts_what_it_spent(tmp_path: Path) -> None:
    # One step is not enough for the reference policy: the extract fallback gets code, not
    # JSON, and the run fails; its three model calls were still paid for.
    report = _bench(
        tmp_path, "sniah", "--model", "scripted:reference", "--lengths", "2k", "--n", "1",
        "--methods", "rlm", "--max-iterations", "1",
    )  # fmt: skip
    (row,) = report["rows"]
    assert row["failures"] == {"no_valid_output": 1}
    (record,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert record["calls"] == 3
    assert record["usd"] > 0
    assert record["tokens"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "scripted:foo"], "use scripted:reference or scripted:lazy"),
        (["--model", "scripted:reference", "--methods", "rlm,fast"], "choose from direct"),
        (["--model", "scripted:reference", "--interpreter", "denoo"], "Did you mean 'deno'"),
        (["--model", "scripted:reference", "--lengths", "lots"], "use numbers like 8k"),
    ],
)
def test_bad_settings_fail_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main(["bench", "sniah", *args, "--out", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()

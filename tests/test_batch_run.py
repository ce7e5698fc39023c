"""``run_batch`` in-process over the real litellm path: readers, records, retries, the spend cap."""

from __future__ import annotations

import csv
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlm_core.batch import BatchJob, BatchLimits, RetryPolicy, run_batch
from rlm_core.errors import ConfigError
from rlm_core.testing import OpenAIStubServer

REPLY = "```python\nSUBMIT(len(text) + int(extra))\n```"  # CSV values are strings


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer([REPLY]) as server:
        yield server


def _job(api_base: str, **kw: Any) -> BatchJob:
    return BatchJob(
        "text, extra -> n: int",
        model="openai/stub",
        api_base=api_base,
        interpreter="mock",
        options={"max_iterations": 2},
        **kw,
    )


def _records(out: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["id"]: r for r in lines}
    assert len(by_id) == len(lines), "a row was written twice"
    return by_id


ROWS = [{"id": f"k{i}", "text": "ab" * i, "extra": i, "ignored": True} for i in range(5)]


def test_jsonl_rows_become_records_with_outputs_and_usage(
    tmp_path: Path, stub: OpenAIStubServer
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps(r) + "\n" for r in ROWS)
        + "not json\n"
        + json.dumps({"id": "short", "text": "x"})  # no 'extra', no final newline
    )
    traj = tmp_path / "traj"
    summary = run_batch(_job(stub.api_base, trajectories=str(traj)), rows, tmp_path / "o.jsonl")
    records = _records(tmp_path / "o.jsonl")
    assert (summary.ok, summary.failed, summary.skipped) == (5, 2, 0)
    for i in range(5):
        r = records[f"k{i}"]
        assert r["outputs"] == {"n": 3 * i}
        assert r["usage"]["calls"] == 1
        assert json.loads(Path(r["trajectory"]).read_text())["outputs"] == {"n": 3 * i}
    assert records["5"]["error"]["type"] == "RowError"  # the line's position is its id
    assert "line 6 is not JSON" in records["5"]["error"]["message"]
    short = records["short"]
    assert short["error"]["type"] == "ConfigError"
    assert "extra" in short["error"]["message"]
    assert short["attempts"] == 1  # permanent: not retried


def test_csv_and_parquet_rows(tmp_path: Path, stub: OpenAIStubServer) -> None:
    rows_csv = tmp_path / "rows.csv"
    with rows_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text", "extra", "ignored"])
        writer.writeheader()
        writer.writerows(ROWS)
    rows_pq = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), rows_pq)
    expected = {f"k{i}": {"n": 3 * i} for i in range(5)}
    for rows in (rows_csv, rows_pq):
        out = tmp_path / f"{rows.suffix[1:]}.jsonl"
        run_batch(_job(stub.api_base), rows, out)
        assert {k: r["outputs"] for k, r in _records(out).items()} == expected


def test_rerun_skips_done_rows_and_repairs_a_torn_line(
    tmp_path: Path, stub: OpenAIStubServer
) -> None:
    rows, out = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    done = {"id": "k0", "ok": True, "outputs": {"n": -1}, "usage": None, "error": None}
    out.write_text(json.dumps(done) + "\n" + '{"id": "k1", "ok": tr')  # killed mid-write
    before = len(stub.requests)
    summary = run_batch(_job(stub.api_base), rows, out)
    assert summary.skipped == 1
    assert summary.ok == 4
    assert len(stub.requests) - before == 4  # k0 was not run again
    records = _records(out)
    assert records["k0"]["outputs"] == {"n": -1}  # kept as it was
    assert records["k1"]["outputs"] == {"n": 3}


def test_a_model_server_that_never_answered_is_a_setting_error_not_retried(
    tmp_path: Path,
) -> None:
    # Nothing listens at api_base from the start: the model setting is wrong, so every retry
    # would fail the same way (a server that answered before and then drops is retried).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(ROWS[1]) + "\n")
    summary = run_batch(
        _job(f"http://127.0.0.1:{port}/v1"),
        rows,
        tmp_path / "out.jsonl",
        retry=RetryPolicy(retries=2, backoff_s=0.01),
    )
    record = _records(tmp_path / "out.jsonl")["k1"]
    assert summary.failed == 1
    assert record["error"]["type"] == "ConfigError"
    assert "unreachable" in record["error"]["message"]
    assert record["attempts"] == 1


def test_spend_cap_stops_the_batch_and_a_rerun_with_more_finishes(
    tmp_path: Path, stub: OpenAIStubServer
) -> None:
    rows, out = tmp_path / "rows.jsonl", tmp_path / "out.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    # Each call reserves its prompt estimate (~1,300 tokens here) plus 4,096 completion tokens
    # (the stub model has no known output limit) and settles to ~640 used: under 6,500 the
    # batch fits a couple of rows, then a reservation no longer fits and nothing is open.
    summary = run_batch(
        _job(stub.api_base), rows, out, limits=BatchLimits(max_tokens=6_500), concurrency=1
    )
    assert summary.stopped is not None
    assert "token cap" in summary.stopped
    first = _records(out)
    assert len(first) < 5
    assert summary.tokens <= 6_500
    assert all(r["ok"] for r in first.values())  # the refused row was not recorded as failed
    summary = run_batch(_job(stub.api_base), rows, out, limits=BatchLimits(max_tokens=10**9))
    assert summary.complete
    assert set(_records(out)) == {f"k{i}" for i in range(5)}


def test_bad_arguments_fail_before_any_row(tmp_path: Path, stub: OpenAIStubServer) -> None:
    rows = tmp_path / "rows.txt"
    rows.write_text("x")
    with pytest.raises(ConfigError, match=r"\.jsonl"):
        run_batch(_job(stub.api_base), rows, tmp_path / "o.jsonl")
    good = tmp_path / "rows.jsonl"
    good.write_text(json.dumps(ROWS[0]) + "\n")
    with pytest.raises(ConfigError, match="executor"):
        run_batch(_job(stub.api_base), good, tmp_path / "o.jsonl", executor="spark")
    not_results = tmp_path / "notes.jsonl"
    not_results.write_text('{"no id": 1}\n')
    with pytest.raises(ConfigError, match="not a batch result line"):
        run_batch(_job(stub.api_base), good, not_results)

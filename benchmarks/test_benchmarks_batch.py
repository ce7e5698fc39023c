"""``python -m benchmarks --batch`` runs real batches and reports the figures users read."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main


def test_batch_report_has_rows_per_second_memory_and_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--batch", "--batch-backends", "mock", "--rows", "6", "--quick", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    mock = report["backends"]["mock"]
    assert mock["rows"] == 6
    assert mock["rows_per_s"] > 0
    assert mock["peak_mb"] > 0
    assert report["host_cpu_per_call_ms"]["n"] == 2
    assert report["host_cpu_litellm_per_call_ms"]["n"] == 2

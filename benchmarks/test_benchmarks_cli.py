"""The benchmark command produces the report its users parse (values are not asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main


def test_json_report_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--backend", "mock", "--json", "--quick", "--sizes", "1", "--no-loop"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert report["backend"] == "mock"
    for key in ("cold_start_s", "execute_ms", "tool_call_ms", "bind_1mb_s", "timeout_return_s"):
        assert isinstance(report[key], float), key
        assert report["details"][key]["n"] >= 1


def test_loop_overhead_figure_runs_a_real_scripted_rlm() -> None:
    from benchmarks.loop import rlm_overhead

    stat = rlm_overhead("mock", 1)
    assert stat.n == 1


def test_startup_report_times_import_and_help_in_fresh_processes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--startup", "--json", "--quick"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("python_alone_s", "import_rlm_core_s", "rlm_help_s"):
        assert report[key] > 0, key
        assert report["details"][key]["n"] == 5


def test_concurrent_report_holds_every_run_alive_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--concurrent", "3", "--concurrent-backends", "subprocess", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["concurrent"]
    assert row["runs"] == 3
    # The tree's memory read at the moment every run had its sandbox and waited for the rest.
    assert row["pss_all_alive_mb"] > 0
    assert row["peak_pss_mb"] >= row["pss_all_alive_mb"]

"""Official OOLONG-synth and RULER NIAH files load into items and run through the bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlm_core.bench.loaders import load_items
from rlm_core.cli import main
from rlm_core.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
OOLONG = FIXTURES / "oolong_synth_sample.jsonl"
RULER = FIXTURES / "ruler_niah_sample.jsonl"


def test_oolong_synth_rows_keep_question_gold_type_and_length() -> None:
    items = load_items(OOLONG)
    assert [i.answer_type for i in items] == [
        "ANSWER_TYPE.LABEL",
        "ANSWER_TYPE.NUMERIC",
        "ANSWER_TYPE.DATE",
        "ANSWER_TYPE.COMPARISON",
    ]
    assert items[1].gold == "[2]"
    assert items[0].length == 1024
    assert items[0].context.startswith("The following lines")
    assert items[0].item_id == "file:oolong_synth_sample-101"


def test_ruler_rows_split_the_question_from_the_haystack() -> None:
    item = load_items(RULER)[0]
    assert item.query == (
        "What is the special magic number for quiet-harbor mentioned in the provided text?"
    )
    assert "What is the special magic" not in item.context
    assert "quiet-harbor is: 4821937" in item.context
    assert json.loads(item.gold) == ["4821937"]
    assert item.length == 4096


def test_limit_keeps_n_rows_per_length() -> None:
    assert len(load_items(OOLONG, limit=2)) == 2


def test_a_row_of_neither_format_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: neither an OOLONG-synth row"):
        load_items(bad)
    with pytest.raises(ConfigError, match="not a file"):
        load_items(tmp_path / "missing.jsonl")


def test_bench_scores_official_files_with_their_scorers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    status = main(
        [
            "bench",
            f"file:{OOLONG},file:{RULER}",
            "--model",
            "scripted:reference",
            "--methods",
            "direct",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out.split()
    assert printed == [
        str(out / n) for n in ("results.jsonl", "report.json", "report.md", "plot.png")
    ]
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert {(r["task"], r["length"]) for r in rows} == {
        ("file:oolong_synth_sample", 1024),
        ("file:ruler_niah_sample", 4096),
    }
    assert all(r["score"] == 1.0 for r in rows)

"""``rlm run --record`` through litellm (a local OpenAI-compatible stub), then ``rlm replay``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlm_core.cli import main
from rlm_core.observe.cassette import Cassette, stub_tool
from rlm_core.observe.commands import _untyped
from rlm_core.testing import OpenAIStubServer
from rlm_core.tools import describe_tools

STEPS = [
    "```python\nlines = context.splitlines()\nprint(len(lines))\n"
    "print(llm_query_batched([l[:30] for l in lines[:3]]))\n```",
    "```python\nSUBMIT(answer=f'{len(lines)} lines, first says ' + llm_query(lines[0]))\n```",
]


def reply(messages: list[dict[str, Any]]) -> str:
    if messages[0]["role"] == "system":
        return STEPS[sum(1 for m in messages if m["role"] == "assistant")]
    return "echo:" + str(messages[-1]["content"]).upper()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    doc = folder / "doc.txt"
    doc.write_text("alpha line\nbeta line\ngamma line\n", encoding="utf-8")
    cassette, log = folder / "run.cassette", folder / "run.jsonl"
    with OpenAIStubServer(reply) as server:
        code = main(
            [
                "run", str(doc), "--query", "count", "--model", "openai/stub",
                "--api-base", server.api_base, "--interpreter", "subprocess",
                "--record", str(cassette), "--log", str(log),
            ]
        )  # fmt: skip
    assert code == 0
    return cassette, log


def test_the_cli_records_a_cassette_and_replays_it_on_another_backend(
    recorded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cassette, _ = recorded
    data = json.loads(cassette.read_text())
    assert data["program"]["models"] == {"lm": "openai/stub", "sub_lm": "openai/stub"}
    assert data["models"]["0#s1.c1.2"]["text"] == "echo:GAMMA LINE"
    capsys.readouterr()
    assert main(["replay", str(cassette), "--interpreter", "mock"]) == 0
    out = capsys.readouterr()
    assert "replay on mock matches the recording from subprocess: 2 steps" in out.err
    assert json.loads(out.out) == {"answer": "3 lines, first says echo:ALPHA LINE"}


def test_the_cli_reports_the_first_differing_step(
    recorded: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cassette, _ = recorded
    data = json.loads(cassette.read_text())
    data["steps"]["0#s1"]["stdout"] = data["steps"]["0#s1"]["stdout"].replace("3", "4", 1)
    edited = tmp_path / "edited.cassette"
    edited.write_text(json.dumps(data))
    assert main(["replay", str(edited), "--interpreter", "subprocess"]) == 1
    err = capsys.readouterr().err
    assert "replay on subprocess: step 1 of the root run differs" in err
    assert 'expected: "4\\n[' in err
    assert 'got:      "3\\n[' in err


def test_a_file_that_is_not_a_cassette_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "x.cassette"
    bad.write_text('{"format": "something-else"}')
    assert main(["replay", str(bad)]) == 2
    assert "is not an rlm cassette" in capsys.readouterr().err
    bad.write_text('{"format": "rlm-cassette", "version": 99}')
    assert main(["replay", str(bad)]) == 2
    assert "this rlm reads version 1" in capsys.readouterr().err


def test_recorded_tools_come_back_with_their_signatures() -> None:
    def find(key: str, /, limit: int = 3, *, exact: bool = False, **more: object) -> list[str]:
        """Look a key up."""
        return []

    (spec,) = describe_tools({"find": find})
    (again,) = describe_tools({"find": stub_tool(spec.to_json())})
    assert again == spec
    assert (
        again.render()
        == "find(key: str, /, limit: int = 3, *, exact: bool = False, **more: object) -> list[str]"
    )


def test_signatures_with_unknown_types_replay_untyped() -> None:
    assert _untyped("a: Foo, b: dict[str, Bar] -> c: Baz, d") == "a, b -> c, d"


def test_cassette_round_trip_keeps_bytes_inputs(tmp_path: Path) -> None:
    cassette = Cassette(program={"inputs": {"blob": {"$bytes": "AAEC"}, "s": "x"}}, backend="mock")
    cassette.save(tmp_path / "c.cassette")
    assert Cassette.load(tmp_path / "c.cassette").inputs() == {"blob": b"\x00\x01\x02", "s": "x"}

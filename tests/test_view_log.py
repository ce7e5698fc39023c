"""The event log the viewer reads (format v2), ``rlm view`` and its ``--follow`` server."""

from __future__ import annotations

import io
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rlm_core.cli import main
from rlm_core.lm import Message
from rlm_core.observe.viewer import FollowServer, read_events, render_html
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM
from rlm_core.trajectory import EVENT_FORMAT_VERSION, guess_call_line


def py(src: str) -> str:
    return f"Plan.\n```python\n{src}\n```"


def tool(x: int) -> int:
    """Doubles."""
    return 2 * x


def sub(messages: list[Message]) -> str:
    if messages[0]["role"] == "system":
        return py("SUBMIT(answer='kid')")
    return "a:" + messages[-1]["content"]


def logged_run() -> list[dict[str, Any]]:
    stream = io.StringIO()
    lm = ScriptedLM(
        [
            py(
                "t = tool(2)\nr = llm_query_batched(['x', 'y'])\n\n"
                "k = rlm_query('go')\nprint(t, r, k)"
            ),
            py("SUBMIT(answer=k)"),
        ]
    )
    RLM("q -> answer", lm=lm, sub_lm=ScriptedLM(sub), interpreter="mock", tools=[tool], log=stream)(
        q="?"
    )
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_event_log_says_where_every_call_came_from() -> None:
    events = logged_run()
    root_start = events[0]
    assert root_start["event"] == "run_start"
    assert root_start["format_version"] == EVENT_FORMAT_VERSION == 2
    assert root_start["budget"]["max_llm_calls"] == 50
    assert all(isinstance(e["ts"], float) and "path" in e for e in events)
    (child,) = [e for e in events if e["event"] == "run_start" and e["depth"] == 1]
    assert (child["path"], child["parent_step"], child["parent_site"], child["code_line"]) == (
        "0/1.3",
        1,
        "0#s1.c3",
        4,
    )
    (tool_call,) = [e for e in events if e["event"] == "tool_call"]
    assert (tool_call["name"], tool_call["site"], tool_call["code_line"]) == ("tool", "0#s1.c1", 1)
    batch = [e["call"] for e in events if e["event"] == "sub_call"]
    assert {c["site"] for c in batch} == {"0#s1.c2.0", "0#s1.c2.1"}
    assert {c["batch"] for c in batch} == {"0#s1.c2"}
    steps = [e for e in events if e["event"] == "step" and e["depth"] == 0]
    assert steps[0]["ledger"]["calls"] == 4  # root step 1, two batch prompts, the child's step
    kid_call = next(c for c in steps[0]["step"]["sub_calls"] if c["kind"] == "rlm_query")
    assert (kid_call["child_path"], kid_call["code_line"]) == ("0/1.3", 4)


def test_call_lines_are_read_from_the_source() -> None:
    code = "a = llm_query('x')\nfor i in range(3):\n    b = llm_query(i)\nx.llm_query(1)\n"
    assert guess_call_line(code, "llm_query", 1) == 1
    assert guess_call_line(code, "llm_query", 2) == 3
    assert guess_call_line(code, "llm_query", 7) == 3  # calls from the loop
    assert guess_call_line(code, "rlm_query", 1) is None


def test_reading_a_log_that_is_being_written(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    log.write_bytes(b'{"event": "run_start", "run_id": 1}\nnot json\n{"event": "st')
    events, offset = read_events(log)
    assert [e["event"] for e in events] == ["run_start"]
    with log.open("ab") as f:
        f.write(b'ep", "run_id": 1, "step": {}}\n')
    more, _ = read_events(log, offset=offset)
    assert [e["event"] for e in more] == ["step"]


def test_the_page_is_self_contained_and_guest_text_cannot_break_out() -> None:
    hostile = "</script><script>window.pwned=1</script><!--"
    events = [{"event": "run_start", "run_id": 1, "parent_id": None, "signature": hostile}]
    page = render_html(events, title="t</title>")
    assert "</script><script>window.pwned" not in page
    data = re.search(r'<script type="application/json" id="rlm-data">(.*?)</script>', page, re.S)
    assert data is not None
    assert json.loads(data.group(1)) == events
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page
    assert "<title>t&lt;/title&gt; · rlm run</title>" in page


def test_rlm_view_writes_next_to_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "run.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in logged_run()))
    assert main(["view", str(log), "--no-open"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "run.html")
    assert "rlm-data" in (tmp_path / "run.html").read_text()
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["view", str(tmp_path / "empty.jsonl"), "--no-open"]) == 2
    assert "holds no events" in capsys.readouterr().err


def test_the_follow_server_hands_out_new_events(tmp_path: Path) -> None:
    log = tmp_path / "live.jsonl"
    server = FollowServer(log)
    server.start()
    try:
        page = urllib.request.urlopen(server.url, timeout=10).read().decode()
        assert '"follow":"/events"' in page
        first = json.loads(
            urllib.request.urlopen(server.url + "events?offset=0", timeout=10).read()
        )
        assert first == {"events": [], "offset": 0}  # no log yet: nothing, no error
        log.write_text('{"event": "run_start", "run_id": 1}\n')
        second = json.loads(
            urllib.request.urlopen(server.url + "events?offset=0", timeout=10).read()
        )
        assert [e["event"] for e in second["events"]] == ["run_start"]
        with log.open("a") as f:
            f.write('{"event": "run_end", "run_id": 1}\n')
        url = f"{server.url}events?offset={second['offset']}"
        third = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert [e["event"] for e in third["events"]] == ["run_end"]
    finally:
        server.stop()

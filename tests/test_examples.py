"""Every example runs, driven by the scripted model on the in-process and subprocess backends."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rlm_core.lm import Message
from rlm_core.testing import ScriptedLM
from rlm_mock import MockInterpreter

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def py(src: str) -> str:
    return f"Let me work on it.\n```python\n{src}\n```"


def test_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    lm = ScriptedLM(
        [
            py(
                "import re, collections\n"
                "c = collections.Counter(re.findall(r'\\[CRITICAL\\] ([\\w-]+)/', context))\n"
                "print(c.most_common(3))"
            ),
            py("name, n = c.most_common(1)[0]\nSUBMIT(f'{name} with {n} CRITICAL events')"),
        ]
    )
    result = load("quickstart").main(lm=lm, interpreter="subprocess")
    assert result.answer.startswith("dome-3 with ")
    assert "dome-3" in capsys.readouterr().out


def test_typed_outputs() -> None:
    lm = ScriptedLM(
        [
            py(
                "rows = [l for l in log.splitlines()\n"
                "        if '[CRITICAL]' in l and l.startswith('2024-08')]\n"
                "print(len(rows), rows[:2])"
            ),
            py(
                "inc = [{'date': r[:10], 'subsystem': r.split('] ')[1].split('/')[0],"
                " 'summary': r.split(': ', 1)[1][:40]} for r in rows]\n"
                "SUBMIT(risk='highest', incidents=inc)"
            ),
            py("SUBMIT(risk='high', incidents=inc)"),
        ]
    )
    module = load("typed_outputs")
    result = module.main(lm=lm, interpreter=MockInterpreter)
    assert result.risk == "high"
    assert result.incidents
    assert all(isinstance(i, module.Incident) for i in result.incidents)
    assert all(i.date.startswith("2024-08") for i in result.incidents)
    assert "risk: expected Literal['low', 'medium', 'high']" in lm.calls[2][-1]["content"]


def test_host_tools() -> None:
    lm = ScriptedLM(
        [
            py("low = [p for p in parts if stock(p) < 5]\nprint(low)"),
            py("SUBMIT([order(p, quantity=2) for p in low])"),
        ]
    )
    result = load("host_tools").main(lm=lm, interpreter="subprocess")
    assert result.orders == ["PO-UPS-9-2", "PO-CC-400-2"]
    assert "stock(part: str) -> int" in lm.calls[0][0]["content"]


def test_sub_model() -> None:
    lm = ScriptedLM(
        [
            py(
                "lines = context.splitlines()[2:]\n"
                "qs = [('01', '02', '03'), ('04', '05', '06'),\n"
                "      ('07', '08', '09'), ('10', '11', '12')]\n"
                "quarters = [[l for l in lines if l[5:7] in months] for months in qs]\n"
                "prompts = ['Summarise: ' + '\\n'.join(q[:50]) for q in quarters]\n"
                "answers = llm_query_batched(prompts)\n"
                "print(answers)"
            ),
            py("SUBMIT('\\n'.join(answers))"),
        ],
        model="big",
    )

    def cheap(messages: list[Message]) -> str:
        return f"quarter starting {messages[-1]['content'][11:18]}"

    result = load("sub_model").main(
        lm=lm, sub_lm=ScriptedLM(cheap, model="small"), interpreter=MockInterpreter
    )
    assert result.summary.splitlines() == [
        "quarter starting 2024-01",
        "quarter starting 2024-04",
        "quarter starting 2024-07",
        "quarter starting 2024-10",
    ]
    assert result.usage.models["small"].calls == 4
    assert result.usage.models["big"].calls == 2


def test_choose_backend(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RLM_INTERPRETER", "subprocess")
    lm = ScriptedLM([py("import sys\nprint(sys.flags.isolated)"), py("SUBMIT(sum(numbers))")])
    result = load("choose_backend").main(lm=lm)
    assert result.total == 5050
    assert "backend from configuration: subprocess" in capsys.readouterr().out
    assert "stdout (2 chars):\n1" in lm.calls[1][-1]["content"]  # ran in `python -I`


def test_unit_testing_example(capsys: pytest.CaptureFixture[str]) -> None:
    load("unit_testing").main()
    assert "both tests passed" in capsys.readouterr().out

"""examples/record_replay.py: the first run records, the second replays on another backend."""

import importlib.util
import sys
from pathlib import Path

import pytest

from rlm_core.errors import ReplayMismatchError
from rlm_core.testing import ScriptedLM

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "record_replay.py"


def load() -> object:
    spec = importlib.util.spec_from_file_location("example_record_replay", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def py(src: str) -> str:
    return f"Step.\n```python\n{src}\n```"


def test_record_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = load()
    cassette = tmp_path / "triage.cassette"
    lm = ScriptedLM(
        [
            py(
                "import re, collections\n"
                "c = collections.Counter(re.findall(r'\\[CRITICAL\\] ([\\w/ -]+):', context))\n"
                "name, n = c.most_common(1)[0]\nprint(name, n, support_level(name))"
            ),
            py("SUBMIT(f'{name} ({n} critical events), maintained under {support_level(name)}')"),
        ]
    )
    first = example.main(cassette, lm=lm, interpreter="subprocess")  # type: ignore[attr-defined]
    assert cassette.exists()
    assert "recorded to" in capsys.readouterr().out
    again = example.main(cassette, interpreter="mock")  # type: ignore[attr-defined]
    assert again.answer == first.answer
    assert "replayed from" in capsys.readouterr().out

    # The log the program reads changed: the replay fails at the step whose output moved.
    lines = example.DOCUMENT.read_text(encoding="utf-8").splitlines()  # type: ignore[attr-defined]
    fewer = [line for line in lines if "[CRITICAL] dome-3/cryocooler" not in line]
    changed = tmp_path / "log.txt"
    changed.write_text("\n".join(fewer), encoding="utf-8")
    with pytest.raises(ReplayMismatchError, match="step 1 of the root run called") as caught:
        example.main(cassette, interpreter="mock", document=changed)  # type: ignore[attr-defined]
    assert caught.value.expected == "support_level('dome-3/cryocooler')"
    assert caught.value.got == "support_level('dome-2/azimuth drive')"

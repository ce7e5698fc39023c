"""Against the real E2B cloud: runs only when ``E2B_API_KEY`` is set (``pytest -m live``).

Each test creates a real sandbox, which costs money. Pick the template with
``RLM_E2B_LIVE_TEMPLATE`` (default: E2B's ``base``). The whole conformance suite runs live with
``pytest --pyargs rlm_conformance --rlm-interpreter e2b --rlm-strict``.
"""

from __future__ import annotations

import os

import pytest

from rlm_core.errors import InterpreterUnavailableError
from rlm_e2b import E2BInterpreter

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("E2B_API_KEY"), reason="E2B_API_KEY is not set"),
]

TEMPLATE = os.environ.get("RLM_E2B_LIVE_TEMPLATE") or None


@pytest.mark.anyio
async def test_live_session_with_a_tool_and_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_LIVE_SECRET", "must-not-leak")
    async with E2BInterpreter(template=TEMPLATE, timeout_s=120, metadata={"rlm": "live"}) as interp:
        await interp.register({"add": lambda a, b: a + b})
        await interp.set_variables({"data": "x" * 1_000_000})
        result = await interp.execute(
            "import os\nprint(add(len(data), 1), os.environ.get('RLM_LIVE_SECRET'))"
        )
        assert result.stdout == "1000001 None\n"
        timed = await interp.execute("while True: pass", timeout=2)
        assert timed.timed_out
        assert (await interp.execute("'alive'")).value == "'alive'"


@pytest.mark.anyio
async def test_live_unknown_template_names_the_setting() -> None:
    with pytest.raises(InterpreterUnavailableError, match="template="):
        await E2BInterpreter(template="rlm-no-such-template-7f3a").start()

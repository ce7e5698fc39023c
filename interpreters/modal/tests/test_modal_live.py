"""Live tests against Modal's cloud: run with ``pytest -m live`` when credentials are set.

They create real sandboxes (billed to the token's workspace) and close them at the end.
Without MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, or with MODAL_SERVER_URL pointing at this
machine, they are skipped.
"""

from __future__ import annotations

import os
import urllib.parse

import pytest

from rlm_modal import ModalInterpreter


def _live_reason() -> str | None:
    if not (os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET")):
        return "set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET to run live Modal tests"
    host = urllib.parse.urlparse(os.environ.get("MODAL_SERVER_URL", "")).hostname or ""
    if host in ("localhost", "::1") or host.startswith("127."):
        return "MODAL_SERVER_URL points at this machine, not Modal's cloud"
    return None


pytestmark = [
    pytest.mark.live,
    pytest.mark.anyio,
    pytest.mark.skipif(_live_reason() is not None, reason=_live_reason() or ""),
]


async def test_live_session_with_tool_callback() -> None:
    async with ModalInterpreter() as interp:
        await interp.register({"double": lambda x: 2 * x})
        await interp.set_variables({"ctx": "x" * 1_000_000})
        result = await interp.execute("print(double(21)); len(ctx)", timeout=60)
    assert result.stdout == "42\n"
    assert result.value == "1000000"


async def test_live_network_is_blocked_by_default() -> None:
    async with ModalInterpreter() as interp:
        result = await interp.execute(
            "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=5)", timeout=60
        )
    assert result.error is not None


async def test_live_timeout_keeps_the_session() -> None:
    async with ModalInterpreter() as interp:
        await interp.execute("kept = 1", timeout=60)
        timed_out = await interp.execute("while True: pass", timeout=2)
        after = await interp.execute("kept", timeout=60)
    assert timed_out.timed_out
    assert after.value == "1"

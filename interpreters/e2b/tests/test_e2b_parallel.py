"""Scale-out on E2B: many sessions at once, each in its own sandbox, limited, all closed."""

from __future__ import annotations

import pytest

from rlm_conformance.fixtures import context_fixture
from rlm_core.errors import InterpreterUnavailableError
from rlm_core.interpreter import Interpreter
from rlm_core.parallel import run_many, with_interpreter
from rlm_e2b.testing import E2BStandIn

pytestmark = pytest.mark.anyio


standin = context_fixture(E2BStandIn)


async def count_words(interp: Interpreter, text: str) -> int:
    await interp.set_variables({"text": text})
    result = await interp.execute("import time; time.sleep(0.3)\nlen(text.split())")
    if result.error is not None:
        raise RuntimeError(f"{result.error.type}: {result.error.message}")
    assert result.value is not None
    return int(result.value)


async def test_many_sessions_each_in_its_own_sandbox(standin: E2BStandIn) -> None:
    texts = ["one", "two words", "three more words", "a b c d", "e f g h i", "1 2 3 4 5 6"]
    # One creation is refused as if the account's sandbox quota were reached.
    standin.fail_next_create(429, "You have reached the maximum number of concurrent sandboxes")
    job = with_interpreter(
        lambda: standin.interpreter(retries=0),
        count_words,
    )
    results = await run_many(job, texts, limit=2)

    assert [r.item for r in results] == texts  # input order, whatever finished first
    failed = [r for r in results if not r.ok]
    assert len(failed) == 1
    assert isinstance(failed[0].error, InterpreterUnavailableError)
    assert "limit" in str(failed[0].error)
    for r in results:
        if r.ok:
            assert r.value == len(r.item.split())
    created = standin.calls_named("POST /v2/sandboxes")
    deleted = {c.sandbox_id for c in standin.calls_named("DELETE /sandboxes")}
    assert len(created) == len(texts)
    assert len(deleted) == len(texts) - 1  # every sandbox that existed was killed
    assert standin.peak_live_sandboxes == 2  # the limit held, and was used
    assert standin.live_sandboxes == []


async def test_a_failing_job_still_closes_its_sandbox(standin: E2BStandIn) -> None:
    async def broken(interp: Interpreter, item: int) -> int:
        result = await interp.execute(f"{item} // 0")
        assert result.error is not None
        raise ValueError(result.error.type)

    job = with_interpreter(lambda: standin.interpreter(), broken)
    results = await run_many(job, [1, 2, 3], limit=3)
    assert [str(r.error) for r in results] == ["ZeroDivisionError"] * 3
    assert len(standin.calls_named("DELETE /sandboxes")) == 3
    assert standin.live_sandboxes == []

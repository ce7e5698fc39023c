"""The robustness clauses can fail: each runs against a backend broken the way a guest once was.

The broken backends live in a generated module run by a separate pytest process, as a third
party would run the suite; each must fail the clause named next to it, and honest backends must
pass the same clauses. Guest-runtime defects are reproduced by booting a real subprocess guest
whose runtime has one safeguard edited out; the others are mock backends that misbehave as the
real defect did (a lost session, an AttributeError, a reply handed to the wrong thread).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlm_conformance.meta import run_suite_module

BROKEN_GUESTS = '''
from __future__ import annotations

import dataclasses
import inspect
import time

import pytest

from rlm_conformance import InterpreterConformance
from rlm_conformance.meta import suite_for
from rlm_core.bridge.protocol import HEADER
from rlm_core.errors import SessionLostError
from rlm_core.interpreter import DEFAULT_MAX_OUTPUT_CHARS, Capabilities
from rlm_mock import MockInterpreter
from rlm_subprocess import SubprocessInterpreter


class EditedGuest:
    """A channel that boots the guest runtime with ``PATCHES`` applied to its source."""

    def __init__(self, inner, patches):
        self._inner = inner
        self._patches = patches
        self._booted = False

    async def send(self, data):
        if not self._booted:  # the first frame carries the runtime's source
            self._booted = True
            data = bytes(data)
            json_len, _ = HEADER.unpack(data[: HEADER.size])
            body = data[HEADER.size : HEADER.size + json_len]
            source = data[HEADER.size + json_len :]
            for old, new in self._patches:
                assert old in source, old
                source = source.replace(old, new)
            data = HEADER.pack(json_len, len(source)) + body + source
        await self._inner.send(data)

    async def receive(self):
        return await self._inner.receive()

    async def aclose(self):
        await self._inner.aclose()

    def diagnostics(self):
        return self._inner.diagnostics()


class ForkedChildTalks(SubprocessInterpreter):
    # The guest without its forked-child checks: the child sends its own result frame.
    async def open_channel(self):
        return EditedGuest(await super().open_channel(), [(b"os.getpid() != self.pid", b"False")])


class SendsWholeErrors(SubprocessInterpreter):
    # The guest without its cap on error text: a 200 MB message comes back as "too large".
    async def open_channel(self):
        patch = (b"ERROR_TEXT_CHARS = 100000", b"ERROR_TEXT_CHARS = 10**12")
        return EditedGuest(await super().open_channel(), [patch])


class HandsRepliesToAnyThread(MockInterpreter):
    # One reply slot for every guest thread: a waiting thread may read another call's reply.
    async def start(self):
        await super().start()
        session = self._session
        dispatch = type(session)._dispatch
        slot = {}

        def shared_slot(name, args, kwargs):
            slot["reply"] = dispatch(session, name, args, kwargs)
            time.sleep(0.0005)
            return slot["reply"]

        session._dispatch = shared_slot


class LosesSessionOn(MockInterpreter):
    # Ends the session when a cell contains TRIGGER, as a guest runtime that crashed would.
    TRIGGER = ""

    async def execute(self, code, *, timeout=None, max_output_chars=DEFAULT_MAX_OUTPUT_CHARS):
        if self.TRIGGER in code:
            raise SessionLostError("the guest stopped answering (ReferenceError)")
        return await super().execute(code, timeout=timeout, max_output_chars=max_output_chars)


class EntropyEndsSession(LosesSessionOn):
    TRIGGER = "urandom"


class TempfileEndsSession(LosesSessionOn):
    TRIGGER = "mkstemp"


class HugeErrorEndsSession(LosesSessionOn):
    TRIGGER = "raise ValueError('x' *"


class DeepSubmitEndsSession(LosesSessionOn):
    TRIGGER = "value = [value]"


class HugeSubmitEndsSession(LosesSessionOn):
    TRIGGER = "SUBMIT('y' *"


class ThreadTimeoutLosesSession(MockInterpreter):
    # After a cell timed out while a thread waited on a tool, every later cell is lost.
    async def execute(self, code, *, timeout=None, max_output_chars=DEFAULT_MAX_OUTPUT_CHARS):
        if getattr(self, "poisoned", False):
            raise SessionLostError("the cell ran past its timeout")
        result = await super().execute(code, timeout=timeout, max_output_chars=max_output_chars)
        if result.timed_out and "Thread" in code:
            self.poisoned = True
        return result


class StdioWithoutBuffer(MockInterpreter):
    # sys.stdout.buffer is missing, as in the capture before it had a binary layer.
    async def execute(self, code, *, timeout=None, max_output_chars=DEFAULT_MAX_OUTPUT_CHARS):
        code = code.replace(".buffer.", ".missing_buffer.")
        return await super().execute(code, timeout=timeout, max_output_chars=max_output_chars)


class ClaimsHostFilesHidden(MockInterpreter):
    # In-process, so the host's working directory is the guest's.
    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(super().capabilities, host_files_visible=False)


class BindsKeywordsAsPositional(MockInterpreter):
    # Sends arguments as Signature.bind orders them: lookup(key='apple') becomes lookup('apple').
    async def register(self, tools=None, outputs=None):
        def positional(fn):
            signature = inspect.signature(fn)

            def wrapper(*args, **kwargs):
                bound = signature.bind(*args, **kwargs)
                return fn(*bound.args, **bound.kwargs)

            wrapper.__signature__ = signature
            return wrapper

        await super().register({k: positional(v) for k, v in (tools or {}).items()}, outputs)


TestForkedChildTalks = suite_for(ForkedChildTalks)
TestSendsWholeErrors = suite_for(SendsWholeErrors)
TestHandsRepliesToAnyThread = suite_for(HandsRepliesToAnyThread)
TestEntropyEndsSession = suite_for(EntropyEndsSession)
TestTempfileEndsSession = suite_for(TempfileEndsSession)
TestHugeErrorEndsSession = suite_for(HugeErrorEndsSession)
TestDeepSubmitEndsSession = suite_for(DeepSubmitEndsSession)
TestHugeSubmitEndsSession = suite_for(HugeSubmitEndsSession)
TestThreadTimeoutLosesSession = suite_for(ThreadTimeoutLosesSession)
TestStdioWithoutBuffer = suite_for(StdioWithoutBuffer)
TestClaimsHostFilesHidden = suite_for(ClaimsHostFilesHidden)
TestBindsKeywordsAsPositional = suite_for(BindsKeywordsAsPositional)
TestHonestMock = suite_for(MockInterpreter)
TestHonestSubprocess = suite_for(SubprocessInterpreter)
'''

# (class, clause) pairs that must FAIL: each broken backend is caught by its clause.
MUST_FAIL = [
    ("TestForkedChildTalks", "test_forked_child_never_reaches_the_host"),
    ("TestSendsWholeErrors", "test_huge_exception_message_is_a_code_error"),
    ("TestHandsRepliesToAnyThread", "test_threads_each_get_their_own_tool_reply"),
    ("TestEntropyEndsSession", "test_entropy_sources_return_values"),
    ("TestTempfileEndsSession", "test_temporary_files_can_be_made"),
    ("TestHugeErrorEndsSession", "test_huge_exception_message_is_a_code_error"),
    ("TestDeepSubmitEndsSession", "test_deeply_nested_submit_is_a_code_error"),
    ("TestHugeSubmitEndsSession", "test_oversized_submit_is_a_code_error"),
    (
        "TestThreadTimeoutLosesSession",
        "test_timeout_while_a_thread_waits_on_a_tool_keeps_the_session",
    ),
    ("TestStdioWithoutBuffer", "test_bytes_written_to_the_std_streams_are_captured"),
    ("TestClaimsHostFilesHidden", "test_host_paths_are_not_visible"),
    ("TestBindsKeywordsAsPositional", "test_keyword_arguments_reach_tools_as_keywords"),
]

# The same clauses on honest backends: they pass, so the failures above are not the clause
# failing always.
MUST_PASS = [
    (honest, clause)
    for honest in ("TestHonestMock", "TestHonestSubprocess")
    for clause in sorted({clause for _, clause in MUST_FAIL} - {"test_host_paths_are_not_visible"})
    if not (honest == "TestHonestMock" and clause == "test_forked_child_never_reaches_the_host")
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    """Run every pair once in one pytest process; map (class, clause) to its outcome."""
    pairs = MUST_FAIL + MUST_PASS
    run = run_suite_module(
        BROKEN_GUESTS,
        tmp_path_factory.mktemp("broken_guests"),
        select=" or ".join(f"({cls} and {clause})" for cls, clause in pairs),
        env={k: None for k in os.environ if k.startswith(("RLM_", "PYTEST_"))},
        module_name="test_broken_guests.py",
    )
    return {pair: outcome for pair, (outcome, _) in run.outcomes.items()}


@pytest.mark.parametrize(("cls", "clause"), MUST_FAIL, ids=[c for c, _ in MUST_FAIL])
def test_broken_guest_is_caught(
    outcomes: dict[tuple[str, str], str], cls: str, clause: str
) -> None:
    assert outcomes.get((cls, clause)) == "failed", f"{cls}::{clause} did not catch the defect"


@pytest.mark.parametrize(("cls", "clause"), MUST_PASS, ids=[f"{c}-{t}" for c, t in MUST_PASS])
def test_honest_backend_passes(outcomes: dict[tuple[str, str], str], cls: str, clause: str) -> None:
    assert outcomes.get((cls, clause)) == "passed", (
        f"{cls}::{clause}: {outcomes.get((cls, clause))}"
    )


def test_generated_module_is_what_runs() -> None:
    # Guards the edit points the broken guests rely on: a renamed safeguard fails here, not as
    # a mysteriously passing broken backend.
    source = (Path(__file__).parents[2] / "rlm_core" / "bridge" / "guest.py").read_text()
    assert "os.getpid() != self.pid" in source
    assert "ERROR_TEXT_CHARS = 100000" in source

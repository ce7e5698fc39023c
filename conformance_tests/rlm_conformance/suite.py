"""InterpreterConformance: every conformance group in one class for backends to subclass.

Each group lives in its own module (``_lifecycle``, ``_execution``, ...) whose docstring says
what to look at when that group fails; this class only aggregates them.
"""

from __future__ import annotations

from rlm_conformance._blocking import BlockingTests
from rlm_conformance._concurrency import ConcurrencyTests
from rlm_conformance._context import ContextTests
from rlm_conformance._errors import ErrorTests
from rlm_conformance._execution import ExecutionTests
from rlm_conformance._guard import OverrideGuard
from rlm_conformance._isolation import IsolationTests
from rlm_conformance._lifecycle import LifecycleTests
from rlm_conformance._processes import ProcessTests
from rlm_conformance._robustness import RobustnessTests
from rlm_conformance._submit import SubmitTests
from rlm_conformance._timeouts import TimeoutTests
from rlm_conformance._tools import ToolTests
from rlm_conformance._truncation import TruncationTests
from rlm_conformance._variables import VariableTests

__all__ = ["InterpreterConformance", "RPCSandboxConformance"]


class InterpreterConformance(
    LifecycleTests,
    ExecutionTests,
    ErrorTests,
    VariableTests,
    ToolTests,
    ContextTests,
    SubmitTests,
    TruncationTests,
    TimeoutTests,
    IsolationTests,
    ProcessTests,
    ConcurrencyTests,
    BlockingTests,
    RobustnessTests,
    OverrideGuard,
):
    """The conformance suite: subclass it and define the fixture ``make_interpreter``.

    Example::

        class TestMyConformance(InterpreterConformance):
            @pytest.fixture
            def make_interpreter(self) -> Callable[[], Interpreter]:
                return lambda: MyInterpreter(option="value")

    Every test gets a fresh, started session (fixture ``interpreter``) that is closed afterwards.
    Tests marked with :func:`rlm_conformance.requires` skip, with a reason, when the backend's
    ``capabilities`` rule them out. A backend whose ``start()`` raises
    ``InterpreterUnavailableError`` skips every test with its message, unless ``--rlm-strict``,
    ``RLM_CONFORMANCE_STRICT=1`` or ``RLM_REQUIRED_BACKENDS`` make that a failure.

    Tuning (class attributes): ``cell_timeout``, ``timeout_probe_s``, ``hang_limit_s``,
    ``large_variable_bytes``, ``huge_variable_bytes``, ``huge_output_chars``,
    ``tool_loop_calls``, ``thread_count``, ``thread_tool_calls``, ``huge_error_chars``,
    ``huge_submit_chars``, ``deep_nesting``, ``backend_name``. Never redefine a ``test_*``
    method silently: the override guard fails unless the replacement is
    ``@pytest.mark.xfail(reason=..., strict=True)``.
    """


InterpreterConformance.conformance_base = InterpreterConformance


class RPCSandboxConformance(InterpreterConformance):
    """The suite tuned for a backend whose guest I/O crosses an SDK's RPC stack (E2B, Modal).

    Each tool call there costs about 2 ms instead of microseconds over a pipe, so the 1,000-call
    cell gets 120 s and any call 240 s before it counts as a hang, and each of the 16 guest
    threads that share one stdin/stdout pair makes 100 tool calls (1,600 replies) instead of
    300, so no cell outlives the RPC stack's throughput on a busy CI machine.
    """

    cell_timeout = 120.0
    thread_tool_calls = 100
    hang_limit_s = 240.0

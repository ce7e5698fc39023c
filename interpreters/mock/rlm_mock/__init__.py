"""rlmbox-mock: an in-process interpreter for fast tests.

:class:`MockInterpreter` really executes cells, in this process, on a worker thread, with the
same guest runtime every sandbox uses (so SUBMIT, tools, truncation and errors behave the
same). It isolates nothing. :class:`ScriptedInterpreter`, which executes nothing and replays
results you script, lives in :mod:`rlm_core.testing` next to ``ScriptedLM``; it is importable
from here too.
"""

from typing import TYPE_CHECKING, Any

from rlm_mock._interpreter import MockInterpreter

if TYPE_CHECKING:
    from rlm_core.testing import ScriptedInterpreter

__all__ = ["MockInterpreter", "ScriptedInterpreter"]


def __getattr__(name: str) -> Any:
    # rlm_core.testing holds the loop's test doubles; importing the backend must not load them.
    if name == "ScriptedInterpreter":
        from rlm_core.testing import ScriptedInterpreter

        return ScriptedInterpreter
    raise AttributeError(f"module 'rlm_mock' has no attribute {name!r}")

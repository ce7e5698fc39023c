"""rlmbox-mock: in-process interpreters for fast tests.

:class:`MockInterpreter` really executes cells, in this process, on a worker thread, with the
same guest runtime every sandbox uses (so SUBMIT, tools, truncation and errors behave the
same). It isolates nothing. :class:`ScriptedInterpreter` executes nothing: it replays results
you script, for unit tests of code that drives an interpreter.
"""

from rlm_mock._interpreter import MockInterpreter
from rlm_mock._scripted import ScriptedInterpreter

__all__ = ["MockInterpreter", "ScriptedInterpreter"]

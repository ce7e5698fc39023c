"""The loop's observer hooks: where every model call, host-tool call, cell and run can be seen.

The loop names each call with a :class:`Site` that does not depend on timing: the run's path in
the recursion tree, the step, and the call's ordinal within that step (a batch slot adds its
index). So the same program gives the same sites on every backend and in every order of
concurrent completion, which is what lets a cassette replay ``llm_query_batched`` and child runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rlm_core.lm import Completion, Message

if TYPE_CHECKING:
    from rlm_core.budget import Budget
    from rlm_core.trajectory import Step

__all__ = ["ModelCall", "Observer", "Observers", "RunInfo", "Site", "ToolCall"]

ModelCall = Callable[[], Awaitable[Completion]]
"""The model call an observer may wrap, skip (replay) or time."""

ToolCall = Callable[[], Awaitable[Any]]
"""The host-tool call an observer may wrap or skip."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    """Where a call happens in a run tree, independent of timing.

    ``run`` is the run's path: ``"0"`` for the root, ``"0/3.2"`` for the child started by call 2
    of step 3 of the root. ``call`` is ``"m"`` (or ``"m2"``, ``"m3"`` for retries) for the model
    call that writes a step, ``"cell"`` for the step's cell, ``"c2"`` for the second host-tool
    call the cell made, and ``"c2.5"`` for slot 5 of a batch made by that call.
    """

    run: str
    step: int
    call: str
    name: str
    """``"model"``, ``"cell"``, or the host tool's name (``llm_query`` for a batch slot)."""

    @property
    def key(self) -> str:
        """A stable string form, e.g. ``"0/3.2#s1.c4.0"``."""
        return f"{self.run}#s{self.step}.{self.call}"

    @property
    def parent_key(self) -> str | None:
        """The key of the site this one is nested in (a batch slot's batch call, a call's cell)."""
        if self.call.startswith("c") and "." in self.call:
            return f"{self.run}#s{self.step}.{self.call.split('.')[0]}"
        if self.call.startswith("c"):
            return f"{self.run}#s{self.step}.cell"
        return None

    def slot(self, index: int) -> Site:
        """The site of one prompt of a batch made at this site."""
        return Site(run=self.run, step=self.step, call=f"{self.call}.{index}", name="llm_query")

    def child_run(self) -> str:
        """The path of the child run a ``rlm_query`` at this site starts."""
        return f"{self.run}/{self.step}.{self.call[1:]}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """What an observer learns when a run starts."""

    path: str
    run_id: int
    depth: int
    model: str
    signature: str
    budget: Budget
    parent: Site | None
    """The ``rlm_query`` call that started this run (None for the root)."""


class Observer:
    """Hooks the loop calls; this base does nothing, subclasses override what they need.

    ``model_call`` and ``tool_call`` wrap the call: an observer calls ``proceed()`` to let it
    happen (possibly inside a span), or answers without calling it (a replay).
    """

    def run_started(self, info: RunInfo) -> None:
        """A run (root or child) began."""

    def run_finished(self, info: RunInfo, error: BaseException | None) -> None:
        """A run ended, with the exception that ended it, if any."""

    async def model_call(
        self, site: Site, model: str, messages: Sequence[Message], proceed: ModelCall
    ) -> Completion:
        """One model call: a step's reply (``site.name == "model"``) or an ``llm_query`` prompt."""
        return await proceed()

    async def tool_call(
        self, site: Site, args: Sequence[Any], kwargs: Mapping[str, Any], proceed: ToolCall
    ) -> Any:
        """One host-tool call from a cell (built-in or user tool)."""
        return await proceed()

    def cell_started(self, site: Site, code: str) -> None:
        """A step's cell is about to run."""

    def cell_finished(self, site: Site, step: Step) -> None:
        """The cell ran (``step`` holds what it did) or its session was lost."""

    def step_finished(self, site: Site, step: Step) -> None:
        """A step is complete, outputs validated; ``site.call`` is ``"cell"``."""


class Observers(Observer):
    """Several observers as one; the first one given wraps the others."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.items = tuple(observers)

    def run_started(self, info: RunInfo) -> None:
        """Tell every observer."""
        for o in self.items:
            o.run_started(info)

    def run_finished(self, info: RunInfo, error: BaseException | None) -> None:
        """Tell every observer, innermost first (so traces close after recordings end)."""
        for o in reversed(self.items):
            o.run_finished(info, error)

    async def model_call(
        self, site: Site, model: str, messages: Sequence[Message], proceed: ModelCall
    ) -> Completion:
        """Nest the observers around the call."""
        call = proceed
        for o in reversed(self.items):
            call = _bind_model(o, site, model, messages, call)
        return await call()

    async def tool_call(
        self, site: Site, args: Sequence[Any], kwargs: Mapping[str, Any], proceed: ToolCall
    ) -> Any:
        """Nest the observers around the call."""
        call = proceed
        for o in reversed(self.items):
            call = _bind_tool(o, site, args, kwargs, call)
        return await call()

    def cell_started(self, site: Site, code: str) -> None:
        """Tell every observer."""
        for o in self.items:
            o.cell_started(site, code)

    def cell_finished(self, site: Site, step: Step) -> None:
        """Tell every observer, innermost first."""
        for o in reversed(self.items):
            o.cell_finished(site, step)

    def step_finished(self, site: Site, step: Step) -> None:
        """Tell every observer, innermost first."""
        for o in reversed(self.items):
            o.step_finished(site, step)


def _bind_model(
    o: Observer, site: Site, model: str, messages: Sequence[Message], inner: ModelCall
) -> ModelCall:
    return lambda: o.model_call(site, model, messages, inner)


def _bind_tool(
    o: Observer, site: Site, args: Sequence[Any], kwargs: Mapping[str, Any], inner: ToolCall
) -> ToolCall:
    return lambda: o.tool_call(site, args, kwargs, inner)

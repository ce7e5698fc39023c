"""Live printing of a run with rich, for ``verbose=True`` and the CLI."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from rlm_core.trajectory import Event

__all__ = ["VerbosePrinter"]

_SHOWN_CHARS = 2_000


def _cut(text: str) -> str:
    if len(text) <= _SHOWN_CHARS:
        return text
    return text[: _SHOWN_CHARS // 2] + "\n…\n" + text[-_SHOWN_CHARS // 2 :]


class VerbosePrinter:
    """An event sink that prints each step as a panel: reasoning, code, output.

    Args:
        console: Where to print; stderr by default, so stdout stays clean for results.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def __call__(self, event: Event) -> None:
        """Print one event."""
        kind = event.get("event")
        indent = "  " * int(event.get("depth", 0))
        if kind == "run_start":
            self.console.print(
                Text(
                    f"{indent}▶ run {event['run_id']}: {event['signature']} ({event['model']})",
                    style="bold",
                )
            )
        elif kind == "step":
            self._step(event["step"], indent)
        elif kind == "session_restart":
            self.console.print(
                Text(f"{indent}⟳ sandbox replaced: {event['reason']}", style="yellow")
            )
        elif kind == "run_end":
            if "error" in event:
                self.console.print(Text(f"{indent}✗ {event['error']}", style="bold red"))
            else:
                note = " (extracted)" if event.get("extracted") else ""
                self.console.print(
                    Text(
                        f"{indent}✓ run {event['run_id']} done{note}: {event['outputs']}",
                        style="bold green",
                    )
                )

    def _step(self, step: dict[str, Any], indent: str) -> None:
        parts: list[Any] = []
        if step["reasoning"]:
            parts.append(Text(_cut(step["reasoning"]), style="italic"))
        if step["code"]:
            parts.append(Syntax(step["code"], "python", theme="ansi_dark", line_numbers=False))
        output = step["output"]
        if output:
            style = "red" if step["error"] else "dim"
            parts.append(Text(_cut(output), style=style))
        calls = len(step["sub_calls"])
        title = f"{indent}step {step['index']} · {step['kind']}"
        if calls:
            title += f" · {calls} sub-call{'s' if calls != 1 else ''}"
        if step["final"]:
            title += " · final"
        self.console.print(Panel(Group(*parts), title=title, title_align="left"))

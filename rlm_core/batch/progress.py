"""The batch's progress bar on stderr: rows done, rows/s, ETA, tokens and USD so far."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["BatchProgress"]


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- rows/s" if speed is None else f"{speed:.2f} rows/s", style="cyan")


class BatchProgress:
    """Counts finished rows and what they used; shows it live when ``enabled``."""

    def __init__(self, total: int | None, *, skipped: int, enabled: bool) -> None:
        self.tokens = 0
        self.cost_usd = 0.0
        self.ok = 0
        self.failed = 0
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]rlm batch"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[usage]}"),
                console=Console(stderr=True),
                speed_estimate_period=60.0,
            )
            todo = None if total is None else max(0, total - skipped)
            self._task = self._progress.add_task("rows", total=todo, usage=self._usage())
            self._progress.start()

    def _usage(self) -> str:
        return f"{self.tokens:,} tok ${self.cost_usd:.4f} ({self.failed} failed)"

    def row_done(self, record: dict[str, Any]) -> None:
        """Count one finished row."""
        usage = record.get("usage") or {}
        self.tokens += int(usage.get("total_tokens") or 0)
        self.cost_usd += float(usage.get("cost_usd") or 0.0)
        if record.get("ok"):
            self.ok += 1
        else:
            self.failed += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, usage=self._usage())

    def close(self) -> None:
        """Stop the live display (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

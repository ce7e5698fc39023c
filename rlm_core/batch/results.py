"""The batch's output: one JSON line per finished row, appended as each row finishes.

The file is the batch's memory. Opening it reads the ids already written (those rows are done
and a rerun skips them) and cuts off a half-written last line left by a killed process; every
record then goes out in one ``write`` to a file opened for appending, so a crash or Ctrl-C
loses at most the rows still in flight.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rlm_core.errors import ConfigError

__all__ = ["ResultsFile"]


class ResultsFile:
    """Append-only JSONL of row records, each with a unique ``"id"``.

    Args:
        path: The output file; created if missing, resumed if present.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.done: set[str] = set()
        """Ids already in the file: rows a rerun skips."""
        self.repaired = False
        """True when a half-written last line was cut off on open."""
        self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # a line cut short by a kill: its row reruns
            with self.path.open("r+b") as f:
                f.truncate(complete)
            self.repaired = True
        for number, line in enumerate(data[:complete].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self.done.add(str(record["id"]))
            except (ValueError, KeyError, TypeError):
                raise ConfigError(
                    f"{self.path}:{number} is not a batch result line; give another --output "
                    "file (this one is not the output of an earlier rlm batch)"
                ) from None

    def append(self, record: dict[str, Any]) -> bool:
        """Write ``record`` as one line; returns False (writing nothing) if its id is done."""
        row_id = str(record["id"])
        if row_id in self.done:
            return False
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        data = line.encode()
        written = 0
        while written < len(data):  # one write() for any sane size; loop for the rest
            written += os.write(self._fd, data[written:])
        self.done.add(row_id)
        return True

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

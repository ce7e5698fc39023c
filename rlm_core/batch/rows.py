"""Input rows of a batch, read lazily from JSONL, CSV or Parquet (by file extension).

Each row is a mapping of field names to values; its id is the ``id_field`` value when the row
has one, else its position in the file (0-based), so a rerun over the same file finds the same ids.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rlm_core.errors import ConfigError

__all__ = ["FORMATS", "Row", "count_rows", "read_rows"]

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
"""Input file extensions and the format each means."""


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One input row: its id, its fields, or why it could not be read."""

    id: str
    fields: Mapping[str, Any]
    problem: str | None = None
    """Set when the row is unusable (a line that is not a JSON object): recorded, not run."""


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of {str(path)!r}: use a file ending in "
            + ", ".join(sorted(FORMATS))
        )
    if not path.is_file():
        raise ConfigError(f"input file {str(path)!r} does not exist")
    return fmt


def read_rows(path: str | Path, *, id_field: str = "id") -> Iterator[Row]:
    """Yield the rows of ``path`` one at a time.

    Raises:
        ConfigError: Unknown extension, missing file, or Parquet without pyarrow.
    """
    path = Path(path)
    fmt = _format(path)
    records = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}[fmt](path)
    for index, record in enumerate(records):
        if isinstance(record, str):
            yield Row(str(index), {}, problem=record)
            continue
        raw_id = record.get(id_field)
        row_id = str(index) if raw_id is None or raw_id == "" else str(raw_id)
        yield Row(row_id, record)


def count_rows(path: str | Path) -> int:
    """How many rows ``path`` holds (for the progress bar), without parsing JSON."""
    path = Path(path)
    fmt = _format(path)
    if fmt == "parquet":
        return int(_pyarrow_parquet().ParquetFile(path).metadata.num_rows)
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            return sum(1 for _ in csv.DictReader(f))
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _jsonl(path: Path) -> Iterator[dict[str, Any] | str]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                yield f"line {number} is not JSON: {exc}"
                continue
            if not isinstance(value, dict):
                yield f"line {number} is a JSON {type(value).__name__}, not an object"
                continue
            yield value


def _csv(path: Path) -> Iterator[dict[str, Any] | str]:
    with path.open(newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet
    except ImportError:
        raise ConfigError('reading Parquet needs pyarrow: pip install "rlmbox[parquet]"') from None
    return pyarrow.parquet


def _parquet(path: Path) -> Iterator[dict[str, Any] | str]:
    for batch in _pyarrow_parquet().ParquetFile(path).iter_batches(batch_size=1024):
        yield from batch.to_pylist()

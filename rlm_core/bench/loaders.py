"""Loaders for the official benchmark files a user has locally: OOLONG-synth and RULER NIAH JSONL.

OOLONG-synth rows carry ``context_window_text``, ``question``, ``answer`` (a Python list
literal), ``answer_type`` and ``context_len``. RULER's prepared NIAH rows carry ``index``,
``input`` (the haystack followed by the question), ``outputs`` (the needles) and ``length``.
Both become :class:`~rlm_core.bench.tasks.Item`; the format is detected from the fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlm_core.bench.tasks import Item
from rlm_core.errors import ConfigError

__all__ = ["load_items"]

_OOLONG_FIELDS = ("context_window_text", "question", "answer", "answer_type", "context_len")
_RULER_FIELDS = ("input", "outputs", "length")


def _oolong(row: dict[str, Any], where: str, task: str) -> Item:
    answer_type = str(row["answer_type"])
    if not answer_type.startswith("ANSWER_TYPE."):
        answer_type = "ANSWER_TYPE." + answer_type
    return Item(
        task=task,
        item_id=f"{task}-{row.get('id', where)}",
        length=int(row["context_len"]),
        context=str(row["context_window_text"]),
        query=str(row["question"]),
        gold=str(row["answer"]),
        answer_type=answer_type,
        meta={"source": where, "dataset": row.get("dataset"), "task": row.get("task")},
    )


def _ruler(row: dict[str, Any], where: str, task: str) -> Item:
    text = str(row["input"])
    # RULER puts the question after the haystack: the last line asking for the magic value.
    cut = max(text.rfind("\nWhat is the special magic"), text.rfind("\nWhat are all the special"))
    if cut < 0:
        raise ConfigError(f"{where}: no 'What is/are ... special magic ...' question in `input`")
    outputs = row["outputs"]
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise ConfigError(f"{where}: `outputs` must be a list of strings")
    return Item(
        task=task,
        item_id=f"{task}-{row.get('index', where)}",
        length=int(row["length"]),
        context=text[:cut].strip(),
        query=text[cut:].strip(),
        gold=json.dumps(outputs),
        answer_type="NIAH",
        meta={"source": where},
    )


def load_items(path: str | Path, *, limit: int | None = None) -> list[Item]:
    """Read an OOLONG-synth or RULER NIAH JSONL file; ``limit`` rows per length at most.

    Raises:
        ConfigError: The file is missing, a line is not JSON, or a row has neither format.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file} is not a file; pass a local OOLONG-synth or RULER JSONL file")
    task = "file:" + file.stem
    items: list[Item] = []
    per_length: dict[int, int] = {}
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{file.name}:{number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"{where}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: each line must be a JSON object")
            if all(k in row for k in _OOLONG_FIELDS):
                item = _oolong(row, where, task)
            elif all(k in row for k in _RULER_FIELDS):
                item = _ruler(row, where, task)
            else:
                raise ConfigError(
                    f"{where}: neither an OOLONG-synth row (needs {', '.join(_OOLONG_FIELDS)}) "
                    f"nor a RULER NIAH row (needs {', '.join(_RULER_FIELDS)})"
                )
            seen = per_length.get(item.length, 0)
            if limit is not None and seen >= limit:
                continue
            per_length[item.length] = seen + 1
            items.append(item)
    return items

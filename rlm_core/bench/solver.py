"""Helpers shared by the host and the scripted reference code that runs inside the sandbox.

The scripted reference policy ships this module's source into the REPL, so it is stdlib-only
and runs on any guest Python 3.8+. It parses records and questions and aggregates labels; it
never labels a record itself: labels come from ``llm_query`` (a reader), as they would for a
real model.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "LABEL_PROMPT_HEAD",
    "NEEDLE_QUESTION",
    "answer_oolong",
    "answer_pairs",
    "compare_word",
    "format_date",
    "label_prompts",
    "parse_label_replies",
    "parse_question",
    "parse_records",
]

RECORD_RE = re.compile(r"^Date: (\w{3} \d{2}, \d{4}) \|\| User: (\d+) \|\| Instance: (.*)$", re.M)
"""One OOLONG-synth record line: date, user id, the instance text."""

LABEL_PROMPT_HEAD = "Classify each numbered line into exactly one of these labels: "
"""How a labelling prompt starts; the reader recognises it."""

NEEDLE_QUESTION = "What is the special magic number for {key} mentioned in the provided text?"
"""The RULER NIAH question (one key)."""

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def parse_records(text: str) -> list[tuple[str, str, str]]:
    """Every ``Date: ... || User: ... || Instance: ...`` line, as (date, user, instance)."""
    return [(m.group(1), m.group(2), m.group(3)) for m in RECORD_RE.finditer(text)]


def date_key(date: str) -> tuple[int, int, int]:
    """``"Mar 05, 2023"`` as (year, month, day), for sorting and filtering."""
    month, day, year = date.replace(",", "").split()
    return int(year), MONTHS.index(month) + 1, int(day)


def format_date(key: tuple[int, int, int]) -> str:
    """(year, month, day) back to the records' ``"Mar 05, 2023"`` form."""
    return f"{MONTHS[key[1] - 1]} {key[2]:02d}, {key[0]}"


def compare_word(count_a: int, count_b: int) -> str:
    """How OOLONG words a comparison of two label counts: ``Answer: A is <word> B``."""
    if count_a > count_b:
        return "more common than"
    return "less common than" if count_a < count_b else "same frequency as"


def parse_question(question: str) -> dict[str, Any]:
    """What an OOLONG-style or NIAH question asks, as a dict with a ``kind`` key.

    Kinds: ``needle``, ``count``, ``most``, ``least``, ``compare``, ``user_count``,
    ``month_count``, ``earliest``, ``pairs``, ``pairs_both``; ``unknown`` otherwise.
    """
    q = " ".join(question.split())
    m = re.search(r"special magic numbers? for (.+?) mentioned in the provided text", q)
    if m:
        return {"kind": "needle", "key": m.group(1).strip()}
    labels = re.findall(r"'([^']+)'", q)
    if "list all pairs of user ids" in q.lower():
        if " and at least one " in q and len(labels) >= 2:
            return {"kind": "pairs_both", "labels": labels[:2]}
        return {"kind": "pairs", "labels": labels[:1]}
    if "most common" in q and "Which" in q:
        return {"kind": "most"}
    if "least common" in q and "Which" in q:
        return {"kind": "least"}
    if "more common, less common, or the same frequency" in q and len(labels) >= 2:
        return {"kind": "compare", "labels": labels[:2]}
    m = re.search(r"user with ID (\d+)", q)
    if m and labels:
        return {"kind": "user_count", "user": m.group(1), "label": labels[0]}
    m = re.search(r"dated in (\w+) (\d{4})", q)
    if m and labels and m.group(1) in MONTH_NAMES:
        month = MONTH_NAMES.index(m.group(1)) + 1
        return {"kind": "month_count", "month": month, "year": int(m.group(2)), "label": labels[0]}
    if "earliest date" in q and labels:
        return {"kind": "earliest", "label": labels[0]}
    if q.startswith("How many") and labels:
        return {"kind": "count", "label": labels[0]}
    return {"kind": "unknown"}


def label_prompts(instances: list[str], labels: list[str], chunk_chars: int) -> list[str]:
    """Prompts asking a reader to label ``instances``, each prompt under ``chunk_chars``."""
    head = (
        LABEL_PROMPT_HEAD
        + ", ".join(labels)
        + (".\nReply with one line per input line, formatted `<number>: <label>`.\n\n")
    )
    prompts: list[str] = []
    lines: list[str] = []
    size = len(head)
    for i, text in enumerate(instances):
        line = f"{i}. {text}"
        if lines and size + len(line) + 1 > chunk_chars:
            prompts.append(head + "\n".join(lines))
            lines, size = [], len(head)
        lines.append(line)
        size += len(line) + 1
    if lines:
        prompts.append(head + "\n".join(lines))
    return prompts


def parse_label_replies(replies: list[str], count: int) -> list[str]:
    """Labels by line number from the readers' ``<number>: <label>`` replies ('' if missing)."""
    labels = [""] * count
    for reply in replies:
        for m in re.finditer(r"^\s*(\d+)\s*:\s*(.+?)\s*$", reply, re.M):
            i = int(m.group(1))
            if 0 <= i < count:
                labels[i] = m.group(2).strip().lower()
    return labels


def answer_oolong(
    question: dict[str, Any], rows: list[tuple[str, str, str]], labels: list[str]
) -> str:
    """Answer an OOLONG-style question from records and their labels, in OOLONG's format."""
    kind = question["kind"]
    counts: dict[str, int] = {}
    for label in labels:
        if label:
            counts[label] = counts.get(label, 0) + 1
    if kind == "count":
        return f"Answer: {counts.get(question['label'], 0)}"
    if kind in ("most", "least"):
        if not counts:
            return "Label: unknown"
        ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
        return "Label: " + (ranked[-1][0] if kind == "most" else ranked[0][0])
    if kind == "compare":
        a, b = question["labels"]
        word = compare_word(counts.get(a, 0), counts.get(b, 0))
        return f"Answer: {a} is {word} {b}"
    if kind == "user_count":
        n = sum(
            1
            for (_d, user, _t), label in zip(rows, labels, strict=False)
            if user == question["user"] and label == question["label"]
        )
        return f"Answer: {n}"
    if kind == "month_count":
        n = 0
        for (date, _u, _t), label in zip(rows, labels, strict=False):
            year, month, _day = date_key(date)
            if (year, month) == (question["year"], question["month"]) and label == question[
                "label"
            ]:
                n += 1
        return f"Answer: {n}"
    if kind == "earliest":
        dates = [
            date_key(d)
            for (d, _u, _t), label in zip(rows, labels, strict=False)
            if label == question["label"]
        ]
        return "Date: " + (format_date(min(dates)) if dates else "none")
    return "Answer: unknown"


def answer_pairs(
    question: dict[str, Any], rows: list[tuple[str, str, str]], labels: list[str]
) -> str:
    """All pairs of users satisfying a pairs question, one ``(a, b)`` per line, a < b."""
    seen: dict[str, set[str]] = {}
    for (_d, user, _t), label in zip(rows, labels, strict=False):
        seen.setdefault(user, set()).add(label)
    wanted = question["labels"]
    users = sorted(
        (u for u, have in seen.items() if all(label in have for label in wanted)), key=int
    )
    pairs = [f"({a}, {b})" for i, a in enumerate(users) for b in users[i + 1 :]]
    return "\n".join(pairs) if pairs else "no pairs"


def dumps(value: Any) -> str:
    """JSON text (kept here so the guest code needs no other import)."""
    return json.dumps(value)

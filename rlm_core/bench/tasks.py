"""The benchmark tasks, generated locally from a seed at a chosen input length.

Lengths are in tokens estimated as characters / 4 (:data:`CHARS_PER_TOKEN`), the usual rule
for English text with GPT-style tokenizers. ``sniah`` is RULER's single needle in a haystack;
``oolong`` is OOLONG-synth-style aggregation over labelled records; ``oolong-pairs`` asks for
every pair of users that satisfies a condition over the same kind of records.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import random
import re
from collections.abc import Callable
from typing import Any

from rlm_core.bench.solver import MONTH_NAMES, NEEDLE_QUESTION, compare_word, format_date
from rlm_core.errors import ConfigError

__all__ = [
    "CHARS_PER_TOKEN",
    "GENERATORS",
    "LABELS",
    "TEMPLATES",
    "Item",
    "format_length",
    "generate",
    "parse_lengths",
]

CHARS_PER_TOKEN = 4
"""The token estimate used for ``--lengths`` and ``--context-window``: characters / 4."""

LABELS = (
    "abbreviation",
    "entity",
    "description and abstract concept",
    "human being",
    "location",
    "numeric value",
)
"""The labels of the records (TREC coarse classes, as in OOLONG-synth's trec_coarse split)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """One question about one input, with its gold answer.

    ``gold`` is stored as OOLONG stores it (a Python list literal such as ``"[12]"``) for
    OOLONG answers, a JSON list of needles for NIAH, and a JSON list of ``[a, b]`` pairs for
    pairs questions; ``answer_type`` selects the scorer.
    """

    task: str
    item_id: str
    length: int
    """Target input length in tokens (the bucket; ``context_tokens`` is the real estimate)."""
    context: str
    query: str
    gold: str
    answer_type: str
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def context_tokens(self) -> int:
        """The input's length in estimated tokens."""
        return len(self.context) // CHARS_PER_TOKEN


def _item_id(task: str, length: int, index: int) -> str:
    """``oolong-8k-3``: the task, the length bucket and the index (``generate`` adds the seed)."""
    return f"{task}-{format_length(length)}-{index}"


def parse_lengths(text: str) -> list[int]:
    """``"8k,32k,128k,1m"`` as token counts.

    Raises:
        ConfigError: A part is not a positive number with an optional k or m suffix.
    """
    lengths = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", part)
        if not m:
            raise ConfigError(f"bad length {part!r}: use numbers like 8k, 32k, 128k, 1m or 5000")
        scale = {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
        value = int(float(m.group(1)) * scale)
        if value < 500:
            raise ConfigError(f"length {part!r} is too small: use at least 500 tokens")
        lengths.append(value)
    return lengths


def format_length(tokens: int) -> str:
    """``128000`` as ``"128k"``."""
    if tokens % 1_000_000 == 0:
        return f"{tokens // 1_000_000}m"
    if tokens % 1_000 == 0:
        return f"{tokens // 1_000}k"
    return str(tokens)


# ---- sniah ---------------------------------------------------------------------------------

_ADJECTIVES = [
    "amber",
    "quiet",
    "brisk",
    "hollow",
    "velvet",
    "rustic",
    "silver",
    "crooked",
    "gentle",
    "frozen",
    "lucky",
    "narrow",
    "scarlet",
    "humble",
    "windy",
    "golden",
    "ancient",
    "tidy",
    "bitter",
    "cosmic",
]
_NOUNS = [
    "harbor",
    "lantern",
    "meadow",
    "falcon",
    "pepper",
    "canyon",
    "violin",
    "orchard",
    "glacier",
    "compass",
    "thimble",
    "beacon",
    "saddle",
    "quarry",
    "tulip",
    "anchor",
    "kettle",
    "ribbon",
    "walnut",
    "comet",
]
_NOISE = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
)
_SUBJECTS = [
    "The committee",
    "A traveller",
    "The old mill",
    "Our neighbour",
    "The river",
    "A small shop",
]
_VERBS = [
    "noticed",
    "described",
    "ignored",
    "remembered",
    "repaired",
    "painted",
    "visited",
    "measured",
]
_OBJECTS = [
    "the northern road",
    "a quiet evening",
    "the broken fence",
    "an early train",
    "the market square",
    "a long letter",
    "the winter garden",
    "the harbour lights",
]


def _needle(key: str, number: int) -> str:
    return f"One of the special magic numbers for {key} is: {number}. "


def _key(rng: random.Random) -> str:
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"


def _sniah(rng: random.Random, length: int, index: int, haystack: str) -> Item:
    chars = length * CHARS_PER_TOKEN
    key = _key(rng)
    number = rng.randrange(1_000_000, 10_000_000)
    distractors: list[str] = []
    if haystack == "distractor":
        keys = {key}
        while len(distractors) < 4:
            other = _key(rng)
            if other not in keys:
                keys.add(other)
                distractors.append(_needle(other, rng.randrange(1_000_000, 10_000_000)))
    sentences: list[str] = []
    size = 0
    while size < chars:
        if haystack == "noise":
            sentence = _NOISE
        else:
            sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}. "
        sentences.append(sentence)
        size += len(sentence)
    depth = rng.random()
    needles = [(depth, _needle(key, number))] + [(rng.random(), d) for d in distractors]
    for where, text in sorted(needles, reverse=True):
        sentences.insert(int(where * len(sentences)), text)
    context = "".join(sentences)
    return Item(
        task="sniah",
        item_id=_item_id("sniah", length, index),
        length=length,
        context=context,
        query=NEEDLE_QUESTION.format(key=key),
        gold=f'["{number}"]',
        answer_type="NIAH",
        meta={"depth": round(depth, 4), "haystack": haystack, "key": key},
    )


# ---- oolong records ------------------------------------------------------------------------

_W = {
    "abbr": [
        "NASA",
        "UNESCO",
        "DNA",
        "HTML",
        "FIFA",
        "OPEC",
        "RADAR",
        "SCUBA",
        "LASER",
        "NATO",
        "GPS",
        "CPU",
    ],
    "thing": [
        "telescope",
        "printing press",
        "bicycle",
        "steam engine",
        "vaccine",
        "piano",
        "compass",
        "camera",
        "light bulb",
        "telephone",
        "microscope",
        "parachute",
    ],
    "place": [
        "Louvre",
        "Golden Gate Bridge",
        "Mount Kilimanjaro",
        "Angkor Wat",
        "Lake Baikal",
        "Sahara",
        "Acropolis",
        "Grand Canyon",
        "Machu Picchu",
        "Great Barrier Reef",
    ],
    "animal": [
        "dolphins",
        "owls",
        "bees",
        "wolves",
        "penguins",
        "cats",
        "salmon",
        "bats",
        "ants",
        "camels",
    ],
    "concept": [
        "democracy",
        "irony",
        "entropy",
        "nostalgia",
        "inflation",
        "karma",
        "gravity",
        "empathy",
    ],
    "material": ["metal", "wood", "stone", "fabric", "glass", "plastic"],
    "group": ["animal", "plant", "instrument", "game", "dish", "drink"],
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "abbreviation": (
        "What does {abbr} stand for?",
        "What is the full form of {abbr}?",
        "{abbr} is short for what?",
    ),
    "entity": (
        "What {material} is the {thing} usually made of?",
        "Which {group} is named after the {place}?",
        "What kind of {group} do {animal} prefer?",
    ),
    "description and abstract concept": (
        "Why do {animal} migrate in winter?",
        "What is the meaning of {concept}?",
        "How does a {thing} work?",
    ),
    "human being": (
        "Who invented the {thing}?",
        "Which scientist first studied {animal}?",
        "Who designed the {place}?",
    ),
    "location": (
        "Where is the {place} located?",
        "In which country can you visit the {place}?",
        "Where do {animal} live in the wild?",
    ),
    "numeric value": (
        "How many {animal} live near the {place}?",
        "In what year was the {thing} invented?",
        "How tall is the {place} in meters?",
    ),
}
"""Record texts by label. A reader infers the label from the wording (see ``reader.py``)."""

_START = datetime.date(2022, 1, 1)


def _instance(rng: random.Random, label: str) -> str:
    template = rng.choice(TEMPLATES[label])
    return template.format(**{k: rng.choice(v) for k, v in _W.items()})


@dataclasses.dataclass(slots=True)
class _Records:
    header: str
    rows: list[tuple[datetime.date, str, str, str]]  # date, user, text, label

    def text(self) -> str:
        lines = [
            f"Date: {format_date((d.year, d.month, d.day))} || User: {u} || Instance: {t}"
            for d, u, t, _ in self.rows
        ]
        return self.header + "\n" + "\n".join(lines) + "\n"


def _records(
    rng: random.Random,
    length: int,
    *,
    weights: dict[str, float],
) -> _Records:
    """Records filling ``length`` tokens, labels drawn with ``weights``."""
    chars = length * CHARS_PER_TOKEN
    header = (
        "The following lines contain general-knowledge questions, one per line, each with its "
        "date and the ID of the user who asked it. Each question can be classified as one of "
        "the labels: " + ", ".join(LABELS) + "."
    )
    n_users = max(12, chars // 1_500)
    users = [str(u) for u in rng.sample(range(10_000, 99_999), n_users)]
    rows: list[tuple[datetime.date, str, str, str]] = []
    size = len(header)
    labels = list(weights)
    probs = [weights[k] for k in labels]
    while size < chars:
        label = rng.choices(labels, probs)[0]
        date = _START + datetime.timedelta(days=rng.randrange(730))
        user = rng.choice(users)
        text = _instance(rng, label)
        rows.append((date, user, text, label))
        size += len(text) + 45
    return _Records(header, rows)


def _line_chars(row: tuple[datetime.date, str, str, str]) -> int:
    return len("Date: Jan 01, 2022 || User:  || Instance: \n") + len(row[1]) + len(row[2])


def _counts(rows: list[tuple[datetime.date, str, str, str]]) -> dict[str, int]:
    counts = dict.fromkeys(LABELS, 0)
    for *_, label in rows:
        counts[label] += 1
    return counts


def _weights(rng: random.Random) -> dict[str, float]:
    # Distinct weights, so the most and least common labels are clear at every length.
    shares = rng.sample([1, 2, 3, 5, 8, 13], len(LABELS))
    return {label: float(s) for label, s in zip(LABELS, shares, strict=True)}


_KINDS = ("count", "most", "least", "compare", "user_count", "month_count", "earliest")


def _oolong(rng: random.Random, length: int, index: int, _haystack: str) -> Item:
    recs = _records(rng, length, weights=_weights(rng))
    rows = recs.rows
    counts = _counts(rows)
    kind = _KINDS[index % len(_KINDS)]
    label = rng.choice([k for k in LABELS if counts[k] > 0])
    answer_type = "ANSWER_TYPE.NUMERIC"
    if kind == "count":
        query = (
            f"How many data points should be classified as label '{label}'? "
            "Give your final answer in the form 'Answer: number'."
        )
        gold = f"[{counts[label]}]"
    elif kind in ("most", "least"):
        ranked = sorted(LABELS, key=lambda k: counts[k])
        pick = ranked[-1] if kind == "most" else ranked[0]
        word = "most" if kind == "most" else "least"
        query = (
            f"Which of the labels is the {word} common in the data? "
            "Give your final answer in the form 'Label: answer'."
        )
        gold = repr([pick])
        answer_type = "ANSWER_TYPE.LABEL"
    elif kind == "compare":
        a, b = rng.sample(LABELS, 2)
        word = compare_word(counts[a], counts[b])
        query = (
            f"Is label '{a}' more common, less common, or the same frequency as label '{b}'? "
            f"Give your final answer in the form 'Answer: {a} is [X] {b}', where X is "
            "'more common than', 'less common than', or 'same frequency as'."
        )
        gold = repr([word])
        answer_type = "ANSWER_TYPE.COMPARISON"
    elif kind == "user_count":
        per_user: dict[str, int] = {}
        for _d, u, _t, _l in rows:
            per_user[u] = per_user.get(u, 0) + 1
        user = max(sorted(per_user), key=lambda u: per_user[u])
        n = sum(1 for _d, u, _t, lab in rows if u == user and lab == label)
        query = (
            f"For the user with ID {user}, how many data points should be classified as label "
            f"'{label}'? Give your final answer in the form 'Answer: number'."
        )
        gold = f"[{n}]"
    elif kind == "month_count":
        d = rng.choice(rows)[0]
        n = sum(
            1
            for day, _u, _t, lab in rows
            if (day.year, day.month) == (d.year, d.month) and lab == label
        )
        query = (
            f"How many data points dated in {MONTH_NAMES[d.month - 1]} {d.year} should be "
            f"classified as label '{label}'? Give your final answer in the form 'Answer: number'."
        )
        gold = f"[{n}]"
    else:
        first = min(day for day, _u, _t, lab in rows if lab == label)
        query = (
            f"What is the earliest date of a data point with label '{label}'? "
            "Give your final answer in the form 'Date: Mon DD, YYYY'."
        )
        gold = f"[datetime.date({first.year}, {first.month}, {first.day})]"
        answer_type = "ANSWER_TYPE.DATE"
    return Item(
        task="oolong",
        item_id=_item_id("oolong", length, index),
        length=length,
        context=recs.text(),
        query=query,
        gold=gold,
        answer_type=answer_type,
        meta={"kind": kind, "records": len(rows)},
    )


def _pairs(rng: random.Random, length: int, index: int, _haystack: str) -> Item:
    rare_label = rng.choice(LABELS)
    weights = {k: v for k, v in _weights(rng).items() if k != rare_label}
    recs0 = _records(rng, length, weights=weights)
    users = sorted({u for _d, u, _t, _l in recs0.rows})
    chosen = rng.sample(users, rng.randint(4, 10))
    # The rare records go to the chosen users only; the rows are rebuilt with them inserted.
    rows = list(recs0.rows)
    for user in chosen:
        for _ in range(rng.randint(1, 2)):
            date = _START + datetime.timedelta(days=rng.randrange(730))
            rows.insert(
                rng.randrange(len(rows) + 1), (date, user, _instance(rng, rare_label), rare_label)
            )
    # Drop ordinary rows from the end until the input is back at the requested size.
    size = len(_Records(recs0.header, rows).text())
    target = length * CHARS_PER_TOKEN
    for i in range(len(rows) - 1, -1, -1):
        line = _line_chars(rows[i])
        if size - line < target:
            break
        if rows[i][3] != rare_label:
            del rows[i]
            size -= line
    recs = _Records(recs0.header, rows)
    both = index % 2 == 1
    if both:
        other = rng.choice([k for k in LABELS if k != rare_label])
        have = {u for _d, u, _t, lab in rows if lab == other}
        qualifying = sorted((u for u in chosen if u in have), key=int)
        query = (
            "List all pairs of user IDs (no duplicate pairs, list the lower ID first) where both "
            f"users have at least one data point with label '{rare_label}' and at least one "
            f"data point with label '{other}'. Give each pair on its own line as (ID1, ID2)."
        )
    else:
        qualifying = sorted(chosen, key=int)
        query = (
            "List all pairs of user IDs (no duplicate pairs, list the lower ID first) where both "
            f"users have at least one data point with label '{rare_label}'. Give each pair on "
            "its own line as (ID1, ID2)."
        )
    pairs = [[a, b] for i, a in enumerate(qualifying) for b in qualifying[i + 1 :]]
    return Item(
        task="oolong-pairs",
        item_id=_item_id("oolong-pairs", length, index),
        length=length,
        context=recs.text(),
        query=query,
        gold=json.dumps(pairs),
        answer_type="PAIRS",
        meta={"qualifying_users": len(qualifying), "records": len(rows)},
    )


Generator = Callable[[random.Random, int, int, str], Item]

GENERATORS: dict[str, Generator] = {"sniah": _sniah, "oolong": _oolong, "oolong-pairs": _pairs}
"""Task name to generator: (rng, length in tokens, item index, haystack kind) -> Item."""


def generate(
    task: str, length: int, n: int, *, seed: int = 0, haystack: str = "distractor"
) -> list[Item]:
    """``n`` items of ``task`` at ``length`` tokens; the same seed gives the same items.

    Raises:
        ConfigError: The task or haystack kind is unknown.
    """
    if task not in GENERATORS:
        raise ConfigError(f"unknown task {task!r}; choose from {', '.join(GENERATORS)}")
    if haystack not in ("noise", "distractor"):
        raise ConfigError(f"unknown haystack {haystack!r}; choose 'noise' or 'distractor'")
    items = []
    for index in range(n):
        rng = random.Random(f"{seed}:{task}:{length}:{index}")
        item = GENERATORS[task](rng, length, index, haystack)
        items.append(dataclasses.replace(item, item_id=f"{item.item_id}-s{seed}"))
    return items

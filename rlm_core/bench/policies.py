"""Scripted models that prove the harness without a real model: a reader, a reference and a lazy.

``scripted:reference`` is an RLM policy that writes correct code for each task kind; its
sub-calls are answered by a deterministic *reader* that really reads its prompt, but only the
first ``window`` characters of it (default :data:`READ_WINDOW`), as a model with a context
window would. Used as a direct model, the same reader fails once the input outgrows its window.
``scripted:lazy`` answers without looking at the input: its scores are near chance.
Scripted calls report chars/4 tokens and a nominal price (:data:`SCRIPTED_USD_PER_MTOK`), so
the USD columns and ``--max-usd`` are exercised too.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from rlm_core.bench import solver
from rlm_core.bench.tasks import CHARS_PER_TOKEN, LABELS
from rlm_core.errors import ConfigError
from rlm_core.lm import LM, Completion, Message, Usage, resolve_lm

__all__ = [
    "READ_WINDOW",
    "SCRIPTED_USD_PER_MTOK",
    "ModelSet",
    "ScriptedModel",
    "classify",
    "direct_prompt",
    "read",
    "resolve_models",
]

READ_WINDOW = 100_000
"""Characters a scripted model reads of each prompt (about 25k tokens)."""

SCRIPTED_USD_PER_MTOK = 1.0
"""Nominal USD per million tokens charged by scripted models (prompt and completion)."""

_SOLVER_SOURCE = Path(solver.__file__).read_text(encoding="utf-8")
_QUERY_RE = re.compile(r"<<Q>>(.*?)<</Q>>", re.S)
_LABEL_TASK = "TASK label-records"


def classify(text: str) -> str:
    """The label a careful reader gives one record text ('' when the wording is unknown)."""
    t = text.strip()
    if "stand for" in t or "full form of" in t or "is short for" in t:
        return "abbreviation"
    if t.startswith(("Who ", "Which scientist")):
        return "human being"
    if t.startswith(("How many", "In what year", "How tall")):
        return "numeric value"
    if t.startswith(("Where ", "In which country")):
        return "location"
    if t.startswith(("Why do", "How does")) or "meaning of" in t:
        return "description and abstract concept"
    if "made of" in t or "named after" in t or t.startswith("What kind of"):
        return "entity"
    return ""


def direct_prompt(context: str, query: str, context_window_tokens: int) -> tuple[str, bool]:
    """The one-prompt form of a question, cut to the window; True when the input was cut.

    The question comes first (and is repeated last), so a reader of the first N characters
    still sees it; a cut leaves a visible note where the input stops.
    """
    head = f"Question: {query}\n\nInput:\n"
    tail = f"\n\nAnswer the question about the input above. Question: {query}\n"
    room = context_window_tokens * CHARS_PER_TOKEN - len(head) - len(tail) - 200
    if len(context) <= room:
        return head + context + tail, False
    kept = max(room, 0)
    note = (
        f"\n[bench: the input was cut to its first {kept:,} of {len(context):,} characters "
        f"to fit a context window of {context_window_tokens:,} tokens]"
    )
    return head + context[:kept] + note + tail, True


def read(prompt: str, window: int = READ_WINDOW) -> str:
    """Answer a prompt by reading its first ``window`` characters with deterministic rules."""
    visible = prompt[:window]
    if visible.startswith(solver.LABEL_PROMPT_HEAD):
        lines = re.findall(r"^(\d+)\. (.*)$", visible, re.M)
        return "\n".join(f"{i}: {classify(text) or 'unknown'}" for i, text in lines)
    m = re.search(r"Question: (.*?)\n\n", visible, re.S)
    if not m:
        return "I cannot tell what is being asked."
    question = solver.parse_question(m.group(1))
    kind = question["kind"]
    if kind == "needle":
        key = re.escape(question["key"])
        found = re.search(rf"special magic numbers? for {key} is:? (\d+)", visible)
        if found is None:
            return "I could not find that number in the text."
        return f"The special magic number for {question['key']} is {found.group(1)}."
    if kind == "unknown":
        return "I do not know."
    rows = solver.parse_records(visible)
    labels = [classify(text) for _d, _u, text in rows]
    if kind in ("pairs", "pairs_both"):
        return solver.answer_pairs(question, rows, labels)
    return solver.answer_oolong(question, rows, labels)


def guess(question_text: str) -> str:
    """A lazy answer of the right form, without reading the input (seeded by the question)."""
    rng = random.Random(question_text)
    kind = solver.parse_question(question_text)["kind"]
    if kind == "needle":
        return str(rng.randrange(1_000_000, 10_000_000))
    if kind in ("most", "least"):
        return "Label: " + rng.choice(LABELS)
    if kind == "compare":
        return "Answer: " + rng.choice(
            ["more common than", "less common than", "same frequency as"]
        )
    if kind == "earliest":
        return f"Date: {solver.format_date((2022 + rng.randrange(2), rng.randint(1, 12), 1))}"
    if kind in ("pairs", "pairs_both"):
        return f"({rng.randrange(10_000, 50_000)}, {rng.randrange(50_000, 99_999)})"
    return f"Answer: {rng.randint(0, 60)}"


# ---- RLM policies: code written step by step from what the REPL printed -----------------

_EXPLORE = """\
Let me see the question and the size of the input first.
```python
_q = query if "query" in globals() else prompt
print("<<Q>>" + str(_q) + "<</Q>>")
print(len(context))
```"""


def _code(body: str) -> str:
    note = "I know the question now; this step computes and submits the answer."
    return f"{note}\n```python\n{_SOLVER_SOURCE}\n{body}\n```"


def _reference_step(messages: Sequence[Message], window: int) -> str:
    replies = sum(1 for m in messages if m["role"] == "assistant")
    if replies == 0:
        return _EXPLORE
    found = _QUERY_RE.search("\n".join(m["content"] for m in messages if m["role"] == "user"))
    if replies >= 2 or found is None:  # the solution failed: give up visibly
        return '```python\nSUBMIT("no answer")\n```'
    question = found.group(1)
    can_recurse = "rlm_query(" in messages[0]["content"]
    chunk = window // 2
    if question.startswith(_LABEL_TASK):
        return _code(
            "rows = parse_records(context)\n"
            f"prompts = label_prompts([r[2] for r in rows], {list(LABELS)!r}, {chunk})\n"
            "labels = parse_label_replies(llm_query_batched(prompts), len(rows))\n"
            "SUBMIT(dumps(labels))"
        )
    spec = solver.parse_question(question)
    kind = spec["kind"]
    if kind == "needle":
        key = spec["key"]
        ask = (
            f"rlm_query({question!r}, context=snippets)"
            if can_recurse
            else f"llm_query('Question: ' + {question!r} + '\\n\\nInput:\\n' + snippets)"
        )
        return _code(
            f"spots = [m.start() for m in re.finditer(re.escape({key!r}), context)]\n"
            "snippets = '\\n...\\n'.join(context[max(0, s - 300): s + 300] for s in spots)\n"
            "print(len(spots), 'places mention the key')\n"
            f"answer = {ask}\n"
            "print(answer)\n"
            "SUBMIT(answer)"
        )
    if kind == "unknown":
        return '```python\nSUBMIT("I do not know how to answer this question.")\n```'
    if can_recurse:
        # One child per million characters: each child labels its part with llm_query.
        label = (
            "parts_n = max(1, -(-len(context) // 1000000))\n"
            "size = max(1, -(-len(rows) // parts_n))\n"
            "labels = []\n"
            "for start in range(0, len(rows), size):\n"
            "    text = '\\n'.join('Date: %s || User: %s || Instance: %s' % r "
            "for r in rows[start:start + size])\n"
            f"    reply = rlm_query({_LABEL_TASK + ': label every record line of context'!r}, "
            "context=text)\n"
            "    labels += json.loads(reply)\n"
        )
    else:
        label = (
            f"prompts = label_prompts([r[2] for r in rows], {list(LABELS)!r}, {chunk})\n"
            "labels = parse_label_replies(llm_query_batched(prompts), len(rows))\n"
        )
    answer = "answer_pairs" if kind in ("pairs", "pairs_both") else "answer_oolong"
    return _code(
        "rows = parse_records(context)\n"
        + label
        + f"answer = {answer}({spec!r}, rows, labels)\n"
        + "print(answer[:500])\n"
        + "SUBMIT(answer)"
    )


_LAZY_LOOK = """\
I only need the question.
```python
print("<<Q>>" + str(query if "query" in globals() else prompt) + "<</Q>>")
```"""


def _lazy_step(messages: Sequence[Message]) -> str:
    replies = sum(1 for m in messages if m["role"] == "assistant")
    if replies == 0:
        return _LAZY_LOOK
    found = _QUERY_RE.search("\n".join(m["content"] for m in messages if m["role"] == "user"))
    answer = guess(found.group(1) if found else "")
    return f"```python\nSUBMIT({answer!r})\n```"


class ScriptedModel:
    """A scripted model (an :class:`~rlm_core.lm.LM`) that answers with a function of the chat.

    Usage is estimated as characters / 4 and priced at :data:`SCRIPTED_USD_PER_MTOK`.
    """

    def __init__(self, name: str, answer: Callable[[Sequence[Message]], str]) -> None:
        self._name = name
        self._answer = answer

    @property
    def model(self) -> str:
        """The scripted model's name, such as ``scripted:reference``."""
        return self._name

    async def complete(self, messages: Sequence[Message]) -> Completion:
        """Answer at once, with usage proportional to the text read and written."""
        text = self._answer(messages)
        prompt = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN
        completion = len(text) // CHARS_PER_TOKEN + 1
        cost = (prompt + completion) * SCRIPTED_USD_PER_MTOK / 1e6
        return Completion(text=text, usage=Usage(prompt, completion, cost), model=self._name)


def _policy_model(name: str, window: int, lazy: bool) -> ScriptedModel:
    def answer(messages: Sequence[Message]) -> str:
        in_repl = bool(messages) and messages[0]["role"] == "system"
        if in_repl:
            return _lazy_step(messages) if lazy else _reference_step(messages, window)
        prompt = messages[-1]["content"] if messages else ""
        if lazy:
            m = re.search(r"Question: (.*?)\n\n", prompt[:window], re.S)
            return guess(m.group(1) if m else "")
        return read(prompt, window)

    return ScriptedModel(name, answer)


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSet:
    """The models of one bench run: the RLM's root, its sub-model, and the direct baseline."""

    root: LM
    sub: LM
    direct: LM


SCRIPTED = ("reference", "lazy")


def resolve_models(spec: str, sub_spec: str | None = None, api_base: str | None = None) -> ModelSet:
    """``scripted:reference[:WINDOW]``, ``scripted:lazy`` or any litellm model string.

    Raises:
        ConfigError: An unknown scripted policy or a bad window.
    """
    if spec.startswith("scripted:"):
        _, _, rest = spec.partition(":")
        policy, _, window_text = rest.partition(":")
        if policy not in SCRIPTED:
            raise ConfigError(
                f"unknown scripted model {spec!r}; use scripted:reference or scripted:lazy"
            )
        if window_text and not window_text.isdigit():
            raise ConfigError(f"bad window in {spec!r}: use e.g. scripted:reference:50000")
        window = int(window_text) if window_text else READ_WINDOW
        model = _policy_model(spec, window, lazy=policy == "lazy")
        return ModelSet(root=model, sub=model, direct=model)
    root = resolve_lm(spec, api_base=api_base)
    sub = root if sub_spec is None else resolve_lm(sub_spec, api_base=api_base)
    return ModelSet(root=root, sub=sub, direct=root)

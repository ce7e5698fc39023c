"""Generated tasks: reproducible, the requested size, and answerable by reading them."""

from __future__ import annotations

import pytest

from rlm_core.bench import solver
from rlm_core.bench.policies import classify, direct_prompt, read
from rlm_core.bench.scoring import score
from rlm_core.bench.tasks import CHARS_PER_TOKEN, generate, parse_lengths
from rlm_core.errors import ConfigError

TASKS = ("sniah", "oolong", "oolong-pairs")


def test_parse_lengths_reads_k_and_m_and_rejects_nonsense() -> None:
    assert parse_lengths("8k, 32k,128k,1m,5000") == [8_000, 32_000, 128_000, 1_000_000, 5_000]
    with pytest.raises(ConfigError, match="8k"):
        parse_lengths("eight")


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_items_other_seed_other_items(task: str) -> None:
    a = generate(task, 4_000, 3, seed=1)
    b = generate(task, 4_000, 3, seed=1)
    c = generate(task, 4_000, 3, seed=2)
    assert [(i.context, i.query, i.gold) for i in a] == [(i.context, i.query, i.gold) for i in b]
    assert [i.context for i in a] != [i.context for i in c]
    assert len({i.item_id for i in a + c}) == 6


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("length", [2_000, 20_000])
def test_items_have_the_requested_length_in_chars_over_four(task: str, length: int) -> None:
    for item in generate(task, length, 2):
        assert length <= len(item.context) / CHARS_PER_TOKEN <= length * 1.1


@pytest.mark.parametrize("task", TASKS)
def test_reading_the_whole_input_answers_every_item(task: str) -> None:
    """The gold answers agree with what a reader of the whole text computes."""
    for item in generate(task, 6_000, 14):
        prompt, cut = direct_prompt(item.context, item.query, 1_000_000)
        assert not cut
        assert score(read(prompt, window=10**9), item.gold, item.answer_type) == 1.0, item.item_id


def test_every_record_text_says_its_label_to_a_reader() -> None:
    """The label of each generated record is inferable from its wording alone."""
    seen = set()
    for item in generate("oolong", 20_000, 3):
        for _date, _user, text in solver.parse_records(item.context):
            seen.add(classify(text))
    assert "" not in seen
    assert len(seen) == 6


def test_sniah_hides_one_needle_among_distractor_needles() -> None:
    item = generate("sniah", 8_000, 1, haystack="distractor")[0]
    assert item.context.count("special magic numbers for") == 5
    noise = generate("sniah", 8_000, 1, haystack="noise")[0]
    assert noise.context.count("special magic numbers for") == 1


def test_oolong_asks_every_question_kind() -> None:
    kinds = {solver.parse_question(i.query)["kind"] for i in generate("oolong", 2_000, 7)}
    assert kinds == {"count", "most", "least", "compare", "user_count", "month_count", "earliest"}


def test_direct_prompt_cuts_long_inputs_with_a_visible_note() -> None:
    prompt, cut = direct_prompt("x" * 10_000, "How many?", 1_000)
    assert cut
    assert len(prompt) <= 1_000 * CHARS_PER_TOKEN
    assert "[bench: the input was cut to its first" in prompt
    assert prompt.startswith("Question: How many?")

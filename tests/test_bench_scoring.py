"""The scorers give the credit the benchmarks' own scorers give."""

from __future__ import annotations

import pytest

from rlm_core.bench.scoring import oolong_score, pairs_f1, score, string_match_all


def test_string_match_all_counts_each_needle_case_insensitively() -> None:
    assert string_match_all("The number is 4821937.", ["4821937"]) == 1.0
    assert string_match_all("I found 11 and abc", ["11", "ABC", "99", "7"]) == 0.5
    assert string_match_all("nothing here", ["4821937"]) == 0.0


@pytest.mark.parametrize(
    ("answer", "gold", "answer_type", "expected"),
    [
        ("Label: location", "['location']", "ANSWER_TYPE.LABEL", 1.0),
        ("**Label: [location]**", "['location']", "ANSWER_TYPE.LABEL", 1.0),
        ("Label: entity", "['location']", "ANSWER_TYPE.LABEL", 0.0),
        ("Answer: 12", "[12]", "ANSWER_TYPE.NUMERIC", 1.0),
        ("Answer: 14", "[12]", "ANSWER_TYPE.NUMERIC", 0.75**2),
        ("Answer: 9", "[12]", "ANSWER_TYPE.NUMERIC", 0.75**3),
        ("Answer: many", "[12]", "ANSWER_TYPE.NUMERIC", 0.0),
        (
            "Answer: location is more common than abbreviation",
            "['more common than']",
            "ANSWER_TYPE.COMPARISON",
            1.0,
        ),
        (
            "Answer: location is less common than abbreviation",
            "['more common than']",
            "ANSWER_TYPE.COMPARISON",
            0.0,
        ),
        ("Date: Jan 03, 2023", "[datetime.date(2023, 1, 3)]", "ANSWER_TYPE.DATE", 1.0),
        ("Date: 2023-01-03", "[datetime.date(2023, 1, 3)]", "ANSWER_TYPE.DATE", 1.0),
        ("Date: January 4, 2023", "[datetime.date(2023, 1, 3)]", "ANSWER_TYPE.DATE", 0.0),
    ],
)
def test_oolong_score_matches_the_official_rubric(
    answer: str, gold: str, answer_type: str, expected: float
) -> None:
    assert oolong_score(answer, gold, answer_type) == pytest.approx(expected)


def test_pairs_f1_ignores_order_and_formatting() -> None:
    gold = [["1", "2"], ["1", "3"], ["2", "3"]]
    assert pairs_f1("(2, 1)\n(1,3)\n(3, 2)", gold) == 1.0
    # two right, one wrong, one missed: precision 2/3, recall 2/3
    assert pairs_f1("(1, 2)\n(1, 3)\n(4, 5)", gold) == pytest.approx(2 / 3)
    assert pairs_f1("no pairs", gold) == 0.0
    assert pairs_f1("no pairs", []) == 1.0


def test_score_dispatches_on_answer_type() -> None:
    assert score("it is 42", '["42"]', "NIAH") == 1.0
    assert score("(1, 2)", '[["1", "2"]]', "PAIRS") == 1.0
    assert score("Answer: 3", "[3]", "ANSWER_TYPE.NUMERIC") == 1.0

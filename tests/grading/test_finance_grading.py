"""FinanceIQ grader: right, wrong, malformed and adversarial outputs."""

from __future__ import annotations

import time

import pytest

from ftdojo_gym.grading.finance_grading import accuracy, extract_choice, grade_choice


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: C", "C"),
        ("answer: c", None),  # lower-case letter: not the format
        ("ANSWER:B", "B"),
        ("Answer : D", "D"),
        ("Answer：A", "A"),
        ("答案：B", "B"),
        ("答案 C", "C"),
        ("Answer: (C)", "C"),
        ("Answer: [D]", "D"),
        ("Answer: C.", "C"),
        ("Answer: C) Mortgage", "C"),
        ("Answer: C - Mortgage", "C"),
        ("Answer: C. A loan secured by real estate", "C"),  # the article "A" is not a letter
        ("Answer: C is correct", "C"),  # only "A" can be the article
        ("Answer: (A) is correct", "A"),  # a bracketed A is a letter
        ("Answer: D was right", "D"),
        ("The question is about banks.\nAnswer: B\n", "B"),
        ("Answer:\n\n  D", "D"),
        ("Answer: B\nAnswer: B", "B"),
        ("I think the answer: A", "A"),
    ],
)
def test_extract_choice_accepts_one_letter(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "C",  # no marker
        "The correct option is C.",
        "Answer:",
        "Answer: Mortgage",  # option text instead of the letter
        "Answer: A loan secured by real estate",  # option text starting with the article
        "Answer: E",
        "Answer: AB",
        "Answer: ABCD",
        "Answer: A, B, C, D",
        "Answer: A B C D",
        "Answer: A/B",
        "Answer: A or C",
        "Answer: A and C",
        "Answer: C (or maybe D)",
        "Answer: A\nAnswer: B\nAnswer: C\nAnswer: D",  # every option, one by one
        "Answer: A\nAnswer: C",  # a change of mind is hedging
        "Answer: 3",
        "Answer: Apple",
    ],
)
def test_extract_choice_rejects_malformed_and_hedged(text: str) -> None:
    assert extract_choice(text) is None


def test_grade_right_and_wrong() -> None:
    assert grade_choice("Answer: C", "C") == 1.0
    assert grade_choice("Answer: (C) Mortgage", "C") == 1.0
    assert grade_choice("Answer: B", "C") == 0.0
    assert grade_choice("Answer: A, B, C, D", "C") == 0.0
    assert grade_choice("C", "C") == 0.0
    assert grade_choice("Answer: C", "c") == 1.0  # the gold letter is normalised
    assert grade_choice("Answer: C", "") == 0.0  # a malformed item can't be passed
    assert grade_choice("Answer: C", "Z") == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "   \n\t",
        "Answer: " + "x" * 200_000,
        "Answer: " + "A " * 100_000,
        "Answer: C" + " or D" * 50_000,
        "Answer: ☃ ünïcödé — 数字 ⁴²",
        "Answer: \x00\x01\x02",
        "Answer: " + "(" * 5000,
        "🙂" * 10_000,
        "Answer: " * 20_000,
        "def f():\n    return 'Answer: C'\n" * 1000,
    ],
)
def test_adversarial_outputs_never_raise(text: str) -> None:
    start = time.monotonic()
    for gold in ("A", "B", "C", "D"):
        assert grade_choice(text, gold) in (0.0, 1.0)
    assert time.monotonic() - start < 2


def test_listing_every_option_scores_zero_for_every_gold() -> None:
    listings = ["Answer: A, B, C, D", "Answer: A\nAnswer: B\nAnswer: C\nAnswer: D",
                "A. x\nB. y\nC. z\nD. w\nAnswer: A or B or C or D"]
    for text in listings:
        assert [grade_choice(text, g) for g in "ABCD"] == [0.0] * 4


def test_accuracy() -> None:
    assert accuracy(["Answer: A", "Answer: B", "nope", "Answer: D"], ["A", "C", "C", "D"]) == 0.5
    assert accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        accuracy(["Answer: A"], [])

"""AIME grader: the last \\boxed{} verified with math-verify; right, wrong, malformed, adversarial."""

from __future__ import annotations

import threading
import time

import pytest

from ftdojo_gym.grading.math_grading import (
    MAX_ANSWER_CHARS,
    _verify_in_child,
    as_integer,
    extract_boxed,
    grade_answer,
    grade_answers,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{42}", "42"),
        ("so the answer is $\\boxed{ 42 }$.", "42"),
        ("\\boxed{\\frac{84}{2}}", "\\frac{84}{2}"),
        ("\\boxed{1}\n\\boxed{2}", "2"),
        ("\\boxed {7}", "7"),
        ("\\boxed{}", ""),
        ("\\boxed{42", None),  # cut off inside the box
        ("\\boxed{42} then \\boxed{4", None),  # the last box is what counts, and it is unclosed
        ("Answer: 42", None),
        ("", None),
        ("\\fbox{42}", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_as_integer() -> None:
    assert as_integer("042") == 42
    assert as_integer(" $7$ ") == 7
    assert as_integer("4 2") is None
    assert as_integer("\uff14\uff12") is None  # full-width digits are not ASCII integers
    assert as_integer("-3") is None and as_integer("3.0") is None


def test_right_answers() -> None:
    right = [
        "Step one. Step two.\n\\boxed{42}",
        "\\boxed{042}",
        "$\\boxed{42}$ is the answer.",
        "\\boxed{\\frac{84}{2}}",  # a LaTeX fraction equal to the integer
        "\\boxed{\\dfrac{126}{3}}",
        "\\boxed{42.0}",
        "\\boxed{6 \\cdot 7}",
        "\\boxed{x = 42}",
        "\\boxed{17}\nWait, I made a mistake.\n\\boxed{42}",  # the last box counts
        "\\boxed{42}\nAnswer: 17",  # text after the box is ignored
    ]
    assert grade_answers(right, ["42"] * len(right)) == [1.0] * len(right)
    assert grade_answer("\\boxed{7}", "007") == 1.0  # gold written with leading zeros


def test_wrong_and_malformed_answers() -> None:
    wrong = [
        "\\boxed{41}",
        "\\boxed{41.9999}",
        "\\boxed{\\frac{83}{2}}",
        "The answer is 42.",  # right number, no box
        "Answer: 42",
        "42",
        "\\boxed{}",
        "\\boxed{42",  # unclosed
        "\\boxed{42}\n\\boxed{17}",  # the last box is wrong
        "\\boxed{a}",
        "\\boxed{4 2}",
        "\\boxed{[41, 43]}",
        "\\boxed{41 < x < 43}",
    ]
    assert grade_answers(wrong, ["42"] * len(wrong)) == [0.0] * len(wrong)


def test_hedging_scores_zero() -> None:
    """Listing candidates is no better than committing to the last one."""
    every_box = " ".join(f"\\boxed{{{n}}}" for n in range(1000))
    listing = "The answer is one of " + ", ".join(map(str, range(1000))) + "."
    in_one_box = "\\boxed{" + ", ".join(map(str, range(40, 45))) + "}"
    outputs = [every_box, listing, in_one_box, "\\boxed{17 \\text{ or } 42}", "\\boxed{\\{17, 42\\}}"]
    assert grade_answers(outputs, ["42"] * len(outputs)) == [0.0] * len(outputs)
    assert grade_answer(every_box, "999") == 1.0  # ...whose last box happens to be 999


ADVERSARIAL = [
    "",
    "   \n\t",
    "\\boxed{" * 100_000,
    "}" * 50_000 + "\\boxed{42",
    "x" * 500_000,
    "\\boxed{" + "9" * 10_000 + "}",  # far longer than any answer
    "\\boxed{" + "(" * 60 + "}",
    "\\boxed{☃ ünïcödé — 数字 ⁴²}",
    "\\boxed{\uff14\uff12}",
    "\\boxed{\x00\x01}",
    "🙂" * 10_000,
    "\\boxed{\\frac{1}{0}}",
    "\\boxed{\\infty}",
    "\\boxed{99999!}",
    "\\boxed{9^{9^{9}}}",  # sympy would compute for minutes: the timeout stops it
    "\\boxed{\\begin{pmatrix} 42 \\end{pmatrix}}",
    "```python\nprint(42)\n```",
]


def test_adversarial_outputs_never_raise_and_finish() -> None:
    start = time.monotonic()
    scores = grade_answers(ADVERSARIAL, ["42"] * len(ADVERSARIAL), timeout=3.0)
    assert time.monotonic() - start < 60
    assert all(s in (0.0, 1.0) for s in scores)
    assert sum(scores) <= 1  # only the 1x1 matrix [42] could be read as 42


def test_hanging_answer_does_not_block_the_others() -> None:
    outputs = ["\\boxed{10^{10^{10}} - 1}", "\\boxed{\\frac{84}{2}}", "\\boxed{42}"]
    start = time.monotonic()
    assert grade_answers(outputs, ["42"] * 3, timeout=2.0) == [0.0, 1.0, 1.0]
    assert time.monotonic() - start < 30


def test_grades_off_the_main_thread() -> None:
    """math-verify's own timeouts need the main thread; the child process makes that moot."""
    result: list[list[float]] = []
    worker = threading.Thread(
        target=lambda: result.append(grade_answers(["\\boxed{\\frac{84}{2}}", "\\boxed{41}"], ["42", "42"]))
    )
    worker.start()
    worker.join(timeout=120)
    assert result == [[1.0, 0.0]]


def test_integer_fast_path_agrees_with_math_verify() -> None:
    pairs = [("42", "42"), ("42", "042"), ("7", "7"), ("0", "0"), ("0", "000"), ("42", "41"),
             ("999", "999"), ("100", "10"), ("5", "$5$")]
    via_math_verify = _verify_in_child(pairs, timeout=10.0)
    fast = [as_integer(g) == as_integer(p) for g, p in pairs]
    assert via_math_verify == fast == [True, True, True, True, True, False, True, False, True]


def test_non_integer_gold() -> None:
    assert grade_answer("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}") == 1.0
    assert grade_answer("\\boxed{0.5}", "\\frac{1}{2}") == 1.0
    assert grade_answer("\\boxed{2}", "\\frac{1}{2}") == 0.0


def test_limits_and_errors() -> None:
    long_box = "\\boxed{" + "1" * (MAX_ANSWER_CHARS + 1) + "}"
    assert grade_answer(long_box, "1" * (MAX_ANSWER_CHARS + 1)) == 0.0
    with pytest.raises(ValueError):
        grade_answers(["\\boxed{1}"], ["1", "2"])
    assert grade_answers([], []) == []

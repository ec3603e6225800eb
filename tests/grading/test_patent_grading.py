"""Patent graders (PANORAMA metrics): right, wrong, malformed and adversarial outputs."""

from __future__ import annotations

import random
import time

import pytest

from ftdojo_gym.grading.patent_grading import (
    NOC_LABELS,
    extract_answer,
    grade_noc4pc,
    grade_par4pc,
    grade_pi4pc,
    macro_f1,
    normalise_noc_label,
    parse_letters,
    parse_noc_label,
    parse_paragraph_key,
    predict_noc,
    set_f1,
)

LETTERS = list("ABCDEF")
ADVERSARIAL = [
    "",
    "   \n\t",
    "Answer:",
    "answer",
    "The answer is B",
    "Answer: " + "x" * 200_000,
    "Answer: ☃ ünïcödé — 数字 ⁴²",
    "Answer: \x00\x01\x02",
    "Answer: " + "(" * 5000,
    "🙂" * 10_000,
    "Answer:" * 5000,
    "{" * 500,
    "import os; os.system('rm -rf /')",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: B", "B"),
        ("reasoning...\nAnswer: A, C", "A, C"),
        ("answer:   103  \nmore text", "103"),
        ("Answer: 102\nAnswer: 103", "103"),  # the last marker counts
        ("Answer:\n  34", "34"),
        ("**Answer:** B", "B"),
        ("**Answer**: B", "B"),
        ("> Answer: ALLOW", "ALLOW"),
        ("Answer:", ""),
        ("The answer: B", None),  # not at the start of a line
        ("The answer is B", None),
        ("B", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_extract_answer_non_string() -> None:
    assert extract_answer(None) is None  # type: ignore[arg-type]


def test_parse_letters() -> None:
    """PANORAMA's rule: split on commas and whitespace, keep one-letter tokens A-H."""
    assert parse_letters("A, C") == {"A", "C"}
    assert parse_letters("a,c") == {"A", "C"}
    assert parse_letters("A and C") == {"A", "C"}
    assert parse_letters('["A", "C"]') == set()  # quoted tokens are not letters
    assert parse_letters("(B).") == set()
    assert parse_letters("A, A, A") == {"A"}
    assert parse_letters("G, H") == {"G", "H"}  # false positives when not options
    assert parse_letters("I, J") == set()  # outside PANORAMA's A-H
    assert parse_letters("AC") == set()  # one token, not a letter
    assert parse_letters("none") == set()


def test_set_f1() -> None:
    assert set_f1({"A"}, {"A"}) == 1.0
    assert set_f1({"A", "B"}, {"A"}) == pytest.approx(2 / 3)
    assert set_f1({"A"}, {"A", "B"}) == pytest.approx(2 / 3)
    assert set_f1({"A", "C"}, {"A", "B"}) == pytest.approx(0.5)
    assert set_f1(set(), {"A"}) == 0.0
    assert set_f1({"B"}, {"A"}) == 0.0


def test_par4pc() -> None:
    assert grade_par4pc("Answer: A, C", ["A", "C"], LETTERS) == 1.0
    assert grade_par4pc("Answer: C, A", ["A", "C"], LETTERS) == 1.0
    assert grade_par4pc("answer: a and c", ["A", "C"], LETTERS) == 1.0
    assert grade_par4pc("Answer: A", ["A", "C"], LETTERS) == pytest.approx(2 / 3)
    assert grade_par4pc("Answer: A, B", ["A"], LETTERS) == pytest.approx(2 / 3)
    assert grade_par4pc("Answer: B", ["A", "C"], LETTERS) == 0.0
    assert grade_par4pc("A, C", ["A", "C"], LETTERS) == 0.0  # no marker
    assert grade_par4pc("The cited documents are A and C.", ["A", "C"], LETTERS) == 0.0
    assert grade_par4pc("Answer: A, C\nAnswer: B", ["A", "C"], LETTERS) == 0.0  # the last answer counts
    assert grade_par4pc("Answer: A, C\nbecause B is unrelated", ["A", "C"], LETTERS) == 1.0  # later lines ignored


def test_par4pc_listing_every_option() -> None:
    """PANORAMA scores a list of every option by its F1 (the default); the project's
    stricter hedge rule, opt-in, scores it 0."""
    everything = "Answer: " + ", ".join(LETTERS)
    for gold in (["A"], ["A", "C"], ["B", "D", "F"]):
        assert grade_par4pc(everything, gold, LETTERS) == pytest.approx(2 * len(gold) / (6 + len(gold)))
        assert grade_par4pc(everything, gold, LETTERS, reject_all_options=True) == 0.0
    assert grade_par4pc("Answer: " + "A, B, C, D, E, F, " * 100, ["A"], LETTERS, reject_all_options=True) == 0.0
    assert grade_par4pc("Answer: A, B, C, D, E", ["A"], LETTERS, reject_all_options=True) == pytest.approx(1 / 3)


def test_par4pc_real_option_letters() -> None:
    options = list("ABCDEFGH")
    assert grade_par4pc("Answer: H", ["H"], options) == 1.0
    assert grade_par4pc("Answer: G, H", ["H"], options) == pytest.approx(2 / 3)


def test_pi4pc() -> None:
    """The answer line is read as ``int()`` reads it (PANORAMA's ``int(answer)``)."""
    assert grade_pi4pc("Answer: 34", [34]) == 1.0
    assert grade_pi4pc("Answer: 0034", [34]) == 1.0
    assert grade_pi4pc("answer: 34", ["34"]) == 1.0
    assert grade_pi4pc("Answer: [0034]", [34]) == 0.0
    assert grade_pi4pc("Answer: paragraph 34.", [34]) == 0.0
    assert grade_pi4pc("Answer: 12", [34]) == 0.0
    assert grade_pi4pc("Answer: 34, 12", [34]) == 0.0  # a hedge over two keys
    assert grade_pi4pc("Answer: 340", [34]) == 0.0
    assert grade_pi4pc("34", [34]) == 0.0  # no marker
    assert grade_pi4pc("Answer: thirty-four", [34]) == 0.0
    assert grade_pi4pc("Answer: 2, 12, 34, 59, 100", [34]) == 0.0  # every option


def test_parse_paragraph_key() -> None:
    assert parse_paragraph_key("0059") == 59
    assert parse_paragraph_key("[0059]") is None
    assert parse_paragraph_key("59 and 60") is None
    assert parse_paragraph_key("none") is None
    assert parse_paragraph_key("9" * 5000) is not None  # huge, read from a bounded prefix: no crash


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("102", "102"),
        (" 103 ", "103"),
        ("allow", "ALLOW"),
        ("ALLOW", "ALLOW"),
        ("§ 102", None),  # PANORAMA accepts the bare code only
        ("35 U.S.C. 103", None),
        ("allowed", None),
        ("102 or 103", None),
        ("1020", None),
        ("reject", None),
        ("", None),
    ],
)
def test_parse_noc_label(text: str, expected: str | None) -> None:
    assert parse_noc_label(text) == expected


def test_noc4pc_item_and_normalise() -> None:
    assert grade_noc4pc("Answer: 103", "103") == 1.0
    assert grade_noc4pc("Answer: ALLOW", "ALLOW") == 1.0
    assert grade_noc4pc("Answer: 102", "103") == 0.0
    assert grade_noc4pc("103", "103") == 0.0
    assert grade_noc4pc("Answer: 102, 103, ALLOW", "103") == 0.0  # every label
    assert predict_noc("Answer: 102") == "102"
    assert predict_noc("Answer: 102 103") is None
    assert normalise_noc_label(102) == "102"
    assert normalise_noc_label("Allow") == "ALLOW"
    assert normalise_noc_label("35 U.S.C. 103") == "103"  # gold codes from the data are read leniently
    assert normalise_noc_label(None) is None


def test_macro_f1_hand_computed() -> None:
    gold = ["102", "102", "103", "103", "ALLOW", "ALLOW"]
    assert macro_f1(gold, gold) == 1.0
    # Always "103": F1(103) = 2*2/(2*2+4) = 0.5, the others 0 -> 1/6.
    assert macro_f1(gold, ["103"] * 6) == pytest.approx(1 / 6)
    # Unparseable predictions are the class PREDICTION_FAILED (PANORAMA): a fourth class with F1 0.
    assert macro_f1(gold, [None] * 6) == 0.0
    pred = ["102", None, "103", "103", "ALLOW", "102"]
    # 102: tp1 fp1 fn1 -> 0.5; 103: tp2 -> 1.0; ALLOW: tp1 fn1 -> 2/3; PREDICTION_FAILED -> 0.
    assert macro_f1(gold, pred) == pytest.approx((0.5 + 1.0 + 2 / 3) / 4)
    with pytest.raises(ValueError):
        macro_f1(gold, pred[:3])


def test_macro_f1_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 40)
        gold = [rng.choice(NOC_LABELS) for _ in range(n)]
        pred = [rng.choice((*NOC_LABELS, None)) for _ in range(n)]
        y_pred = [p or "PREDICTION_FAILED" for p in pred]
        labels = sorted(set(gold) | set(y_pred) | set(NOC_LABELS))  # PANORAMA's evaluation.py
        expected = metrics.f1_score(gold, y_pred, labels=labels, average="macro", zero_division=0)
        assert macro_f1(gold, pred) == pytest.approx(expected)


@pytest.mark.parametrize("output", ADVERSARIAL)
def test_adversarial_outputs_score_zero_fast(output: str) -> None:
    start = time.monotonic()
    assert grade_par4pc(output, ["A", "C"], LETTERS) == 0.0
    assert grade_pi4pc(output, [34]) == 0.0
    assert grade_noc4pc(output, "103") == 0.0
    assert predict_noc(output) is None
    assert time.monotonic() - start < 1.0

"""Parity of the AIME grader with math-verify, the paper's AIME metric.

The reference is math-verify's documented use on the model's whole output:
``verify(parse(gold), parse(output))`` with its default extraction (LaTeX and
expressions, boxed answers first). On outputs that box their final answer (the
format the task asks for) the project's grader must give the same verdict; the
deliberate difference (an unboxed final answer scores 0 here) is pinned below.
"""

from __future__ import annotations

import pytest

math_verify = pytest.importorskip("math_verify")

from ftdojo_gym.grading.math_grading import grade_answers  # noqa: E402

#: (model output, gold answer): the final answer boxed, right or wrong, in various notations.
BOXED_CASES: list[tuple[str, str]] = [
    ("So the answer is $\\boxed{21}$.", "021"),
    ("Thus $\\boxed{021}$.", "21"),
    ("We get \\boxed{\\frac{84}{2}}", "42"),
    ("Hence \\boxed{42.0}", "42"),
    ("Therefore \\boxed{x = 42}", "42"),
    ("The answer: \\boxed{41}", "42"),
    ("\\boxed{\\sqrt{2}}", "\\sqrt{2}"),
    ("\\boxed{\\frac{5}{6}}", "\\frac{5}{6}"),
    ("\\boxed{0.8333}", "\\frac{5}{6}"),
    ("\\boxed{999}", "999"),
    ("\\boxed{1000}", "999"),
]


def _official(output: str, gold: str) -> float:
    gold_parsed = math_verify.parse("$" + gold + "$")
    return float(bool(math_verify.verify(gold_parsed, math_verify.parse(output))))


def test_boxed_answers_match_math_verify() -> None:
    ours = grade_answers([o for o, _ in BOXED_CASES], [g for _, g in BOXED_CASES])
    official = [_official(o, g) for o, g in BOXED_CASES]
    assert ours == official
    assert sum(ours) == 8  # the recorded verdicts: a drift in either side shows here


def test_deliberate_differences() -> None:
    """The task's strict format: an unboxed answer scores 0, and with several boxes the
    *last* one counts (math-verify on the whole output takes the first)."""
    assert grade_answers(["The answer is 42."], ["42"]) == [0.0]
    corrected = "First \\boxed{12}, then corrected: \\boxed{13}"
    assert grade_answers([corrected], ["13"]) == [1.0]
    assert _official(corrected, "13") == 0.0

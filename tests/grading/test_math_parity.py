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


#: Boxed final answers a fine-tuned model writes, with math-verify's verdict (recorded
#: here with math-verify 0.9.0): units, degrees, percent, text wrappers, thousands
#: separators, expressions, sets and near misses. The project must agree on each.
ADVERSARIAL_BOXED: list[tuple[str, str, bool]] = [
    ("\\boxed{42\\%}", "42", True),
    ("\\boxed{42^\\circ}", "42", True),
    ("\\boxed{42^{\\circ}}", "42", True),
    ("\\boxed{\\text{42}}", "42", True),
    ("\\boxed{\\textbf{42}}", "42", True),
    ("\\boxed{\\mathbf{42}}", "42", True),
    ("\\boxed{42 \\text{ dollars}}", "42", True),
    ("\\boxed{\\$42}", "42", True),
    ("\\boxed{42\\text{.}}", "42", True),
    ("\\boxed{1,000}", "1000", True),
    ("\\boxed{1{,}000}", "1000", True),
    ("\\boxed{2^5+10}", "42", True),
    ("\\boxed{6 \\cdot 7}", "42", True),
    ("\\boxed{\\sqrt{1764}}", "42", True),
    ("\\boxed{4.2 \\times 10^{1}}", "42", True),
    ("\\boxed{\\dfrac{84}{2}}", "42", True),
    ("\\boxed{+42}", "42", True),
    ("\\boxed{(42)}", "42", True),
    ("\\boxed{\\{42\\}}", "42", True),
    ("\\boxed{n = 42}", "42", True),
    ("\\boxed{42 \\text{ (mod 1000)}}", "42", True),
    ("$$\\boxed{42}$$", "42", True),
    ("\\boxed{42}.", "42", True),
    ("**Final Answer** \\boxed{42}", "42", True),
    ("\\boxed{50\\%}", "\\frac{1}{2}", True),
    ("\\boxed{042}", "42", True),
    ("\\boxed{42}", "042", True),
    ("\\boxed{0}", "000", True),
    ("\\boxed{42.5}", "42", False),
    ("\\boxed{41.9999999}", "42", False),
    ("\\boxed{-42}", "42", False),
    ("\\boxed{0.42}", "42", False),
    ("\\boxed{4.2e1}", "42", False),
    ("\\boxed{ 4 2 }", "42", False),
    ("\\boxed{42!}", "42", False),
    ("\\boxed{\\infty}", "42", False),
    ("\\boxed{\\pi}", "42", False),
    ("\\boxed{a}", "42", False),
    ("\\boxed{}", "42", False),
    ("\\boxed{４２}", "42", False),
    ("\\boxed{42 \\pmod{1000}}", "42", False),
    ("\\boxed{1042 \\bmod 1000}", "42", False),
    ("\\boxed{17, 42}", "42", False),
    ("\\boxed{17 \\text{ or } 42}", "42", False),
    ("\\fbox{42}", "42", False),
]


def test_adversarial_boxed_answers_match_math_verify() -> None:
    """Every case scores as math-verify decides today and as it decided when recorded:
    a change of either the project's grader or math-verify's behaviour shows here."""
    outputs, golds = [o for o, _, _ in ADVERSARIAL_BOXED], [g for _, g, _ in ADVERSARIAL_BOXED]
    ours = grade_answers(outputs, golds)
    official = [_official(o, g) for o, g in zip(outputs, golds, strict=True)]
    recorded = [float(v) for _, _, v in ADVERSARIAL_BOXED]
    assert [(o, a) for o, a, b in zip(outputs, ours, official, strict=True) if a != b] == []
    assert official == recorded


def test_integer_fast_path_agrees_with_math_verify() -> None:
    """Plain integer boxes are compared in-process (no math-verify child): the same verdicts."""
    pairs = [(p, g) for p in ("0", "7", "007", "42", "042", "999", "1000", "123456789012") for g in ("0", "7", "42", "999")]
    ours = grade_answers([f"\\boxed{{{p}}}" for p, _ in pairs], [g for _, g in pairs])
    assert ours == [_official(f"\\boxed{{{p}}}", g) for p, g in pairs]


def test_deliberate_differences() -> None:
    """The task's strict format: an unboxed answer scores 0, and with several boxes the
    *last* one counts (math-verify on the whole output takes the first)."""
    assert grade_answers(["The answer is 42."], ["42"]) == [0.0]
    corrected = "First \\boxed{12}, then corrected: \\boxed{13}"
    assert grade_answers([corrected], ["13"]) == [1.0]
    assert _official(corrected, "13") == 0.0
    # Unboxed final answers: math-verify finds the number in the text; the task's format
    # needs the box (a brace-less \boxed is not one).
    for unboxed in ("\\boxed 42", "The answer is $42$.", "Answer: 42"):
        assert grade_answers([unboxed], ["42"]) == [0.0]
        assert _official(unboxed, "42") == 1.0

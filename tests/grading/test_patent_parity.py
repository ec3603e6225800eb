"""Parity of the patent graders with PANORAMA's official evaluation code.

The official numbers below were obtained by running PANORAMA's own code
(github.com/LGAI-Research/PANORAMA at commit 6e5a7b3: the parsers
``process_llm_response`` / ``process_llm_response_paragraphs`` /
``process_llm_response_rejection`` of ``benchmarks/<task>/inference.py`` on
``{"answer": <line>}`` / ``{"code": <line>}``, and ``main`` of
``benchmarks/<task>/evaluation.py`` on the CSV those rows make) with pandas 2
and scikit-learn, on the adversarial answer lines of this file. The repository
ships no example predictions, so these cases are ours. They are recorded as
data: the test needs neither the official repository nor scikit-learn, and it
fails if the project's graders drift from the official behaviour.

Each case is the text after ``Answer:`` (the role of the JSON answer field),
its gold data, and what the official parser made of it.
"""

from __future__ import annotations

import pytest

from ftdojo_gym.grading.patent_grading import (
    grade_noc4pc,
    grade_par4pc,
    grade_pi4pc,
    macro_f1,
    panorama_pi4pc_custom_score,
    parse_letters,
    parse_paragraph_key,
    predict_noc,
)
from ftdojo_gym.tasks.patent import PatentTask

OPTIONS = list("ABCDEF")

#: (answer line, gold letters, official predicted letters)
PAR4PC_CASES = [
    ('A', ['A'], ['A']),
    ('A, C', ['A', 'C'], ['A', 'C']),
    ('A and C', ['A', 'C', 'E'], ['A', 'C']),
    ('A; C', ['A', 'C'], ['C']),
    ('(A)', ['A'], []),
    ('A.', ['A'], []),
    ('a, c', ['A'], ['A', 'C']),
    ('G', ['B'], ['G']),
    ('A,B,C,D,E,F', ['B'], ['A', 'B', 'C', 'D', 'E', 'F']),
    ('A B C D E F G H', ['A', 'B'], ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H']),
    ('AB', ['A', 'B'], []),
    ('None', ['C'], []),
    ('', ['A'], []),
    ('B, B, B', ['B', 'D'], ['B']),
    ('Both A and D are cited', ['A', 'D'], ['A', 'D']),
    ('C\tE', ['C', 'E', 'F'], ['C', 'E']),
    ('A/C', ['A', 'C'], []),
    ('["A", "C"]', ['A', 'C'], []),
    ('D,E', ['D'], ['D', 'E']),
    ('F, A', ['A', 'F'], ['A', 'F']),
]
#: evaluation.py "Macro F1-Score (Gold)" over PAR4PC_CASES (printed to 4 decimals).
PAR4PC_OFFICIAL_MACRO_F1 = 0.4476

#: (answer line, gold keys, silver keys, option keys, official predicted key)
PI4PC_CASES = [
    ('34', [34], [], [31, 32, 33, 34, 35], 34),
    ('0034', [34], [], [31, 32, 33, 34, 35], 34),
    ('+34', [34], [], [31, 32, 33, 34, 35], 34),
    ('[34]', [34], [], [31, 32, 33, 34, 35], None),
    ('34.', [34], [], [31, 32, 33, 34, 35], None),
    ('34, 35', [34], [35], [31, 32, 33, 34, 35], None),
    ('paragraph 34', [34], [], [31, 32, 33, 34, 35], None),
    ('35', [34], [35], [31, 32, 33, 34, 35], 35),
    ('99', [34], [], [31, 32, 33, 34, 35], 99),
    ('3_4', [34], [], [31, 32, 33, 34, 35], 34),
    ('٣٤', [34], [], [31, 32, 33, 34, 35], 34),
    ('', [34], [], [31, 32, 33, 34, 35], None),
    ('34.0', [34], [], [31, 32, 33, 34, 35], None),
    ('-34', [34], [], [31, 32, 33, 34, 35], -34),
    ('12', [12, 14], [13], [10, 11, 12, 13, 14], 12),
    ('13', [12, 14], [13], [10, 11, 12, 13, 14], 13),
    ('14', [12, 14], [13], [10, 11, 12, 13, 14], 14),
    ('10', [12], [], [10, 11, 12, 13, 14], 10),
]
#: evaluation.py's ``gold_answer`` count over the rows, and its "Custom Score" ((2*gold + silver) / n).
PI4PC_OFFICIAL_GOLD_HIT_RATE = 0.3888888888888889
PI4PC_OFFICIAL_CUSTOM_SCORE = 0.8889

#: (answer line, gold code, official predicted code; None is "N/A", i.e. PREDICTION_FAILED)
NOC4PC_CASES = [
    ('102', '102', '102'),
    ('103', '102', '103'),
    ('ALLOW', 'ALLOW', 'ALLOW'),
    ('allow', 'ALLOW', 'ALLOW'),
    ('Allowed', 'ALLOW', None),
    ('103.', '103', None),
    ('103', '103', '103'),
    ('102, 103', '103', None),
    ('REJECT', '102', None),
    ('', 'ALLOW', None),
    ('ALLOW', '103', 'ALLOW'),
    ('102', '103', '102'),
    ('103', 'ALLOW', '103'),
    ('102', '102', '102'),
    ('ALLOW', 'ALLOW', 'ALLOW'),
]
NOC4PC_OFFICIAL = {"macro_f1": 0.3554, "accuracy": 0.4}
#: Every answer parses: macro-F1 over the three real classes.
NOC4PC_CLEAN_CASES = [
    ('102', '102', '102'),
    ('103', '102', '103'),
    ('ALLOW', 'ALLOW', 'ALLOW'),
    ('allow', 'ALLOW', 'ALLOW'),
    ('103', '103', '103'),
    ('102', '103', '102'),
    ('ALLOW', '103', 'ALLOW'),
    ('103', 'ALLOW', '103'),
    ('102', '102', '102'),
    ('103', '103', '103'),
]
NOC4PC_CLEAN_OFFICIAL = {"macro_f1": 0.6111, "accuracy": 0.6}


@pytest.mark.parametrize(("line", "gold", "official"), PAR4PC_CASES)
def test_par4pc_parse_matches_official(line: str, gold: list[str], official: list[str]) -> None:
    assert sorted(parse_letters(line)) == official


def test_par4pc_macro_f1_matches_official() -> None:
    scores = [grade_par4pc(f"Answer: {line}", gold, OPTIONS) for line, gold, _ in PAR4PC_CASES]
    assert sum(scores) / len(scores) == pytest.approx(PAR4PC_OFFICIAL_MACRO_F1, abs=5e-5)


def test_par4pc_hedge_rule_is_optional() -> None:
    """Naming every option: PANORAMA scores the F1 (the default); the stricter project rule gives 0."""
    assert grade_par4pc("Answer: A,B,C,D,E,F", ["B"], OPTIONS) == pytest.approx(2 / 7)
    assert grade_par4pc("Answer: A,B,C,D,E,F", ["B"], OPTIONS, reject_all_options=True) == 0.0
    assert grade_par4pc("Answer: A, B", ["A", "B"], ["A", "B"], reject_all_options=True) == 1.0


@pytest.mark.parametrize(("line", "gold", "silver", "options", "official"), PI4PC_CASES)
def test_pi4pc_parse_matches_official(line: str, gold: list[int], silver: list[int], options: list[int],
                                      official: int | None) -> None:
    assert parse_paragraph_key(line) == official
    assert grade_pi4pc(f"Answer: {line}", gold) == float(official in gold)


def test_pi4pc_gold_hit_rate_and_custom_score_match_official() -> None:
    outputs = [f"Answer: {c[0]}" for c in PI4PC_CASES]
    hits = [grade_pi4pc(o, c[1]) for o, c in zip(outputs, PI4PC_CASES, strict=True)]
    assert sum(hits) / len(hits) == pytest.approx(PI4PC_OFFICIAL_GOLD_HIT_RATE)
    custom = panorama_pi4pc_custom_score(outputs, [c[1] for c in PI4PC_CASES], [c[2] for c in PI4PC_CASES])
    assert custom == pytest.approx(PI4PC_OFFICIAL_CUSTOM_SCORE, abs=5e-5)


@pytest.mark.parametrize(("cases", "official"), [(NOC4PC_CASES, NOC4PC_OFFICIAL),
                                                 (NOC4PC_CLEAN_CASES, NOC4PC_CLEAN_OFFICIAL)])
def test_noc4pc_macro_f1_matches_official(cases: list[tuple[str, str, str | None]], official: dict[str, float]) -> None:
    outputs = [f"Answer: {line}" for line, _, _ in cases]
    gold = [g for _, g, _ in cases]
    predicted = [predict_noc(o) for o in outputs]
    assert predicted == [c for _, _, c in cases]
    assert macro_f1(gold, predicted) == pytest.approx(official["macro_f1"], abs=5e-5)
    accuracy = [grade_noc4pc(o, g) for o, g in zip(outputs, gold, strict=True)]
    assert sum(accuracy) / len(accuracy) == pytest.approx(official["accuracy"])


@pytest.mark.parametrize("subtask", ["PAR4PC", "PI4PC", "NOC4PC"])
def test_task_split_score_is_the_official_metric(subtask: str) -> None:
    """Through the task (grade, then aggregate): the official split metric on the cases."""
    from ftdojo_gym.tasks.base import EvalItem

    task = PatentTask(subtask)
    if subtask == "PAR4PC":
        rows = [(line, {"gold": gold, "options": OPTIONS}) for line, gold, _ in PAR4PC_CASES]
        expected = PAR4PC_OFFICIAL_MACRO_F1
    elif subtask == "PI4PC":
        rows = [(c[0], {"gold": c[1], "silver": c[2], "options": c[3]}) for c in PI4PC_CASES]
        expected = PI4PC_OFFICIAL_GOLD_HIT_RATE
    else:
        rows = [(line, {"label": gold}) for line, gold, _ in NOC4PC_CASES]
        expected = NOC4PC_OFFICIAL["macro_f1"]
    items = [EvalItem(id=str(i), subset=subtask, prompt="p", reference="r", meta=meta)
             for i, (_, meta) in enumerate(rows)]
    outputs = [f"reasoning\nAnswer: {line}" for line, _ in rows]
    assert task.aggregate(items, task.grade(items, outputs), outputs) == pytest.approx(expected, abs=5e-5)

"""Parity of the FinanceIQ grader with FinanceIQ's official evaluation.

The reference is ``FinanceIQ/src/utils.py`` of ``github.com/Duxiaoman-DI/XuanYuan``
(commit d12168b): ``extract_choice`` reads a letter from each response (whose
newlines the harness removed) and ``compute_accuracy`` averages per subject, then
over subjects. It is re-implemented in :mod:`ftdojo_gym.grading.financeiq_official`.

``OFFICIAL_CHOICES`` is data, computed by running that official ``extract_choice``
on this machine (fetched, not committed) on each response as its ``compute_accuracy``
reads it back (newlines removed, through a pandas CSV round trip), with
``random.randint`` replaced by a function that raises, so that ``None`` marks the
responses for which the official code guesses a random letter. The repository ships no example
predictions, so the cases are written here: the official Chinese answer phrases,
and the answers a fine-tuned model writes (bare letters, option text, hedges).
"""

from __future__ import annotations

import random

import pytest

from ftdojo_gym.grading.finance_grading import LETTERS, extract_choice, grade_choice
from ftdojo_gym.grading.financeiq_official import (
    official_accuracy,
    official_choice,
    official_score,
)
from ftdojo_gym.tasks.finance import FinanceIQTask

#: response -> the letter the official ``extract_choice`` reads (None: it guesses).
OFFICIAL_CHOICES: dict[str, str | None] = {
    'C': 'C', 'C. 比较分析法': 'C', 'C.': 'C', '(C)': 'C', ' C': 'C', 'c': None, '': None, '\nC': 'C',
    'C\nD': 'C', 'CD': 'C', 'ABCD': 'A', 'A, B, C, D': 'A', 'B和C': 'B', 'B或C': 'B', '答案是C': 'C',
    '答案是：C': 'C', '答案为：D': 'D', '答案选项是B': 'B', '答案是选项A': 'A', '答案应该是D': 'D', '答案：C': 'C',
    '答案C': 'C', '答：B': 'B', '答案: C': 'C', '答案：A或C': 'A', '故选A': 'A', '选择：B': 'B', '选B': 'B',
    '应选C': 'C', '选项C正确': 'C', 'C项正确': 'C', 'D 选项是正确的': 'D', '正确的选项是D': 'D', '正确选项为A': 'A',
    '选择答案 B': 'B', 'B选项符合题意': 'B', 'C符合题意': 'C', '答案选项：D': 'D', '答案为第三项，即C': 'C',
    '我认为是D': 'D', '不是A，是B': 'B', '不是A': 'A', 'A错误，B正确': 'A', 'A当选': 'A',
    '经分析，A和B都不对，C当选': 'C', 'A、B错误，D正确': 'A', 'The answer is C': 'C', 'Answer: C': 'A',
    'Answer: B': 'A', 'Answer: (D)': 'A', 'answer: b': None, 'Answer:\nC': 'A', 'Final answer: D': 'D',
    "I think it's D, not B": None, 'The correct option is B.': 'B', 'Option (B) is correct': 'B', 'b': None,
    'nan': None, 'None of them': None, 'E': None, '（C）': 'C', '【B】': 'B', '选项：C': 'C', '正确答案是：B': 'B',
    '答案是 C': 'C', '所以答案是 D。': 'D', '综上，本题选B。': 'B',
    # Read back from the results CSV as a missing value ("nan"): no letter, a guess.
    'NA': None, 'N/A': None, 'NULL': None, '<NA>': None, '#N/A': None, ' NA': 'A',
}

#: The same answer under each harness: the official prompt ends with its answer
#: marker (``答案是：``), so the official code reads the model's continuation;
#: this project's model writes its marker itself, so the project reads
#: ``"Answer: " + continuation``. (continuation, project's letter, official letter).
ANSWERS: list[tuple[str, str | None, str | None]] = [
    # A committed answer: both read the same letter.
    ("C", "C", "C"), ("C.", "C", "C"), ("(C)", "C", "C"), ("[C]", "C", "C"), ("C!", "C", "C"),
    ("C。", "C", "C"), ("C，按揭贷款", "C", "C"), ("C) Mortgage loan", "C", "C"),
    ("C. A loan secured by real estate", "C", "C"), ("C - Mortgage", "C", "C"), (" C", "C", "C"),
    ("\nC", "C", "C"), ("C\n\nExplanation: a mortgage is a loan.", "C", "C"), ("C\nAnswer: C", "C", "C"),
    # No choice under either: the project scores 0, the official code guesses (1/4 expected).
    ("c", None, None), ("", None, None), ("Mortgage loan", None, None), ("E", None, None), ("3", None, None),
    ("Ｃ", None, None), ("(C) or (D)", None, None),
    # Hedges: the project scores 0; the official code takes the first letter.
    ("A, B, C, D", None, "A"), ("A B C D", None, "A"), ("ABCD", None, "A"), ("B or C", None, "B"),
    ("B/C", None, "B"), ("C (or maybe D)", None, "C"), ("C\nAnswer: D", None, "C"),
    # Option text that starts with the article "A": officially the letter A.
    ("A loan secured by real estate", None, "A"),
    # The letter not first: no choice in the project's strict format.
    ("The answer is C", None, "C"),
    # A letter other than the article "A" before a lower-case word is still the letter.
    ("C is correct", "C", "C"), ("B was the right option", "B", "B"), ("D is", "D", "D"),
]


@pytest.mark.parametrize(("response", "official"), list(OFFICIAL_CHOICES.items()))
def test_reimplementation_reads_what_the_official_code_reads(response: str, official: str | None) -> None:
    assert official_choice(response) == official


def test_the_official_reader_cannot_read_this_projects_answer_format() -> None:
    """Its first rule reads every ``Answer: <letter>`` as A: the official metric of the
    project's format is the share of gold A's, which is why the project parses its own
    marker and the official reader is applied to the continuation after it."""
    for gold in LETTERS:
        assert grade_choice(f"Answer: {gold}", gold) == 1.0
        assert official_score(f"Answer: {gold}", gold) == float(gold == "A")
        assert official_score(gold, gold) == 1.0


@pytest.mark.parametrize(("continuation", "project", "official"), ANSWERS)
def test_project_grader_against_the_official_reader(continuation: str, project: str | None,
                                                    official: str | None) -> None:
    assert extract_choice("Answer: " + continuation) == project
    assert official_choice(continuation) == official
    for gold in LETTERS:
        assert grade_choice("Answer: " + continuation, gold) == float(project == gold)
        expected = 0.25 if official is None else float(official == gold)
        assert official_score(continuation, gold) == expected


def _continuations(n: int, seed: int = 0) -> list[str]:
    """Answers a fine-tuned model might write after its marker: letters, option text,
    punctuation, separators, Chinese phrases and newlines, in random order."""
    tokens = ["A", "B", "C", "D", "a", "c", " ", ".", "(", ")", "，", "或", " or ", "\n", "答案是", "选项",
              "正确", "Mortgage", " - ", "!", "。", "/"]
    rng = random.Random(seed)
    return ["".join(rng.choice(tokens) for _ in range(rng.randint(1, 6))) for _ in range(n)]


def test_the_project_never_reads_a_letter_the_official_code_reads_otherwise() -> None:
    """Where both read a letter, it is the same letter: the project's strict format is a
    subset of the official reading (it scores 0 where the official code guesses or reads
    a hedge's first letter; see ``ANSWERS``), never a different answer."""
    both = 0
    for continuation in _continuations(5000):
        project = extract_choice("Answer: " + continuation)
        official = official_choice(continuation)
        if project is not None and official is not None:
            both += 1
            assert project == official, continuation
    assert both > 500  # the generator does produce committed answers


def test_official_accuracy_is_the_mean_over_subjects() -> None:
    outputs = ["A", "B", "C", "x", "x", "x"]
    answers = ["A", "B", "C", "D", "D", "D"]
    subjects = ["Banking", "Banking", "Tax", "Tax", "Tax", "Tax"]
    # Banking 2/2; Tax 1 right + 3 guesses worth 1/4 each: (1 + 0.75) / 4.
    assert official_accuracy(outputs, answers, subjects) == pytest.approx((1.0 + 1.75 / 4) / 2)
    drawn = [official_accuracy(outputs, answers, subjects, rng=random.Random(s)) for s in range(200)]
    assert min(drawn) >= 0.5 and max(drawn) <= 1.0 and sum(drawn) / len(drawn) == pytest.approx(0.71875, abs=0.03)
    assert official_accuracy([], [], []) == 0.0
    with pytest.raises(ValueError):
        official_accuracy(["A"], ["A"], [])


def test_the_offline_splits_make_item_accuracy_the_official_subject_mean() -> None:
    """The task reports the mean over items; the official score is the mean over subjects.
    They are equal because every offline split holds each subject equally often: a split
    that breaks that balance fails here."""
    task = FinanceIQTask()
    items = task.eval_items(0)
    rng = random.Random(0)
    for split in task.split(items, 100):
        letters = [i.meta["answer"] if rng.random() < 0.4 else rng.choice(LETTERS) for i in split]
        answers = [i.meta["answer"] for i in split]
        project = sum(task.grade(split, [f"Answer: {x}" for x in letters])) / len(split)
        official = official_accuracy(letters, answers, [i.subset for i in split])
        assert project == pytest.approx(official)


def test_the_task_score_is_the_official_subject_mean_on_skewed_splits() -> None:
    """Real data holds subjects of different sizes: the task's split score (what ``evaluate``
    and ``submit`` report) is the official mean over subjects, not the mean over items."""
    task = FinanceIQTask()
    items = task.eval_items(0)
    banking = [i for i in items if i.subset == "Banking"][:8]
    tax = [i for i in items if i.subset != "Banking"][:2]
    split = banking + tax
    # Every Banking answer right, every other answer wrong: items say 0.8, subjects 0.5 (or less).
    outputs = [f"Answer: {i.meta['answer']}" for i in banking] + [
        f"Answer: {next(x for x in LETTERS if x != i.meta['answer'])}" for i in tax]
    scores = task.grade(split, outputs)
    assert sum(scores) / len(scores) == pytest.approx(0.8)
    subjects = {i.subset for i in split}
    assert task.aggregate(split, scores, outputs) == pytest.approx(1.0 / len(subjects))
    letters = [o.removeprefix("Answer: ") for o in outputs]
    assert task.aggregate(split, scores, outputs) == pytest.approx(
        official_accuracy(letters, [i.meta["answer"] for i in split], [i.subset for i in split]))

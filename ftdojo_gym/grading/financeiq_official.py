"""FinanceIQ's official evaluation, re-implemented (the reference for the FinanceIQ grader).

The reference is the evaluation code of FinanceIQ (``github.com/Duxiaoman-DI/XuanYuan``,
``FinanceIQ/src/utils.py``: ``extract_choice`` and ``compute_accuracy``; the
harnesses ``hf_causal_model.py``/``chatgpt.py`` store each response with its
newlines removed). It is re-implemented here, not vendored, so that
``tests/grading/test_financeiq_parity.py`` can pin the project's grader
(:mod:`ftdojo_gym.grading.finance_grading`) against it on answers a fine-tuned
model writes. Nothing here raises on any string.

**How the official code reads a response** (:func:`official_choice`). The
official prompt ends with ``答案是：`` ("the answer is:"), so the response is
the model's continuation. Newlines are removed, then the first rule that
matches gives the letter:

1. the response's *first character*, if it is ``A``-``D``;
2. twelve Chinese answer phrases, in order (``答案是C``, ``答案为：C``,
   ``选择C``/``故选C``, ``C项正确``, ``正确的选项是C``, ``答案：C``,
   ``C符合题意``, ...), the first match anywhere;
3. the last letter before the first ``当选`` ("is chosen"), then before the
   first ``正确`` ("correct");
4. a letter after ``是`` ("is") not preceded by ``不`` ("not");
5. the only capital ``A``-``D`` of the response, if it has exactly one;
6. otherwise a **uniformly random letter** ("to ensure fair comparison").

Accuracy (:func:`official_accuracy`) is per subject, and the overall score is
the mean of the subject accuracies (macro, not per item).

**Where the project's grader deliberately differs** (see the parity test):

* The project's answer format is English, ``Answer: <letter>``; under rule 1
  the official code reads *every* response that starts with ``Answer`` as
  ``A``. The official reader is therefore applied to the continuation after
  the answer marker, which is what it sees under its own prompt.
* Unreadable output scores 0 in the project; the official code guesses, which
  is worth 1/4 in expectation (a model that writes nothing scores 25 %).
* Hedges score 0 in the project (``A, B, C, D``, ``B or C``, a changed
  answer); the official code takes the first letter (rule 1) or the first
  phrase. A model that lists every option thus scores 25 % officially and 0
  here.
* A lower-case letter is no choice in the project; officially it falls
  through to the random guess.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence

#: Option letters of a FinanceIQ question.
LETTERS = ("A", "B", "C", "D")

# Rule 2: (pattern, group of the letter), tried in this order; the first match
# anywhere in the response wins.
_PHRASES: tuple[tuple[re.Pattern[str], int], ...] = tuple(
    (re.compile(p, re.M), g)
    for p, g in (
        (r"答案(选项)?(是|为)：? ?([ABCD])", 3),
        (r"答案(是|为)选项 ?([ABCD])", 2),
        (r"故?选择?：? ?([ABCD])", 1),
        (r"([ABCD]) ?选?项(是|为)?正确", 1),
        (r"正确的?选项(是|为) ?([ABCD])", 2),
        (r"答案(应该)?(是|为)([ABCD])", 3),
        (r"选项 ?([ABCD]) ?(是|为)?正确", 1),
        (r"选择答案 ?([ABCD])", 1),
        (r"答案?：?([ABCD])", 1),
        (r"([ABCD])(选?项)?是?符合题意", 1),
        (r"答案选项：? ?([ABCD])", 1),
        (r"答案(选项)?为(.*?)([ABCD])", 3),
    )
)
# Rule 3: the letter nearest before a verdict word, within its first match.
_VERDICTS = (re.compile(r"([ABCD])(.*?)当选", re.M), re.compile(r"([ABCD])(.*?)正确", re.M))
# Rule 4: "is <letter>", not "is not <letter>".
_IS_LETTER = re.compile(r"[^不]是：? ?([ABCD])", re.M)
# Rule 5: exactly one capital option letter in the whole response.
_ONLY_LETTER = re.compile(r"^[^ABCD]*([ABCD])[^ABCD]*$")


#: Cells that pandas' ``read_csv`` reads back as a missing value (its default
#: ``na_values``): the official accuracy is computed from the saved CSV, where such a
#: response becomes ``"nan"``, from which no letter is read ("N/A" is no answer A).
_CSV_MISSING = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                          "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def official_response(output: str) -> str:
    """The response as the official accuracy reads it: newlines removed by the
    harness, then saved to and read back from a CSV file (a missing-value cell,
    e.g. an empty response or ``N/A``, comes back as ``"nan"``)."""
    text = str(output).replace("\n", "")
    return "nan" if text in _CSV_MISSING else text


def official_choice(output: str) -> str | None:
    """The letter the official ``extract_choice`` reads from ``output``, or
    ``None`` where it would guess one at random (rule 6)."""
    response = official_response(output)
    if response[0] in LETTERS:
        return response[0]
    for pattern, group in _PHRASES:
        match = pattern.search(response)
        if match:
            return match.group(group)
    for pattern in _VERDICTS:
        match = pattern.search(response)
        if match:
            # Narrow the first match to its last letter before the verdict word.
            while match:
                letter = match.group(1)
                match = pattern.search(match.group(0)[1:])
            return letter
    match = _IS_LETTER.search(response)
    if match:
        return match.group(1)
    match = _ONLY_LETTER.match(response)
    return match.group(1) if match else None


def official_score(output: str, answer: str, rng: random.Random | None = None) -> float:
    """The official per-item score: 1.0 if the read letter is ``answer``.

    Where the official code guesses, the score is the guess's expectation,
    0.25, or, with ``rng``, a guess drawn from it as the official code draws.
    """
    choice = official_choice(output)
    if choice is None:
        if rng is None:
            return 1 / len(LETTERS)
        choice = LETTERS[rng.randint(0, len(LETTERS) - 1)]
    return float(choice == (answer or "").strip())


def official_accuracy(outputs: Sequence[str], answers: Sequence[str], subjects: Sequence[str],
                      rng: random.Random | None = None) -> float:
    """The official overall accuracy in ``[0, 1]``: the mean over subjects of
    each subject's mean :func:`official_score` (0.0 for no items)."""
    if not len(outputs) == len(answers) == len(subjects):
        raise ValueError(f"{len(outputs)} outputs, {len(answers)} answers, {len(subjects)} subjects")
    by_subject: dict[str, list[float]] = defaultdict(list)
    for output, answer, subject in zip(outputs, answers, subjects, strict=True):
        by_subject[subject].append(official_score(output, answer, rng))
    if not by_subject:
        return 0.0
    return sum(sum(s) / len(s) for s in by_subject.values()) / len(by_subject)

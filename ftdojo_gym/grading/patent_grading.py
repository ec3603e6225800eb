"""Patent graders, after the PANORAMA benchmark (LG AI Research, arXiv 2505.12238).

PANORAMA's models answer in JSON and its scripts read the ``answer`` (PAR4PC,
PI4PC) or ``code`` (NOC4PC) field. Here a model answers in text, and the first
non-empty line after the output's *last* ``Answer:`` marker (case-insensitive,
at the start of a line, optionally inside Markdown emphasis such as
``**Answer:**``) plays the role of that field; everything after it follows the
official code (``benchmarks/<task>/inference.py`` parses, ``evaluation.py``
aggregates; github.com/LGAI-Research/PANORAMA). An output without the marker
scores 0: answering in the required format is part of the task. No grader
raises on any output string.

* **PAR4PC** (prior-art retrieval, several letters may be right): the answer
  line is split on commas and whitespace and upper-cased; the tokens that are
  one letter ``A``-``H`` are the predicted set (PANORAMA's
  ``process_llm_response``: ``"A and C"`` is ``{A, C}``, ``"A; C"`` is ``{C}``,
  ``"(A)"`` is nothing; a letter that is not an option still counts, as a false
  positive). The item score is the F1 of that set against the gold set, and the
  split score their mean: ``evaluation.py``'s "Macro F1-Score (Gold)". The
  project's stricter hedge rule (an answer naming *every* option scores 0) is
  available as ``grade_par4pc(..., reject_all_options=True)`` and is off by
  default.
* **PI4PC** (paragraph identification, single choice): the answer line is read
  as Python's ``int()`` reads it (``"34"``, ``" 0034 "``, ``"+34"``; not
  ``"[34]"``, ``"34."`` or ``"34, 35"``), like PANORAMA's
  ``process_llm_response_paragraphs``; the item scores 1 when the key is a gold
  key (``calculate_paragraph_score`` category "Gold"), and the split score is
  the gold hit rate (the ``gold_answer`` count over the items).
  :func:`panorama_pi4pc_custom_score` is PANORAMA's weighted score
  ``(2 * gold + silver) / n``, for reference.
* **NOC4PC** (novelty/obviousness, labels ``ALLOW``, ``102``, ``103``): the
  answer line, stripped and upper-cased, must be one of the three codes
  (``process_llm_response_rejection``; ``"allow"`` is ``ALLOW``, ``"Allowed"``
  and ``"103."`` are no prediction). The split score is
  ``f1_score(gold, predicted, labels=sorted(set(gold) | set(predicted) |
  {ALLOW, 102, 103}), average="macro", zero_division=0)`` with a missing
  prediction as the label ``PREDICTION_FAILED``, exactly as ``evaluation.py``:
  one unparseable answer adds a fourth class with F1 0, so the macro average is
  over four classes. The per-item score is 1 for the right label (accuracy),
  used to list wrong answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Outputs are truncated to their last this many characters before parsing: a
#: model output is bounded by its token limit, so anything longer is garbage.
MAX_SCORED_CHARS = 20_000
#: The NOC4PC labels, in PANORAMA's spelling.
NOC_LABELS: tuple[str, ...] = ("ALLOW", "102", "103")

_MARKER = re.compile(r"^[ \t>#*_`\"'-]*answer[ \t]*[*_`]*[ \t]*:[*_`]*", re.IGNORECASE | re.MULTILINE)
#: PANORAMA's PAR4PC answer split and letter range (``'A' <= token <= 'H'``, one letter).
_PANORAMA_SPLIT = re.compile(r"[,\s]+")
PANORAMA_LAST_LETTER = "H"


def extract_answer(text: str) -> str | None:
    """The first non-empty line after the last ``Answer:`` marker, stripped.

    ``""`` when nothing follows the marker; ``None`` when ``text`` has none.
    """
    if not isinstance(text, str):
        return None
    text = text[-MAX_SCORED_CHARS:]
    last = None
    for last in _MARKER.finditer(text):  # noqa: B007 - we want the last match
        pass
    if last is None:
        return None
    for line in text[last.end():].splitlines():
        if line.strip():
            return line.strip()
    return ""


# --------------------------------------------------------------------- PAR4PC


def parse_letters(answer: str) -> set[str]:
    """The letters named in ``answer`` by PANORAMA's rule: split on commas and
    whitespace, upper-case, keep the tokens that are one letter ``A``-``H``."""
    return {t for t in _PANORAMA_SPLIT.split(answer.upper()) if len(t) == 1 and "A" <= t <= PANORAMA_LAST_LETTER}


def set_f1(predicted: set[str], gold: set[str]) -> float:
    """F1 of a predicted set against a gold set (0 when either is empty)."""
    tp = len(predicted & gold)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(predicted), tp / len(gold)
    return 2 * precision * recall / (precision + recall)


def grade_par4pc(output: str, gold: Sequence[str], options: Sequence[str], *,
                 reject_all_options: bool = False) -> float:
    """Per-item F1 of the named letters against ``gold``; 0 without ``Answer:``.

    ``reject_all_options``: the project's stricter hedge rule, off by default
    (PANORAMA scores such an answer by its F1): an answer naming every one of
    ``options`` scores 0 when fewer than all of them are gold.
    """
    answer = extract_answer(output)
    if answer is None:
        return 0.0
    predicted = parse_letters(answer)
    gold_set = {g.upper() for g in gold}
    if reject_all_options and set(options) and {o.upper() for o in options} <= predicted \
            and len(gold_set) < len(set(options)):
        return 0.0
    return set_f1(predicted, gold_set)


# ---------------------------------------------------------------------- PI4PC


def parse_paragraph_key(answer: str) -> int | None:
    """The paragraph key ``answer`` names, read as Python's ``int()`` reads it
    (PANORAMA's ``int(answer)``); ``None`` when it is not an integer."""
    try:
        return int(answer[:100])
    except (TypeError, ValueError):
        return None


def grade_pi4pc(output: str, gold: Sequence[int]) -> float:
    """1 when the named paragraph key is a gold key, else 0 (gold hit)."""
    answer = extract_answer(output)
    if answer is None:
        return 0.0
    key = parse_paragraph_key(answer)
    return 1.0 if key is not None and key in {int(g) for g in gold} else 0.0


def panorama_pi4pc_custom_score(outputs: Sequence[str], gold: Sequence[Sequence[int]],
                                silver: Sequence[Sequence[int]]) -> float:
    """PANORAMA's PI4PC "Custom Score": ``(2 * gold hits + silver hits) / n``, in ``[0, 2]``."""
    total = 0
    for output, g, s in zip(outputs, gold, silver, strict=True):
        answer = extract_answer(output)
        key = None if answer is None else parse_paragraph_key(answer)
        total += 2 if key in {int(x) for x in g} else 1 if key in {int(x) for x in s} else 0
    return total / len(outputs) if outputs else 0.0


# --------------------------------------------------------------------- NOC4PC

#: What ``evaluation.py`` calls a missing prediction (``fillna('PREDICTION_FAILED')``).
PREDICTION_FAILED = "PREDICTION_FAILED"


def parse_noc_label(answer: str) -> str | None:
    """``ALLOW``, ``102`` or ``103`` when ``answer``, stripped and upper-cased, is one of them."""
    code = answer[:100].strip().upper()
    return code if code in NOC_LABELS else None


def predict_noc(output: str) -> str | None:
    """The label an output predicts (``None``: no ``Answer:`` or not one of the three codes)."""
    answer = extract_answer(output)
    return None if answer is None else parse_noc_label(answer)


def grade_noc4pc(output: str, gold: str) -> float:
    """Per-item accuracy: 1 for the gold label."""
    return 1.0 if predict_noc(output) == normalise_noc_label(gold) else 0.0


_GOLD_LABEL = (
    ("ALLOW", re.compile(r"\ballow(?:ed|able|ance)?\b", re.IGNORECASE)),
    ("102", re.compile(r"(?<!\d)102(?!\d)")),
    ("103", re.compile(r"(?<!\d)103(?!\d)")),
)


def normalise_noc_label(label: object) -> str | None:
    """A *gold* code from the data as ``ALLOW``/``102``/``103`` (``allowed``, ``35 USC 103``...);
    ``None`` when it names none or several. Model outputs are parsed by :func:`parse_noc_label`."""
    if label is None:
        return None
    found = {code for code, pattern in _GOLD_LABEL if pattern.search(str(label)[:1000])}
    return found.pop() if len(found) == 1 else None


def macro_f1(gold: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str] = NOC_LABELS) -> float:
    """PANORAMA's NOC4PC macro-F1: ``sklearn.metrics.f1_score(gold, predicted, labels=L,
    average="macro", zero_division=0)`` with ``L = sorted(set(gold) | set(predicted) |
    set(labels))`` and a ``None`` prediction counted as the label ``PREDICTION_FAILED``
    (so one failed answer adds a class with F1 0 to the average)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} gold labels")
    pred = [PREDICTION_FAILED if p is None else p for p in predicted]
    classes = set(gold) | set(pred) | set(labels)
    if not gold:
        return 0.0
    total = 0.0
    for label in classes:
        tp = sum(g == label and p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, pred, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, pred, strict=True))
        total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return total / len(classes)


__all__ = [
    "MAX_SCORED_CHARS",
    "NOC_LABELS",
    "PANORAMA_LAST_LETTER",
    "PREDICTION_FAILED",
    "extract_answer",
    "grade_noc4pc",
    "grade_par4pc",
    "grade_pi4pc",
    "macro_f1",
    "normalise_noc_label",
    "parse_letters",
    "parse_noc_label",
    "panorama_pi4pc_custom_score",
    "parse_paragraph_key",
    "predict_noc",
    "set_f1",
]

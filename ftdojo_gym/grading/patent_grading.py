"""Patent graders, after the PANORAMA benchmark (LG AI Research, arXiv 2505.12238).

Every model output is read after its *last* ``Answer:`` marker (case-insensitive,
at the start of a line, optionally inside Markdown emphasis such as
``**Answer:**``); only the first non-empty line after it counts. An output
without the marker scores 0: answering in the required format is part of the
task. No grader raises on any output string.

* **PAR4PC** (prior-art retrieval, several letters may be right): the answer
  is read as a set of option letters, exactly like PANORAMA's
  ``benchmarks/par4pc/evaluation.py`` (split on commas and whitespace, keep the
  tokens that are option letters); the item score is the F1 of that set against
  the gold set, and the task score is their mean, PANORAMA's "Macro F1-Score
  (Gold)". One stricter rule: an answer naming *every* option is no answer and
  scores 0 (PANORAMA's custom score, ``max(0, 2*TP - FP - FN)``, also gives it
  0 whenever fewer than half of the options are gold).
* **PI4PC** (paragraph identification, single choice): the answer must name
  exactly one paragraph key (an integer; ``[0034]`` and ``34`` are the same
  key); the score is 1 when that key is a gold key (the examiner-cited
  paragraph) and 0 otherwise, i.e. the gold hit rate (PANORAMA's
  ``calculate_paragraph_score`` category "Gold"). Several keys are a hedge and
  score 0, as in PANORAMA, which parses a single ``int``.
* **NOC4PC** (novelty/obviousness, labels ``ALLOW``, ``102``, ``103``): each
  output is parsed into exactly one label (or none); the split score is the
  macro-F1 over the three labels, as ``sklearn.metrics.f1_score(...,
  average="macro", zero_division=0)`` in PANORAMA's
  ``benchmarks/noc4pc/evaluation.py``. The per-item score is 1 for the right
  label (accuracy), used to list wrong answers. Deviation: PANORAMA adds every
  predicted string to the label set, so a single malformed answer would add a
  fourth class with F1 0; here unparseable answers are simply wrong (they lower
  the recall of their true class), so the macro average always has the three
  real classes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

#: Outputs are truncated to their last this many characters before parsing: a
#: model output is bounded by its token limit, so anything longer is garbage.
MAX_SCORED_CHARS = 20_000
#: The NOC4PC labels, in PANORAMA's spelling.
NOC_LABELS: tuple[str, ...] = ("ALLOW", "102", "103")

_MARKER = re.compile(r"^[ \t>#*_`\"'-]*answer[ \t]*[*_`]*[ \t]*:[*_`]*", re.IGNORECASE | re.MULTILINE)
_TOKEN_SPLIT = re.compile(r"[,\s;/&+|]+")
_TOKEN_STRIP = "\"'`*_()[]{}<>.:!?"
_INTEGER = re.compile(r"\d+")


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


def parse_letters(answer: str, options: Iterable[str]) -> set[str]:
    """Option letters named in ``answer`` (PANORAMA's rule: split on commas and
    whitespace, keep the tokens that are option letters; ``and`` is a separator)."""
    valid = {o.upper() for o in options}
    letters = set()
    for token in _TOKEN_SPLIT.split(answer.upper()):
        token = token.strip(_TOKEN_STRIP)
        if token in valid:
            letters.add(token)
    return letters


def set_f1(predicted: set[str], gold: set[str]) -> float:
    """F1 of a predicted set against a gold set (0 when either is empty)."""
    tp = len(predicted & gold)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(predicted), tp / len(gold)
    return 2 * precision * recall / (precision + recall)


def grade_par4pc(output: str, gold: Sequence[str], options: Sequence[str]) -> float:
    """Per-item F1 of the cited letters; 0 without ``Answer:`` or when every option is named."""
    answer = extract_answer(output)
    if answer is None:
        return 0.0
    predicted = parse_letters(answer, options)
    gold_set = {g.upper() for g in gold}
    if not gold_set or (len(predicted) == len(set(options)) > len(gold_set)):
        return 0.0
    return set_f1(predicted, gold_set)


# ---------------------------------------------------------------------- PI4PC


def parse_paragraph_key(answer: str) -> int | None:
    """The single paragraph key named in ``answer``; ``None`` for zero or several keys."""
    keys = {int(m.group(0)) for m in _INTEGER.finditer(answer[:1000])}
    return keys.pop() if len(keys) == 1 else None


def grade_pi4pc(output: str, gold: Sequence[int]) -> float:
    """1 when the one named paragraph key is a gold key, else 0 (gold hit)."""
    answer = extract_answer(output)
    if answer is None:
        return 0.0
    key = parse_paragraph_key(answer)
    return 1.0 if key is not None and key in {int(g) for g in gold} else 0.0


# --------------------------------------------------------------------- NOC4PC

_LABEL_PATTERNS = (
    ("ALLOW", re.compile(r"\ballow(?:ed|able|ance)?\b", re.IGNORECASE)),
    ("102", re.compile(r"(?<!\d)102(?!\d)")),
    ("103", re.compile(r"(?<!\d)103(?!\d)")),
)


def parse_noc_label(answer: str) -> str | None:
    """``ALLOW``, ``102`` or ``103`` when ``answer`` names exactly one of them."""
    found = {label for label, pattern in _LABEL_PATTERNS if pattern.search(answer[:1000])}
    return found.pop() if len(found) == 1 else None


def predict_noc(output: str) -> str | None:
    """The label an output predicts (``None``: no ``Answer:`` or not exactly one label)."""
    answer = extract_answer(output)
    return None if answer is None else parse_noc_label(answer)


def grade_noc4pc(output: str, gold: str) -> float:
    """Per-item accuracy: 1 for the gold label."""
    return 1.0 if predict_noc(output) == normalise_noc_label(gold) else 0.0


def normalise_noc_label(label: object) -> str | None:
    """PANORAMA's codes as strings: ``102``/``103``/``ALLOW`` (also ``allowed`` etc.)."""
    return parse_noc_label(str(label)) if label is not None else None


def macro_f1(gold: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str] = NOC_LABELS) -> float:
    """Macro-F1 over ``labels`` (``sklearn`` ``average="macro", zero_division=0``).

    A prediction outside ``labels`` (``None`` for an unparseable answer) is a
    false negative of the item's gold label and a false positive of nothing.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} gold labels")
    if not labels:
        return 0.0
    total = 0.0
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return total / len(labels)


__all__ = [
    "MAX_SCORED_CHARS",
    "NOC_LABELS",
    "extract_answer",
    "grade_noc4pc",
    "grade_par4pc",
    "grade_pi4pc",
    "macro_f1",
    "normalise_noc_label",
    "parse_letters",
    "parse_noc_label",
    "parse_paragraph_key",
    "predict_noc",
    "set_f1",
]

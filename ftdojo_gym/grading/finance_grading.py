"""FinanceIQ grader: accuracy of a single option letter given in a strict format.

A FinanceIQ item is a single-choice question with options ``A``-``D``; the
model must answer ``Answer: <letter>`` (``答案：<letter>`` is accepted too, the
real benchmark being Chinese). :func:`extract_choice` reads the choice:

* the marker is ``Answer:`` (any case, optional spaces before the colon, a
  full-width colon allowed) or ``答案:``; an output without it has no choice;
* the answer is the first non-empty line after the *last* marker, and it must
  start with one capital letter ``A``-``D``, bare or in brackets, followed by
  the end of the line, punctuation or a separator (``"C"``, ``"C."``,
  ``"(C)"``, ``"C) Mortgage"``, ``"C - Mortgage"``). Lower-case letters, option
  text (``"Answer: Mortgage"``, ``"Answer: A loan secured by ..."``) and run-on
  letters (``"AB"``) are no choice;
* hedging scores nothing: an answer line that names a second option letter
  (``"A or C"``, ``"A, B, C, D"``, ``"A/B"``, ``"C (or maybe D)"``), or an
  earlier marker with a different letter (``"Answer: A ... Answer: B"``), is
  no choice. A bare capital ``A`` followed by a lower-case word is the
  article, not a letter (``"C. A loan secured by real estate"``); any other
  letter before a word still is one (``"Answer: C is correct"``).

:func:`grade_choice` is 1.0 when the choice equals the gold letter, else 0.0.
Nothing here raises on any string.
"""

from __future__ import annotations

import re

#: Option letters of a FinanceIQ question.
LETTERS = ("A", "B", "C", "D")
#: Outputs are cut to this many characters before scoring (a model output is
#: bounded by its token limit; this bounds the regex work on garbage input).
MAX_SCORED_CHARS = 20_000
#: Only this much of an answer line is read (a letter hidden later is not an answer).
MAX_LINE_CHARS = 500

_MARKER = re.compile(r"(?:\banswer\s*[:：]|答案\s*[:：]?)", re.IGNORECASE)
# A standalone option letter, optionally bracketed, that is not the article
# "A" of a phrase ("A loan ...": the letter followed by a lower-case word) and
# not part of a word or a number ("AB", "A1", "Apple").
# Only a bare "A" can be the article: "C is correct" and "B was right" name letters.
_LETTER_TOKEN = re.compile(r"(?<![A-Za-z0-9])[(\[（]?([A-D])[)\]）]?(?![A-Za-z0-9])(?!(?<=A)\s+[a-z])")
_LEADING = re.compile(r"\s*[(\[（]?([A-D])[)\]）]?(?![A-Za-z0-9])(?!(?<=A)\s+[a-z])")


def _line_choice(line: str) -> str | None:
    """The letter an answer line starts with, or ``None`` (no letter, or several)."""
    lead = _LEADING.match(line)
    if lead is None:
        return None
    named = {m.group(1) for m in _LETTER_TOKEN.finditer(line)}
    return lead.group(1) if named == {lead.group(1)} else None


def _answer_line(text: str, start: int, end: int) -> str:
    """The first non-empty line of ``text[start:end]`` (at most ``MAX_LINE_CHARS``)."""
    segment = text[start:end].lstrip()
    return segment.split("\n", 1)[0][:MAX_LINE_CHARS]


def extract_choice(text: str) -> str | None:
    """The single option letter of ``text`` in the strict format, else ``None``."""
    if not isinstance(text, str):
        return None
    text = text[:MAX_SCORED_CHARS]
    markers = list(_MARKER.finditer(text))
    if not markers:
        return None
    # An answer ends at the end of its line or at the next marker.
    ends = [m.start() for m in markers[1:]] + [len(text)]
    choices = [_line_choice(_answer_line(text, m.end(), end)) for m, end in zip(markers, ends, strict=True)]
    final = choices[-1]
    if final is None:
        return None
    # An earlier answer with another letter is hedging, not a correction.
    if any(c is not None and c != final for c in choices[:-1]):
        return None
    return final


def grade_choice(output: str, answer: str) -> float:
    """1.0 if ``output`` chooses exactly the gold letter ``answer``, else 0.0."""
    gold = (answer or "").strip().upper()
    if gold not in LETTERS:
        return 0.0
    return float(extract_choice(output) == gold)


def accuracy(outputs: list[str], answers: list[str]) -> float:
    """Mean of :func:`grade_choice` (0.0 for no items)."""
    if len(outputs) != len(answers):
        raise ValueError(f"{len(outputs)} outputs for {len(answers)} answers")
    if not outputs:
        return 0.0
    return sum(map(grade_choice, outputs, answers)) / len(outputs)

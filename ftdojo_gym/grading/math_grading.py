"""AIME grading: the last ``\\boxed{...}`` of an output, verified with math-verify.

The answer format is strict and single: the model's final answer is the
content of the **last** ``\\boxed{...}`` in its output. Everything else is
ignored: text after the box, earlier boxes, an ``Answer: N`` line. So

* no ``\\boxed{}`` (or an unclosed last one, e.g. a generation cut off inside
  it) scores 0, however right the number in the text is;
* an output that boxes many candidates scores 1 only if the *last* box is
  right, which is no better than committing to that one answer; a single box
  with several numbers (``\\boxed{17, 42}``, ``\\boxed{17 \\text{ or } 42}``) is
  a set, not a number, and scores 0;
* equal values in other notations score 1 (``\\boxed{042}``,
  ``\\boxed{\\frac{84}{2}}``, ``\\boxed{42.0}``, ``\\boxed{x = 42}``), as
  math-verify decides.

How a box is checked: a box whose content is a plain ASCII integer
(``042``, ``$42$``) is compared with an integer gold answer exactly, in the
calling process (this is what math-verify returns for such pairs, and it is
tested to agree). Any other content goes to math-verify (``parse`` with a
LaTeX-only extraction of the box, then ``verify`` against the gold answer) in
a separate Python process. math-verify guards its work with ``signal.alarm``,
which only works on a main thread and cannot interrupt long C-level sympy
arithmetic such as ``9^{9^{9}}``; the child process runs it on its own main
thread, with math-verify's own timeouts on, under an address-space cap, and the
caller kills it when one answer takes longer than ``timeout`` seconds (that
answer scores 0; the child restarts for the rest). So grading works from any
thread and never hangs. Box contents longer than :data:`MAX_ANSWER_CHARS` score
0 without being parsed (an AIME answer is an integer from 0 to 999).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from ftdojo_gym.grading.child_source import PRELUDE
from ftdojo_gym.grading.sandbox import stop_process

#: Only the last this many characters of an output are searched for the box:
#: an output is bounded by its token limit, so more is garbage.
MAX_SCORED_CHARS = 20_000
#: Longest box content that is parsed at all.
MAX_ANSWER_CHARS = 64
#: Seconds one math-verify check may take before it scores 0.
DEFAULT_TIMEOUT_S = 5.0
# Allowance for the child's start-up (importing sympy and math-verify).
_STARTUP_GRACE_S = 60.0

_BOX_OPEN = re.compile(r"\\boxed\s*\{")
_INTEGER = re.compile(r"\$?\s*([0-9]{1,12})\s*\$?")


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` of ``text``, stripped.

    Returns ``None`` when there is no ``\\boxed{`` or when the last one is not
    closed (braces are matched, so ``\\boxed{\\frac{1}{2}}`` gives
    ``\\frac{1}{2}``), and ``""`` for an empty box.
    """
    if not isinstance(text, str):
        return None
    text = text[-MAX_SCORED_CHARS:]
    last = None
    for match in _BOX_OPEN.finditer(text):
        last = match
    if last is None:
        return None
    depth = 1
    for i in range(last.end(), len(text)):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[last.end() : i].strip()
    return None


def as_integer(text: str) -> int | None:
    """``text`` as an integer if it is a plain ASCII integer (``"042"``, ``"$42$"``), else ``None``."""
    match = _INTEGER.fullmatch(text.strip())
    return int(match.group(1)) if match else None


def grade_answer(output: str, answer: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> float:
    """1.0 if the last box of ``output`` equals ``answer``, else 0.0 (see the module docstring)."""
    return grade_answers([output], [answer], timeout=timeout)[0]


def grade_answers(
    outputs: Sequence[str], answers: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S
) -> list[float]:
    """Scores in ``{0.0, 1.0}``, one per (output, gold answer) pair; never raises on an output.

    Raises :class:`ModuleNotFoundError` if an answer needs math-verify and it is
    not installed (``pip install math-verify``): a missing grader must not look
    like a wrong answer.
    """
    if len(outputs) != len(answers):
        raise ValueError(f"{len(outputs)} outputs for {len(answers)} answers")
    scores = [0.0] * len(outputs)
    pending: list[tuple[int, str, str]] = []
    for i, (output, answer) in enumerate(zip(outputs, answers, strict=True)):
        content = extract_boxed(output)
        if not content or len(content) > MAX_ANSWER_CHARS:
            continue
        gold = str(answer).strip()
        gold_int, pred_int = as_integer(gold), as_integer(content)
        if gold_int is not None and pred_int is not None:
            scores[i] = float(gold_int == pred_int)
        else:
            pending.append((i, gold, content))
    if pending:
        if importlib.util.find_spec("math_verify") is None:
            raise ModuleNotFoundError(
                "grading AIME answers needs math-verify: pip install 'math-verify[antlr4_13_2]' "
                "(or the package's 'tasks' extra)"
            )
        verdicts = _verify_in_child([(gold, content) for _, gold, content in pending], timeout)
        for (i, _, _), ok in zip(pending, verdicts, strict=True):
            scores[i] = float(ok)
    return scores


# The child: math-verify on its own main thread (its signal-based timeouts
# work there). One JSON request per line on stdin, [gold, box content]; one
# JSON reply per line, true/false. Stray output of the libraries goes to
# /dev/null, never into the reply channel.
_CHILD_SOURCE = PRELUDE + r"""
sys.path[:0] = json.loads(sys.argv[1])
import logging
logging.disable(logging.CRITICAL)
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
cap_memory()
GOLD = [LatexExtractionConfig(), ExprExtractionConfig()]
PRED = [LatexExtractionConfig(boxed_match_priority=0)]
reply.write("ready\n")
reply.flush()
for line in sys.stdin:
    try:
        gold_text, content = json.loads(line)
        gold = parse("$" + gold_text + "$", extraction_config=GOLD, parsing_timeout=1)
        pred = parse("\\boxed{" + content + "}", extraction_config=PRED, parsing_timeout=1)
        ok = bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=1))
    except BaseException:
        ok = False
    reply.write("true\n" if ok else "false\n")
    reply.flush()
"""

_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH")


def _start_child() -> subprocess.Popen[bytes]:
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env.update(PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    paths = [p for p in sys.path if p]
    return subprocess.Popen(
        [sys.executable, "-I", "-c", _CHILD_SOURCE, json.dumps(paths)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=tempfile.gettempdir(),
        env=env,
    )


def _read_line(fd: int, buffer: bytes, seconds: float) -> tuple[bytes, bytes]:
    """The next line from ``fd`` (after ``buffer``) and the rest; TimeoutError if none in time."""
    deadline = time.monotonic() + seconds
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        ready = select.select([fd], [], [], remaining)[0] if remaining > 0 else []
        data = os.read(fd, 1 << 12) if ready else b""
        if not data:  # timed out, or the child died
            raise TimeoutError
        buffer += data
    line, rest = buffer.split(b"\n", 1)
    return line, rest


def _verify_in_child(pairs: Sequence[tuple[str, str]], timeout: float) -> list[bool]:
    """math-verify's verdict on each (gold, box content) pair; False on timeout or any failure."""
    verdicts = [False] * len(pairs)
    i = 0
    while i < len(pairs):
        proc = _start_child()
        assert proc.stdin is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        try:
            line, buffer = _read_line(fd, b"", _STARTUP_GRACE_S)
            if line != b"ready":
                raise TimeoutError
        except (TimeoutError, OSError):
            stop_process(proc)
            # Not caused by any output (none was sent yet): the grader itself is broken.
            raise RuntimeError("math-verify failed to start in a child process; try "
                               "`python -c 'import math_verify'` to see why") from None
        try:
            while i < len(pairs):
                proc.stdin.write(json.dumps(pairs[i]).encode() + b"\n")
                proc.stdin.flush()
                line, buffer = _read_line(fd, buffer, timeout)
                verdicts[i] = line.strip() == b"true"
                i += 1
        except (TimeoutError, OSError):
            i += 1  # this answer hung or crashed the child: it scores 0; restart for the rest
        finally:
            stop_process(proc)
    return verdicts

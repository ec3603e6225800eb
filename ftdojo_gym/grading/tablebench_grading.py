"""TableBench graders, as in the TableBench paper, for the four subsets.

Every grader reads the answer after the *last* ``Final Answer:`` of a model
output (case-insensitive) and returns a score in ``[0, 1]``; an output without
that marker scores 0, because answering in the required format is part of the
task. No grader raises on any output string.

* FactChecking — exact match after normalising case and whitespace.
* NumericalReasoning — the first number of the answer is within 10 % relative
  error of the reference number (exact when the reference is 0).
* DataAnalysis — ROUGE-L F-measure (``rouge-score``) against the reference.
* Visualization — Pass@1 of plotting code: the code runs in a bubblewrap
  sandbox (:mod:`ftdojo_gym.grading.sandbox`) whose working directory is a
  fresh private directory holding the item's table as ``table.csv``;
  afterwards the plotted y-values (bar heights, line y-data, pie wedge
  fractions) must match the reference values within 1e-2 relative tolerance.

The sandbox holds only the interpreter and the plotting stack (matplotlib,
pandas, numpy): not this package, the env's files, its memory, its
environment or the network; each item's processes die with the item, with at
most ``timeout`` seconds, 1 GiB above a warm interpreter and 16 MiB per
file. The reference values never enter it: they are compared here. Where no
sandbox can run (no ``bwrap``, no user namespaces, not Linux) every
Visualization output scores 0 and an error is logged: model-written code
never runs unconfined.
"""

from __future__ import annotations

import logging
import math
import queue
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from ftdojo_gym.grading.sandbox import Sandbox, SandboxUnavailableError, sandbox_unavailable

ChartType = Literal["bar", "line", "pie"]

#: Relative tolerance when comparing plotted values with the reference.
CHART_RTOL = 1e-2
#: Relative tolerance of NumericalReasoning.
NUMERIC_RTOL = 0.10
#: Outputs are truncated to this many characters before scoring: a model
#: output is bounded by its token limit, so anything longer is garbage, and the
#: cap bounds the cost of ROUGE's quadratic LCS and of compiling code.
MAX_SCORED_CHARS = 20_000

_FINAL_ANSWER = re.compile(r"final\s*answer\s*:", re.IGNORECASE)
# Thousands separators are only recognised in proper groups of three, so that
# "3,4" reads as 3 (a list), while "1,234" reads as 1234.
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_FENCED_CODE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.IGNORECASE | re.DOTALL)


def _answer_text(text: str) -> str | None:
    """Everything after the last ``Final Answer:``, stripped; ``None`` without the marker."""
    text = text[-MAX_SCORED_CHARS:]
    last = max(_FINAL_ANSWER.finditer(text), key=lambda m: m.start(), default=None)
    if last is None:
        return None
    return text[last.end() :].strip()


def extract_final_answer(text: str) -> str | None:
    """The short answer after the last ``Final Answer:`` in ``text``.

    Returns the first non-empty line after the marker with surrounding
    whitespace and a trailing period removed (``""`` if nothing follows), or
    ``None`` when ``text`` has no ``Final Answer:`` or hedges: several
    ``Final Answer:`` lines that disagree (listing every option must not pass).
    Later lines are ignored: a model that keeps talking after its answer is not
    penalised for it; repeating the same answer is fine.
    """
    text = text[-MAX_SCORED_CHARS:]
    marks = list(_FINAL_ANSWER.finditer(text))
    ends = [m.start() for m in marks[1:]] + [len(text)] if marks else []
    answers = {_first_line(text[m.end():end]).casefold() for m, end in zip(marks, ends, strict=True)}
    if len(answers) > 1:
        return None
    rest = _answer_text(text)
    if rest is None:
        return None
    return _first_line(rest)


def _first_line(rest: str) -> str:
    return rest.strip().split("\n", 1)[0].strip().rstrip(".").strip()


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def grade_fact_checking(output: str, answer: str) -> float:
    """1.0 if the final answer equals ``answer`` up to case and whitespace, else 0.0."""
    predicted = extract_final_answer(output)
    if predicted is None:
        return 0.0
    return float(_normalise(predicted) == _normalise(answer.strip().rstrip(".")))


def parse_first_number(text: str) -> float | None:
    """The first number in ``text`` (commas as thousands separators, ``%`` ignored), or ``None``."""
    match = _NUMBER.search(text.replace("\u2212", "-"))
    if match is None:
        return None
    return float(match.group().replace(",", ""))


def grade_numerical_reasoning(output: str, answer: str) -> float:
    """1.0 if the first number of the final answer is within 10 % of ``answer``'s number.

    A reference of 0 needs an exact 0. A reference without a number falls
    back to exact match, so a malformed item cannot be passed by any number.
    """
    predicted = extract_final_answer(output)
    if predicted is None:
        return 0.0
    reference = parse_first_number(answer)
    if reference is None:
        return float(_normalise(predicted) == _normalise(answer))
    value = parse_first_number(predicted)
    if value is None or not math.isfinite(value):
        return 0.0
    if reference == 0:
        return float(value == 0)
    return float(abs(value - reference) <= NUMERIC_RTOL * abs(reference) * (1 + 1e-12))


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def grade_data_analysis(output: str, answer: str) -> float:
    """ROUGE-L F-measure between the final answer and ``answer`` (0.0 without a final answer)."""
    predicted = extract_final_answer(output)
    if not predicted:
        return 0.0
    score = _rouge_scorer().score(answer, predicted)["rougeL"].fmeasure
    return float(min(1.0, max(0.0, score)))


def extract_plot_code(output: str) -> str | None:
    """The plotting code of an output, or ``None`` if there is none.

    The last fenced Python block wins (```` ```python ```` or a bare fence);
    otherwise the whole text after the last ``Final Answer:``, which is how the
    TableBench task in this package asks for code.
    """
    output = output[-MAX_SCORED_CHARS:]
    blocks = _FENCED_CODE.findall(output)
    if blocks:
        return blocks[-1]
    rest = _answer_text(output)
    if not rest:
        return None
    return rest


@dataclass(frozen=True)
class ChartReference:
    """What a Visualization answer must plot.

    ``y_values`` are the raw reference values in table order; for a pie chart
    they are compared as fractions of their sum (wedge sizes, order-free, as
    TableBench does).
    """

    chart_type: ChartType
    y_values: tuple[float, ...]
    table_csv: str


def chart_matches(chart_type: str, predicted: Sequence[float], reference: Sequence[float]) -> bool:
    """Whether plotted values equal the reference within ``CHART_RTOL``."""
    pred = [float(v) for v in predicted]
    ref = [float(v) for v in reference]
    if chart_type == "pie":
        total = sum(ref)
        if total <= 0:
            return False
        ref = sorted(v / total for v in ref)
        pred = sorted(pred)
    if len(pred) != len(ref) or not ref:
        return False
    return all(
        math.isfinite(p) and math.isclose(p, r, rel_tol=CHART_RTOL, abs_tol=1e-9)
        for p, r in zip(pred, ref, strict=True)
    )


# Inside the sandbox runner (see ftdojo_gym.grading.sandbox): the plotting stack
# is imported once, then each item's code runs in a fresh forked child.
_SETUP_SOURCE = r"""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle, Wedge
"""

# collect() reads the figures through functions captured (in a closure) before
# the item's code runs: code that replaces plt.get_fignums, Rectangle.get_height
# or the global collect does not change what is reported. (Code can still
# build or edit its own figure: those values count as plotted, as they are.)
_COLLECT_SOURCE = r"""
def _make_collect():
    get_fignums, figure, fig_axes = plt.get_fignums, plt.figure, Figure.__dict__["axes"].fget
    get_lines, get_ydata = Axes.get_lines, Line2D.get_ydata
    get_height, get_width = Rectangle.get_height, Rectangle.get_width
    isinstance_, getattr_, float_, list_, len_ = isinstance, getattr, float, list, len
    asarray, bar_container, wedge = np.asarray, BarContainer, Wedge

    def collect(params):
        kind = params["chart_type"]
        values = []
        for num in list_(get_fignums()):
            for ax in list_(fig_axes(figure(num))):
                if kind == "bar":
                    for container in list_(ax.containers):
                        if isinstance_(container, bar_container):
                            horizontal = getattr_(container, "orientation", None) == "horizontal"
                            get = get_width if horizontal else get_height
                            values += [get(p) for p in list_(container.patches)]
                elif kind == "line":
                    for line in list_(get_lines(ax)):
                        values += asarray(get_ydata(line), dtype=float).ravel().tolist()
                elif kind == "pie":
                    values += [(p.theta2 - p.theta1) / 360.0
                               for p in list_(ax.patches) if isinstance_(p, wedge)]
                if len_(values) > 100000:
                    raise ValueError("too many plotted values")
        return [float_(v) for v in values]

    return collect

collect = _make_collect()
"""

#: Distributions visible to plotting code (with their requirements); nothing else is.
PLOTTING_STACK: tuple[str, ...] = ("matplotlib", "pandas", "numpy")

_log = logging.getLogger(__name__)


def plot_sandbox() -> Sandbox:
    """A sandbox with the plotting stack (raises :class:`SandboxUnavailableError` without bwrap)."""
    return Sandbox(_SETUP_SOURCE, _COLLECT_SOURCE, PLOTTING_STACK)


def grade_visualization(
    outputs: Sequence[str],
    references: Sequence[ChartReference],
    *,
    timeout: float = 10.0,
    workers: int = 2,
) -> list[float]:
    """Pass@1 of each output's plotting code against its reference chart.

    Each code runs in its own process inside a sandbox (see the module
    docstring; one warm sandbox per worker), at most ``workers`` at a time,
    killed with all its processes after ``timeout`` seconds. Returns 1.0 where
    the plotted values of the reference's chart type match, else 0.0; all 0.0,
    with an error logged, where no sandbox can run.
    """
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs for {len(references)} references")
    codes = [_runnable_code(output) for output in outputs]
    if not any(c is not None for c in codes):
        return [0.0] * len(outputs)
    reason = sandbox_unavailable()
    if reason is not None:
        # Never run model-written code unconfined: refuse, loudly, item by item.
        _log.error("Visualization outputs score 0: no sandbox for model-written code: %s", reason)
        return [0.0] * len(outputs)
    sandboxes: queue.SimpleQueue[Sandbox] = queue.SimpleQueue()
    pool: list[Sandbox] = []

    def grade_one(index: int) -> float:
        code, reference = codes[index], references[index]
        if code is None:
            return 0.0
        try:
            sandbox = sandboxes.get_nowait()
        except queue.Empty:
            # Created in a worker thread that lives until the batch ends: bwrap's
            # --die-with-parent follows the thread that started it.
            try:
                sandbox = plot_sandbox()
            except SandboxUnavailableError as exc:
                _log.error("Visualization output scores 0: no sandbox: %s", exc)
                return 0.0
            pool.append(sandbox)
        try:
            values = sandbox.run(
                code, {"table.csv": reference.table_csv}, timeout, {"chart_type": reference.chart_type}
            )
        finally:
            sandboxes.put(sandbox)
        try:
            return float(
                values is not None
                and chart_matches(reference.chart_type, values, reference.y_values)
            )
        except (TypeError, ValueError):
            return 0.0

    try:
        n_workers = max(1, min(workers, sum(c is not None for c in codes)))
        with ThreadPoolExecutor(max_workers=n_workers) as executor:
            return list(executor.map(grade_one, range(len(outputs))))
    finally:
        for sandbox in pool:
            sandbox.close()


def _runnable_code(output: str) -> str | None:
    """The output's code if it compiles; compiling here skips a run for syntax errors."""
    try:
        code = extract_plot_code(output)
        if code is None:
            return None
        compile(code, "<answer>", "exec")
        return code
    except Exception:  # SyntaxError, ValueError (NUL bytes), RecursionError, ...
        return None

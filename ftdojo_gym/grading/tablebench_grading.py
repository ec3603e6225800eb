"""TableBench graders: the official TableBench evaluation, re-implemented.

The reference is the official evaluation code of TableBench
(``github.com/TableBench/TableBench``: ``parse_tablebench_instruction_response_script.py``,
``eval_tablebench_script.py``, ``metrics/qa_metrics.py``,
``metrics/custom_em_metric.py``, ``metrics/chart_metric_utils.py``). Every
grader returns a score in ``[0, 1]`` per item and never raises on any output
string; the official split scores are the means of these per-item scores
(times 100). ``tests/grading/test_tablebench_parity.py`` pins the numbers the
official code gives on its own example predictions.

**Answer parsing** (:func:`extract_final_answer`), as the official parser: the
rest of the line after the *first* ``Final Answer: `` (case-sensitive, exactly
one space after the colon; ``final answer:``, ``Final Answer:42`` or an answer
on the next line do not parse and score 0). ``hedge_rule=True`` adds this
project's stricter rule: several ``Final Answer:`` lines that disagree score 0.

**Normalisation** (:func:`normalize_answer`), as the official ``normalize_answer``:
lowercase, remove ASCII punctuation (so ``"9.34"`` becomes ``"934"``, ``"3-0"``
becomes ``"30"`` while ``"3 - 0"`` becomes ``"3 0"``, and ``"1,234"`` becomes
``"1234"``), remove the articles *a*, *an*, *the*, collapse whitespace.

**Metrics.**

* FactChecking, NumericalReasoning — exact match (:func:`exact_match`, the
  official ``compute_em`` of one item) of the normalised answer and reference.
* DataAnalysis — ROUGE-L F-measure (``rouge-score``, no stemming) of the
  normalised answer and reference (:func:`grade_data_analysis`, the paper's
  metric); and TableBench's current *Mix* metric
  (:func:`grade_data_analysis_mix`): exact match within 10 % for the
  CorrelationAnalysis, TrendForecasting and StatisticalAnalysis subtypes, exact
  match for ImpactAnalysis, ROUGE-L for the others. (The official code
  aggregates ROUGE-L with a bootstrap resampler whose midpoint is random to a
  few hundredths of a point; the mean used here is its expectation.)
* Visualization — Pass@1 of plotting code (:func:`grade_visualization`): the
  code runs in a bubblewrap sandbox (:mod:`ftdojo_gym.grading.sandbox`) whose
  working directory is a fresh private directory holding the item's table as
  ``table.csv``; afterwards the values of every series drawn on the current
  axes are read by chart type as the official harness reads them (bar and
  waterfall: patch heights; hbar: patch widths; pie: wedge fractions; line:
  y-data of every line; radar: the same without each line's closing point;
  area: the non-zero y-vertices of every collection; scatter: the y-offsets
  of every collection). All series are flattened, rounded to two decimals and
  compared as sorted lists with the reference's (for a pie: the reference
  values as fractions of their sum) — equal lists pass.

**Where this differs from the official harness**, deliberately:

* Plotting code is taken from the last ```` ```python ```` block as in the
  official parser, but also from a bare ```` ``` ```` block or, without a
  block, from the text after the last ``Final Answer:`` (the format this
  package's offline data asks for). Official-format answers are graded the same.
* The official harness executes each chart's code twice in one process
  without closing the figure in between (once to check it runs, once with the
  check appended), so code that draws on the current axes without opening a
  new figure has its bars counted twice and fails; here the code runs once, in
  a fresh process, so such correct code passes.
* Code runs in a sandbox without network, files or the env's memory (see
  :mod:`ftdojo_gym.grading.sandbox`); where no sandbox can run, every
  Visualization output scores 0 and an error is logged: model-written code
  never runs unconfined.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import string
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from ftdojo_gym.grading.sandbox import Sandbox, SandboxUnavailableError, sandbox_unavailable

#: Every chart type the official parser reads (``parse_chart_code_then_exec``).
CHART_TYPES: tuple[str, ...] = ("line", "bar", "hbar", "pie", "area", "radar", "scatter", "waterfall")
#: DataAnalysis subtypes scored by exact match within 10 % in the Mix metric.
MIX_TOLERANCE_SUBTYPES: frozenset[str] = frozenset(
    {"CorrelationAnalysis", "TrendForecasting", "StatisticalAnalysis"})
#: DataAnalysis subtypes scored by exact match in the Mix metric (the rest: ROUGE-L).
MIX_EXACT_SUBTYPES: frozenset[str] = frozenset({"ImpactAnalysis"})
#: Relative error the Mix metric's tolerant subtypes allow (the official ``EM_with_error_10``).
MIX_RTOL = 0.10
#: Outputs are cut to their first this many characters before scoring: a model
#: output is bounded by its token limit, so anything longer is garbage, and the
#: cap bounds the cost of ROUGE's quadratic LCS and of compiling code.
MAX_SCORED_CHARS = 20_000

# The official marker: case-sensitive, one space, the rest of the line.
_FINAL_ANSWER = re.compile(r"Final Answer: (.+)")
_ANY_FINAL_ANSWER = re.compile(r"final\s*answer\s*:", re.IGNORECASE)
_OFFICIAL_CODE = re.compile(r"```python\n(.*?)```", re.DOTALL)
_FENCED_CODE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.IGNORECASE | re.DOTALL)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?%?$")


# ------------------------------------------------------------------ parsing


def extract_final_answer(text: str, *, hedge_rule: bool = False) -> str | None:
    """The answer of ``text`` as the official parser reads it, or ``None``.

    That is the rest of the line after the first ``Final Answer: `` (exactly
    that spelling and one space; the answer must be on the same line), as
    written. ``None`` when there is no such line. With ``hedge_rule``, also
    ``None`` when ``text`` has several ``Final Answer:`` lines (any spelling)
    whose answers differ after :func:`normalize_answer`: listing several
    options is not an answer.
    """
    text = text[:MAX_SCORED_CHARS]
    match = _FINAL_ANSWER.search(text)
    if match is None:
        return None
    if hedge_rule:
        marks = list(_ANY_FINAL_ANSWER.finditer(text))
        ends = [m.start() for m in marks[1:]] + [len(text)]
        answers = {normalize_answer(text[m.end():end].strip().split("\n", 1)[0])
                   for m, end in zip(marks, ends, strict=True)}
        if len(answers) > 1:
            return None
    return match.group(1)


def normalize_answer(text: str) -> str:
    """The official normalisation: lowercase, no ASCII punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


# --------------------------------------------------------------- text metrics


def _decimal(value: str) -> Decimal:
    """A numeric answer part as a number; a percentage as its fraction, to 4 places."""
    if value.endswith("%"):
        return (Decimal(value.strip("%")) / 100).quantize(Decimal("1.0000"), rounding=ROUND_HALF_UP)
    return Decimal(value)


def _places(value: str) -> int:
    return len(value.split(".")[-1]) if "." in value else 0


def _match_parts(prediction: str, reference: str, rtol: float | None) -> float:
    """The official per-item EM on normalised strings: comma-separated parts,
    position by position, each worth ``1 / parts``. Numeric reference parts
    compare as numbers (rounded to the fewest decimals among the reference's
    numbers; or, with ``rtol``, within that relative error); other parts as text.

    (After :func:`normalize_answer` no comma, point or percent sign is left, so
    in practice the whole answer is one part, and digit strings compare as
    integers: leading zeros do not count, a dropped decimal point does not
    either: "2.5" and "25" both become 25.)
    """
    refs = [part.strip() for part in reference.split(",")]
    preds = [part.strip() for part in prediction.split(",")]
    plain = [r for r in refs if _NUMBER.match(r) and not r.endswith("%")]
    quantum = Decimal(1).scaleb(-min((_places(r) for r in plain), default=0))
    score = 0.0
    for ref, pred in zip(refs, preds, strict=False):
        try:
            if not _NUMBER.match(ref):
                hit = ref == pred
            elif rtol is not None:
                r, p = _decimal(ref), _decimal(pred)
                hit = p == r if r == 0 else abs(r - p) / abs(r) <= rtol
            elif ref.endswith("%"):
                hit = _decimal(ref) == _decimal(pred)
            else:
                # Compared as text, as the official code does ("-0" is not "0").
                hit = (str(_decimal(ref).quantize(quantum, rounding=ROUND_HALF_UP))
                       == str(_decimal(pred).quantize(quantum, rounding=ROUND_HALF_UP)))
        except (InvalidOperation, ValueError, ArithmeticError):
            hit = False  # a prediction that is no number never matches a number
        score += hit / len(refs)
    return score


def exact_match(prediction: str, reference: str, *, rtol: float | None = None) -> float:
    """The official exact match of one answer (``compute_em``; with ``rtol``,
    ``compute_em_with_tolerance``) after :func:`normalize_answer` of both."""
    return _match_parts(normalize_answer(prediction), normalize_answer(reference), rtol)


def grade_fact_checking(output: str, answer: str, *, hedge_rule: bool = False) -> float:
    """Official exact match of the parsed answer (0.0 when it does not parse)."""
    predicted = extract_final_answer(output, hedge_rule=hedge_rule)
    return 0.0 if predicted is None else exact_match(predicted, answer)


#: NumericalReasoning is scored like FactChecking: official exact match.
grade_numerical_reasoning = grade_fact_checking


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure of the normalised strings (the official per-item ROUGE-L)."""
    score = _rouge_scorer().score(normalize_answer(reference), normalize_answer(prediction))["rougeL"].fmeasure
    return float(min(1.0, max(0.0, score)))


def grade_data_analysis(output: str, answer: str, *, hedge_rule: bool = False) -> float:
    """ROUGE-L of the parsed answer against ``answer`` (0.0 when it does not parse)."""
    predicted = extract_final_answer(output, hedge_rule=hedge_rule)
    return 0.0 if predicted is None else rouge_l(predicted, answer)


def grade_data_analysis_mix(output: str, answer: str, subtype: str | None, *, hedge_rule: bool = False) -> float:
    """TableBench's Mix metric for one DataAnalysis item of ``subtype`` (see the module docstring)."""
    predicted = extract_final_answer(output, hedge_rule=hedge_rule)
    if predicted is None:
        return 0.0
    if subtype in MIX_TOLERANCE_SUBTYPES:
        return exact_match(predicted, answer, rtol=MIX_RTOL)
    if subtype in MIX_EXACT_SUBTYPES:
        return exact_match(predicted, answer)
    return rouge_l(predicted, answer)


# ------------------------------------------------------------- visualization


def extract_plot_code(output: str) -> str | None:
    """The plotting code of an output, or ``None`` if there is none.

    The last ```` ```python ```` block wins (the official rule), else the last
    bare or ``py`` fence, else the whole text after the last ``Final Answer:``
    (how this package's offline items give code).
    """
    output = output[-MAX_SCORED_CHARS:]
    for pattern in (_OFFICIAL_CODE, _FENCED_CODE):
        blocks = pattern.findall(output)
        if blocks:
            return blocks[-1]
    last = max(_ANY_FINAL_ANSWER.finditer(output), key=lambda m: m.start(), default=None)
    rest = output[last.end():].strip() if last is not None else ""
    return rest or None


Series = float | Sequence[float]


@dataclass(frozen=True)
class ChartReference:
    """What a Visualization answer must plot.

    ``chart_type`` is one of :data:`CHART_TYPES`; ``y_values`` are the
    reference values, either one flat sequence or one sequence per series
    (TableBench's ``y_references = [[...], [...]]``): they are flattened, as the
    official check does. ``table_csv`` is the item's ``table.csv``.
    """

    chart_type: str
    y_values: tuple[Series, ...]
    table_csv: str

    def __post_init__(self) -> None:
        if self.chart_type not in CHART_TYPES:
            raise ValueError(f"chart type {self.chart_type!r} is not one TableBench grades; "
                             f"known: {', '.join(CHART_TYPES)}")


def flatten_series(values: Sequence[Series]) -> list[float]:
    """``[[1, 2], [3]]`` or ``[1, 2, 3]`` as ``[1.0, 2.0, 3.0]`` (one level, as the official code)."""
    flat: list[float] = []
    for v in values:
        if isinstance(v, (list, tuple)):
            flat += [float(x) for x in v]
        else:
            flat.append(float(v))
    return flat


def chart_matches(chart_type: str, predicted: Sequence[float], reference: Sequence[Series]) -> bool:
    """The official chart check: flattened, rounded to 2 decimals, equal as sorted lists.

    For a pie the reference values become fractions of their sum first (and
    the plotted values are wedge fractions). NaN equals NaN only.
    """
    ref = flatten_series(reference)
    pred = [float(v) for v in predicted]
    if chart_type == "pie":
        total = sum(ref)
        if total == 0:
            return False
        ref = [round(v / total, 2) for v in ref]
    ref = sorted(round(v, 2) for v in ref)
    pred = sorted(round(v, 2) for v in pred)
    if len(pred) != len(ref):
        return False
    return all((math.isnan(r) and math.isnan(p)) or r == p for p, r in zip(pred, ref, strict=True))


# Inside the sandbox runner (see ftdojo_gym.grading.sandbox): the plotting stack
# is imported once, then each item's code runs in a fresh forked child.
_SETUP_SOURCE = r"""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas
from matplotlib.axes._base import _AxesBase
from matplotlib.collections import Collection
from matplotlib.figure import Figure, FigureBase
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
"""

# collect() reads the current axes (what plt.gca() returns, as the official
# harness reads it) through functions captured in a closure before the item's
# code runs: code that replaces plt.get_fignums, Rectangle.get_height or the
# global collect does not change what is reported. (Code can still build or
# edit its own figure: those values count as plotted, as they are.)
_COLLECT_SOURCE = r"""
def _make_collect():
    get_fignums, gcf, fig_gca = plt.get_fignums, plt.gcf, FigureBase.gca
    fig_axes = Figure.__dict__["axes"].fget
    patches_of, collections_of = _AxesBase.patches.fget, _AxesBase.collections.fget
    lines_of, get_ydata = _AxesBase.lines.fget, Line2D.get_ydata
    get_height, get_width = Rectangle.get_height, Rectangle.get_width
    get_paths, get_offsets = Collection.get_paths, Collection.get_offsets
    getattr_, float_, list_, len_, asarray = getattr, float, list, len, np.asarray

    def series_of(kind, ax):
        if kind in ("bar", "waterfall"):
            return [[get_height(p) for p in list_(patches_of(ax))]]
        if kind == "hbar":
            return [[get_width(p) for p in list_(patches_of(ax))]]
        if kind == "pie":
            return [[(getattr_(p, "theta2") - getattr_(p, "theta1")) / 360.0 for p in list_(patches_of(ax))]]
        if kind in ("line", "radar"):
            ys = [asarray(get_ydata(line)).ravel().tolist() for line in list_(lines_of(ax))]
            return [y[:-1] for y in ys] if kind == "radar" else ys
        if kind == "area":
            return [[y for y in asarray(get_paths(c)[0].vertices)[:, 1].tolist() if y != 0]
                    for c in list_(collections_of(ax))]
        if kind == "scatter":
            return [asarray(get_offsets(c))[:, 1].tolist() for c in list_(collections_of(ax))]
        raise ValueError("unknown chart type")

    def collect(params):
        if not list_(get_fignums()):
            return []
        fig = gcf()
        if not list_(fig_axes(fig)):
            return []
        values = []
        for series in series_of(params["chart_type"], fig_gca(fig)):
            values += [float_(v) for v in series]
            if len_(values) > 100000:
                raise ValueError("too many plotted values")
        return values

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
    the values plotted on the current axes pass :func:`chart_matches`, else
    0.0; all 0.0, with an error logged, where no sandbox can run.
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
            return float(values is not None and chart_matches(reference.chart_type, values, reference.y_values))
        except (TypeError, ValueError, OverflowError):
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

"""TableBench graders, as in the TableBench paper, for the four subsets.

Every grader reads the answer after the *last* ``Final Answer:`` of a model
output (case-insensitive) and returns a score in ``[0, 1]``; an output without
that marker scores 0, because answering in the required format is part of the
task. No grader raises on any output string.

* FactChecking — exact match after normalising case and whitespace.
* NumericalReasoning — the first number of the answer is within 10 % relative
  error of the reference number (exact when the reference is 0).
* DataAnalysis — ROUGE-L F-measure (``rouge-score``) against the reference.
* Visualization — Pass@1 of plotting code: the code runs in a separate Python
  process whose working directory is a fresh temporary directory holding the
  item's table as ``table.csv``; afterwards the plotted y-values (bar heights,
  line y-data, pie wedge fractions) must match the reference values within
  1e-2 relative tolerance.

The plotting sandbox is a process isolation, not a security boundary: the code
cannot see the caller's working directory, environment secrets or memory, it
is killed after ``timeout`` seconds, its address space is capped at 1 GiB above
a warmed-up interpreter and it cannot write files over 16 MiB; but it runs as
the same OS user, so absolute paths remain reachable. POSIX only (``os.fork``).
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from ftdojo_gym.grading.child_source import PRELUDE

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


# The sandbox runner: imported once (pandas and matplotlib take ~1 s to import),
# then forks one child per request, so each run starts warm. Protocol: one JSON
# request per line on stdin, {"code", "chart_type", "workdir", "timeout"}; one
# JSON reply per line on the original stdout, {"ok", "values"} or {"ok": false,
# "error"}. Stray prints of the code or of imports go to /dev/null, never into
# the reply channel.
_RUNNER_SOURCE = PRELUDE + r"""
import select, signal, time
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas
from matplotlib.container import BarContainer
from matplotlib.patches import Wedge

MAX_VALUES = 100000

def chart_values(kind):
    values = []
    for num in plt.get_fignums():
        for ax in plt.figure(num).axes:
            if kind == "bar":
                for container in ax.containers:
                    if isinstance(container, BarContainer):
                        horizontal = getattr(container, "orientation", None) == "horizontal"
                        values += [p.get_width() if horizontal else p.get_height()
                                   for p in container.patches]
            elif kind == "line":
                for line in ax.get_lines():
                    values += np.asarray(line.get_ydata(), dtype=float).ravel().tolist()
            elif kind == "pie":
                values += [(p.theta2 - p.theta1) / 360.0
                           for p in ax.patches if isinstance(p, Wedge)]
            if len(values) > MAX_VALUES:
                raise ValueError("too many plotted values")
    return [float(v) for v in values]

def limit_resources(timeout):
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    cpu = int(timeout) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    cap_memory()

def child(request, out):
    try:
        os.setsid()
        os.dup2(devnull, 0)
        os.chdir(request["workdir"])
        limit_resources(request["timeout"])
        plt.close("all")
        code = compile(request["code"], "<answer>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        result = {"ok": True, "values": chart_values(request["chart_type"])}
    except BaseException as exc:
        result = {"ok": False, "error": type(exc).__name__}
    try:
        os.write(out, json.dumps(result).encode())
    finally:
        os._exit(0)

def run(request):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        reply.close()
        child(request, w)
    os.close(w)
    deadline = time.monotonic() + float(request["timeout"])
    chunks, timed_out = [], False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([r], [], [], remaining)
        if ready:
            data = os.read(r, 1 << 16)
            if not data:
                break
            chunks.append(data)
    os.close(r)
    # The child leads its own session: killing the group also ends any process
    # it spawned. A zombie leader keeps its pid, so the group id cannot be reused.
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os.waitpid(pid, 0)
    if timed_out:
        return {"ok": False, "error": "Timeout"}
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"ok": False, "error": "NoResult"}

for line in sys.stdin:
    try:
        response = run(json.loads(line))
    except Exception as exc:
        response = {"ok": False, "error": type(exc).__name__}
    reply.write(json.dumps(response) + "\n")
    reply.flush()
"""

# Only these variables reach the runner: model-written code must not see the
# env process's secrets (e.g. the agent's API keys).
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH", "MPLCONFIGDIR")
# Allowance on top of the per-run timeout for the runner's start-up imports.
_STARTUP_GRACE_S = 60.0


class PlotSandbox:
    """A warmed-up runner process that executes plotting code, one request at a time.

    ``run`` never raises: any failure (runner crash, timeout, bad reply) is a
    failed run. A dead runner is restarted on the next request. Not
    thread-safe; give each thread its own sandbox.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def _start(self) -> subprocess.Popen[bytes]:
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.update(
            MPLBACKEND="Agg",
            PYTHONDONTWRITEBYTECODE="1",
            # One thread per run: graders run alongside training on few cores.
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
        )
        self._buffer = b""
        return subprocess.Popen(
            [sys.executable, "-I", "-c", _RUNNER_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(),
            env=env,
        )

    def run(self, code: str, chart_type: str, table_csv: str, timeout: float) -> list[Any] | None:
        """Run ``code`` next to ``table.csv``; the plotted values, or ``None`` on any failure.

        The values are the runner's JSON numbers (NaN and infinities included).
        """
        workdir = tempfile.mkdtemp(prefix="ftdojo-plot-")
        try:
            with open(os.path.join(workdir, "table.csv"), "w", encoding="utf-8") as f:
                f.write(table_csv)
            request = {
                "code": code,
                "chart_type": chart_type,
                "workdir": workdir,
                "timeout": timeout,
            }
            reply = self._ask(json.dumps(request).encode() + b"\n", timeout + _STARTUP_GRACE_S)
        except Exception:
            reply = None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if not isinstance(reply, dict) or not reply.get("ok"):
            return None
        values = reply.get("values")
        return values if isinstance(values, list) else None

    def _ask(self, request: bytes, deadline_s: float) -> Any:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(request)
            proc.stdin.flush()
        except OSError:
            self.close()
            return None
        deadline = time.monotonic() + deadline_s
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, remaining))[0] if remaining > 0 else []
            data = os.read(fd, 1 << 16) if ready else b""
            if not data:  # runner hung or died: start afresh next time
                self.close()
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        """Stop the runner (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def grade_visualization(
    outputs: Sequence[str],
    references: Sequence[ChartReference],
    *,
    timeout: float = 10.0,
    workers: int = 2,
) -> list[float]:
    """Pass@1 of each output's plotting code against its reference chart.

    Each code runs in its own forked process (see the module docstring), at
    most ``workers`` at a time, killed after ``timeout`` seconds. Returns 1.0
    where the plotted values of the reference's chart type match, else 0.0.
    """
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs for {len(references)} references")
    codes = [_runnable_code(output) for output in outputs]
    sandboxes: queue.SimpleQueue[PlotSandbox] = queue.SimpleQueue()
    pool = [PlotSandbox() for _ in range(max(1, min(workers, sum(c is not None for c in codes))))]
    for sandbox in pool:
        sandboxes.put(sandbox)

    def grade_one(index: int) -> float:
        code, reference = codes[index], references[index]
        if code is None:
            return 0.0
        sandbox = sandboxes.get()
        try:
            values = sandbox.run(code, reference.chart_type, reference.table_csv, timeout)
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
        with ThreadPoolExecutor(max_workers=len(pool)) as executor:
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

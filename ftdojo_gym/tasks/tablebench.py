"""TableBench (Table QA): offline data repository and graders for the four subsets.

Every item is a small table (3-5 rows, 2-4 columns) rendered as CSV, one
question and an answer in TableBench's format ``Final Answer: <answer>``. The
prompt of an evaluation item is exactly

    {instruction}\\n{input}

where ``instruction`` is :data:`INSTRUCTION` and ``input`` is
``"<table csv>\\nQuestion: <question>\\n" + FORMAT_LINE``; the expected
completion is ``output`` = ``"Final Answer: <answer>"``. The clean source
``tableinstruct`` stores these three fields, so the expert recipe's transform
(:mod:`ftdojo_gym.recipes`: prompt ``"{instruction}\\n{input}"``, completion
``"{output}"``) turns it into training pairs in the evaluation format.
Visualization answers are the code itself after ``Final Answer: `` (it reads
``table.csv`` with pandas and plots with matplotlib).

Sources (all deterministic in the seed; no evaluation table occurs in any of
them):

* ``tableinstruct`` — clean, in-domain, evaluation format.
* ``crowd_tableqa`` — same schema plus ``annotator_agreement``; about 45 % of
  the answers are wrong (fact-checking ones: 65 %, systematically the row below
  the right one), and those rows mostly have agreement below 0.6.
* ``tableqa_mirror`` — a few dozen items repeated many times with changes of
  case and whitespace only.
* ``table_chat`` — correct but chatty ``response`` without ``Final Answer:``;
  its raw ``question``/``table``/``answer`` fields are rescued by the prompt
  ``"{instruction}\\n{table}\\nQuestion: {question}\\n{format_line}"`` (with the
  constants written out) and the completion ``"Final Answer: {answer}"``.
* ``web_text`` — off-domain ``prompt``/``response`` chat (recipes, travel).
* ``long_tables`` — evaluation format over tables of hundreds of rows (2,000+
  tokens); a few short ones are usable after a length filter.
* ``wiki_table_lookup`` — lookups over tables of other topics with
  ``question``/``table``/``answer`` fields in another question style; the same
  rescue template as ``table_chat`` puts them into the evaluation format.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from ftdojo_gym.grading.tablebench_grading import (
    CHART_TYPES,
    ChartReference,
    grade_data_analysis,
    grade_data_analysis_mix,
    grade_fact_checking,
    grade_numerical_reasoning,
    grade_visualization,
)
from ftdojo_gym.tasks.base import EvalItem, HubDataset, SourceSpec, Task
from ftdojo_gym.tasks.offdomain import WEB_CHAT

SUBSETS: tuple[str, ...] = ("FactChecking", "NumericalReasoning", "DataAnalysis", "Visualization")
INSTRUCTION = "You are a table analyst. Answer the question using the table."
FORMAT_LINE = "The answer should follow the format: Final Answer: <answer>."

_METRICS = {
    "FactChecking": "EM",
    "NumericalReasoning": "EM",
    "DataAnalysis": "ROUGE-L",
    "Visualization": "Pass@1",
}
_MAX_NEW_TOKENS = {
    "FactChecking": 16,
    "NumericalReasoning": 16,
    "DataAnalysis": 48,
    "Visualization": 80,
}
_TEXT_GRADERS: dict[str, Callable[..., float]] = {
    "FactChecking": grade_fact_checking,
    "NumericalReasoning": grade_numerical_reasoning,
    "DataAnalysis": grade_data_analysis,
}
#: Items per evaluation set, split by :meth:`~ftdojo_gym.tasks.base.Task.split`.
EVAL_SIZE = 200
#: Real data: tokens allowed beyond the longest gold completion of a subset (in bytes).
REAL_TOKEN_HEADROOM = 32

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------- tables


@dataclass(frozen=True)
class _Topic:
    """A kind of table: label column, candidate value columns, label pool (empty: years)."""

    label: str
    columns: tuple[str, ...]
    names: tuple[str, ...] = ()

    @property
    def ordered(self) -> bool:
        return not self.names


def _topic(label: str, columns: str, names: str = "") -> _Topic:
    return _Topic(label, tuple(columns.split()), tuple(names.split()))


_IN_DOMAIN = (
    _topic(
        "Team",
        "Wins Losses Goals Points",
        "Lions Hawks Bears Wolves Tigers Eagles Sharks Bulls Foxes Rams Owls Jets Kings Storm Comets Rockets",
    ),
    _topic(
        "Player",
        "Goals Games Assists",
        "Silva Moreno Kane Rossi Novak Keller Tanaka Dubois Okafor Larsen Costa Petrov Nilsen Murray Haddad Ito",
    ),
    _topic(
        "Country",
        "Gold Silver Bronze",
        "Kenya Chile Norway Japan Brazil Canada Poland Egypt Peru Spain Italy Ghana Nepal Cuba Fiji Oman",
    ),
    _topic(
        "Party",
        "Votes Seats",
        "Labour Green Liberal Unity Reform Forward Centre Alliance People Heritage",
    ),
    _topic(
        "City",
        "Rainfall Parks Museums",
        "Lyon Porto Oslo Quito Lagos Perth Malmo Turin Leeds Graz Cork Basel",
    ),
    _topic(
        "Company",
        "Revenue Staff Profit",
        "Apex Nimbus Vertex Orion Zenith Atlas Quanta Helix Nova Pioneer",
    ),
    _topic(
        "Film",
        "Budget Gross Awards",
        "Solaris Vertigo Ember Horizon Mirage Aurora Tempest Odyssey Nomad Eclipse",
    ),
    _topic(
        "School",
        "Students Teachers Clubs",
        "Northside Riverside Hillcrest Oakwood Lakeview Westfield Elmwood Brookside",
    ),
    _topic("Year", "Sales Visitors Exports Imports"),
)
# Other topics and column names: helpful practice in reading tables, never an
# evaluation table.
_CROSS_DOMAIN = (
    _topic(
        "Planet",
        "Moons Rings Probes",
        "Mercury Venus Earth Mars Jupiter Saturn Uranus Neptune Pluto Ceres Eris",
    ),
    _topic(
        "Element",
        "Protons Isotopes",
        "Carbon Oxygen Iron Gold Neon Zinc Copper Silver Tin Lead Helium",
    ),
    _topic(
        "River",
        "Length Bridges Dams",
        "Nile Amazon Danube Rhine Volga Thames Mekong Indus Loire Ebro",
    ),
    _topic(
        "Mountain",
        "Height Routes",
        "Everest Denali Elbrus Olympus Fuji Blanc Rainier Etna Aconcagua",
    ),
    _topic(
        "Book",
        "Pages Chapters Editions",
        "Emma Dune Ulysses Beloved Rebecca Walden Persuasion Middlemarch",
    ),
    _topic("Animal", "Weight Lifespan Speed", "Otter Lynx Heron Badger Bison Falcon Gecko Walrus"),
)
_SYLLABLES = tuple("ka mo ri ten lo va sun del pa ro mi zan tor be li nor ga qu xel fi".split())


@dataclass(frozen=True)
class _Table:
    label: str
    labels: tuple[str, ...]
    columns: dict[str, tuple[int, ...]]

    def csv(self) -> str:
        """The table as CSV text without a trailing newline (what prompts show)."""
        header = ",".join((self.label, *self.columns))
        rows = (
            ",".join((name, *(str(values[i]) for values in self.columns.values())))
            for i, name in enumerate(self.labels)
        )
        return "\n".join((header, *rows))


def _random_table(rng: random.Random, topic: _Topic, n_rows: int, n_cols: int) -> _Table:
    """A table of ``topic``; values are distinct per column so max/min are unique."""
    if topic.ordered:
        start = rng.randint(1900, 2024 - n_rows) if n_rows < 100 else rng.randint(1500, 1600)
        labels = tuple(str(start + i) for i in range(n_rows))
    elif n_rows <= len(topic.names):
        labels = tuple(rng.sample(topic.names, n_rows))
    else:
        labels = _invented_names(rng, n_rows)
    high = 100 if n_rows < 60 else 1000
    columns = {
        c: tuple(rng.sample(range(1, high), n_rows)) for c in rng.sample(topic.columns, n_cols)
    }
    return _Table(topic.label, labels, columns)


def _invented_names(rng: random.Random, n: int) -> tuple[str, ...]:
    names: dict[str, None] = {}
    while len(names) < n:
        names["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()] = None
    return tuple(names)


def _with_trend(rng: random.Random, table: _Table, column: str, trend: str) -> _Table:
    """``table`` with ``column`` reordered to increase, decrease or fluctuate."""
    values = sorted(table.columns[column])
    if trend == "decreases":
        values.reverse()
    elif trend == "fluctuates":
        while values == sorted(values) or values == sorted(values, reverse=True):
            rng.shuffle(values)
    return _Table(table.label, table.labels, {**table.columns, column: tuple(values)})


# ------------------------------------------------------------------ questions


@dataclass(frozen=True)
class _QA:
    """A question on a table with its answer and a plausible wrong answer (for noisy labels)."""

    subset: str
    table: _Table
    question: str
    answer: str
    wrong: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input(self) -> str:
        return f"{self.table.csv()}\nQuestion: {self.question}\n{FORMAT_LINE}"

    @property
    def prompt(self) -> str:
        return f"{INSTRUCTION}\n{self.input}"


def _pick_two(
    rng: random.Random, table: _Table, column: str, first_larger: bool
) -> tuple[int, int]:
    """Row indices (a, b) with ``values[a] > values[b]`` iff ``first_larger``."""
    a, b = rng.sample(range(len(table.labels)), 2)
    values = table.columns[column]
    return (a, b) if (values[a] > values[b]) == first_larger else (b, a)


def _fact_checking(rng: random.Random, table: _Table) -> _QA:
    """A match-based fact: which row holds a given cell value (TableBench's
    FactChecking "MatchBased" items answer with the entity, not Yes/No).

    A direct lookup, no arithmetic: find the value in its column, answer the
    row's label. Values are distinct within a column, so the answer is unique.
    A small model learns this within the default budget (Yes/No claims and
    comparisons it did not: the subset sat at chance). The plausible wrong
    answer is the label of the next row (a line misread).
    """
    column = rng.choice(list(table.columns))
    values = table.columns[column]
    a = rng.randrange(len(values))
    question = f"Which {table.label} has a {column} of {values[a]}?"
    wrong = table.labels[(a + 1) % len(values)]
    return _QA("FactChecking", table, question, table.labels[a], wrong, {"kind": "match"})


def _numerical_reasoning(rng: random.Random, table: _Table) -> _QA:
    column = rng.choice(list(table.columns))
    values = table.columns[column]
    kind = rng.choices(("lookup", "difference", "sum", "max"), weights=(4, 2, 2, 2))[0]
    if kind == "lookup":
        a = rng.randrange(len(values))
        question, answer = f"What is the {column} of {table.labels[a]}?", values[a]
    elif kind == "difference":
        a, b = _pick_two(rng, table, column, True)
        question = (
            f"What is the difference in {column} between {table.labels[a]} and {table.labels[b]}?"
        )
        answer = values[a] - values[b]
    elif kind == "sum":
        question, answer = f"What is the total {column} of all rows?", sum(values)
    else:
        question, answer = f"What is the highest {column} in the table?", max(values)
    # A wrong label is a cell misread from elsewhere in the table (as a careless
    # annotator would), always more than 10 % off so that it really is wrong.
    cells = [
        v for vs in table.columns.values() for v in vs if abs(v - answer) > 0.1 * abs(answer) + 1
    ]
    wrong = rng.choice(cells) if cells else 2 * answer + 3
    return _QA("NumericalReasoning", table, question, str(answer), str(wrong), {"kind": kind})


def _data_analysis(rng: random.Random, table: _Table, trend: str | None = None) -> _QA:
    """A descriptive question; ``trend`` (for year tables) asks how a column develops."""
    column = rng.choice(list(table.columns))
    if trend is not None:
        table = _with_trend(rng, table, column, trend)
    values, labels = table.columns[column], table.labels
    if trend is not None:
        question = f"Describe the trend of {column} over the years."
        first, last = f"{values[0]} in {labels[0]}", f"{values[-1]} in {labels[-1]}"
        sentences = {
            "increases": f"{column} increases from {first} to {last}.",
            "decreases": f"{column} decreases from {first} to {last}.",
            "fluctuates": f"{column} fluctuates between {min(values)} and {max(values)}.",
        }
        answer = sentences[trend]
        wrong = sentences[rng.choice([t for t in sentences if t != trend])]
        return _QA("DataAnalysis", table, question, answer, wrong, {"kind": "trend"})
    if rng.random() < 0.5:
        top, low = values.index(max(values)), values.index(min(values))
        question = f"Which {table.label} has the highest {column} and which has the lowest?"
        answer = f"{labels[top]} has the highest {column} ({values[top]}) and {labels[low]} has the lowest ({values[low]})."
        x = rng.choice([i for i in range(len(labels)) if i != top])
        wrong = f"{labels[x]} has the highest {column} ({values[x]}) and {labels[top]} has the lowest ({values[top]})."
        return _QA("DataAnalysis", table, question, answer, wrong, {"kind": "extremes"})
    a, b = rng.sample(range(len(labels)), 2)
    question = f"Compare the {column} of {labels[a]} and {labels[b]}."
    more, less = ("higher", "lower") if values[a] > values[b] else ("lower", "higher")
    tail = f"{column} than {labels[b]} ({values[a]} vs {values[b]})."
    return _QA(
        "DataAnalysis",
        table,
        question,
        f"{labels[a]} has a {more} {tail}",
        f"{labels[a]} has a {less} {tail}",
        {"kind": "compare"},
    )


_CHART_CALLS = {
    "bar": "plt.bar(df['{label}'], df['{column}'])",
    "line": "plt.plot(df['{label}'], df['{column}'])",
    "pie": "plt.pie(df['{column}'], labels=df['{label}'])",
}


def _plot_code(chart: str, label: str, column: str) -> str:
    call = _CHART_CALLS[chart].format(label=label, column=column)
    return (
        "import pandas as pd\nimport matplotlib.pyplot as plt\n"
        f"df = pd.read_csv('table.csv')\n{call}\nplt.show()"
    )


def _visualization(rng: random.Random, table: _Table) -> _QA:
    column = rng.choice(list(table.columns))
    chart = rng.choices(("bar", "line", "pie"), weights=(45, 30, 25))[0]
    question = f"Draw a {chart} chart of {column} for each {table.label} using table.csv."
    answer = _plot_code(chart, table.label, column)
    others = [c for c in table.columns if c != column]
    if others:  # the classic mistake: plotting the wrong column
        wrong = _plot_code(chart, table.label, rng.choice(others))
    else:
        wrong = _plot_code(rng.choice([c for c in _CHART_CALLS if c != chart]), table.label, column)
    meta = {
        "kind": chart,
        "chart_type": chart,
        "y_values": [float(v) for v in table.columns[column]],
    }
    return _QA("Visualization", table, question, answer, wrong, meta)


# ----------------------------------------------------------------- generation


class _Reserved:
    """Evaluation tables that no source may contain, even as the start of a longer table."""

    def __init__(self) -> None:
        self._by_header: dict[str, list[str]] = {}

    def add(self, csv: str) -> None:
        self._by_header.setdefault(csv.split("\n", 1)[0], []).append(csv)

    def __contains__(self, csv: str) -> bool:
        # A table's header is its first line, so another table can only contain
        # an evaluation table as a prefix with the same header.
        return any(csv.startswith(r) for r in self._by_header.get(csv.split("\n", 1)[0], ()))


def _generate(
    rng: random.Random,
    subset: str,
    *,
    rows: tuple[int, int] = (3, 5),
    cols: tuple[int, int] = (1, 3),
    reserved: _Reserved | None = None,
) -> _QA:
    """One in-domain question of ``subset`` on a fresh table that is not ``reserved``."""
    ordered = [t for t in _IN_DOMAIN if t.ordered]
    while True:
        trend = None
        if subset == "DataAnalysis" and rng.random() < 1 / 3:
            # Trends need an ordered label column, i.e. a table over years.
            trend = rng.choice(("increases", "decreases", "fluctuates"))
            topic = rng.choice(ordered)
        else:
            topic = rng.choice(_IN_DOMAIN)
        n_rows = rng.randint(*rows)
        # Small tables stay within ~10 value cells, which keeps prompts under
        # ~110 tokens: training a small model on a CPU is paid per token.
        widest = len(topic.columns) if n_rows > 5 else max(1, 10 // n_rows)
        n_cols = rng.randint(cols[0], max(cols[0], min(cols[1], widest, len(topic.columns))))
        table = _random_table(rng, topic, n_rows, n_cols)
        if subset == "FactChecking":
            qa = _fact_checking(rng, table)
        elif subset == "NumericalReasoning":
            qa = _numerical_reasoning(rng, table)
        elif subset == "DataAnalysis":
            qa = _data_analysis(rng, table, trend)
        else:
            qa = _visualization(rng, table)
        if reserved is None or qa.table.csv() not in reserved:
            return qa


def _row(qa: _QA, answer: str | None = None) -> dict[str, str]:
    """A record in the clean (TableInstruct-like) schema."""
    return {
        "instruction": INSTRUCTION,
        "input": qa.input,
        "output": f"Final Answer: {qa.answer if answer is None else answer}",
        "subset": qa.subset,
    }


_CHAT_STYLES = (
    "Sure! Looking at the table, the answer is {answer}. Let me know if you need anything else!",
    "Great question. Based on the data, I would say {answer}.",
    "Let me check the table... it looks like {answer}!",
    "Happy to help! From what I can see, {answer}. Hope that helps.",
)
_CHAT_CODE_STYLES = (
    "Sure! Here is some code that should do it:\n{answer}\nLet me know if it works for you.",
    "Happy to help. You can try this:\n{answer}\nHope that helps!",
)
_WIKI_STYLES = {
    "lookup": "Look up the {column} of {name}.",
    "argmax": "Which {label} has the largest {column}?",
    "compare": "Is the {column} of {name} larger than the {column} of {other}? Answer yes or no.",
}
class TableBenchTask(Task):
    """TableBench: question answering over small tables, in four subsets.

    **Description.** The model reads a table (CSV) and a question and answers
    in TableBench's format: match-based facts (which row holds a given
    value: the row's label, as TableBench's MatchBased fact checking answers
    with the entity), numbers (lookups, differences, sums, maxima),
    one-sentence analyses, or Python code that plots a column of
    ``table.csv``. The ``-FactChecking``, ``-NumericalReasoning``,
    ``-DataAnalysis`` and ``-Visualization`` ids are one subset each;
    ``FTDojo/TableBench-v0`` is all four. Chance on FactChecking (any row
    label of the table) is about 26 %.

    **Sources.** ``tableinstruct`` (clean, evaluation format),
    ``crowd_tableqa`` (about 45 % wrong labels, an agreement score that
    separates most of them; 65 % of the fact-checking answers systematically
    name the row below the right one), ``tableqa_mirror`` (a few dozen items repeated with
    case/whitespace changes), ``table_chat`` (right answers in a chatty
    format; rescuable from its raw fields), ``web_text`` (off-domain chat),
    ``long_tables`` (2,000+ token tables), ``wiki_table_lookup`` (helpful
    lookups over other topics, rescuable into the evaluation format).

    **Prompt and answer format.** ``"{instruction}\n{table csv}\nQuestion:
    {question}\nThe answer should follow the format: Final Answer:
    <answer>."``; the answer is ``Final Answer: <answer>`` (for
    Visualization, the code after ``Final Answer:``).

    **Metric.** The official TableBench evaluation
    (``github.com/TableBench/TableBench``), re-implemented in
    :mod:`ftdojo_gym.grading.tablebench_grading` and pinned by a parity test on
    the official example predictions. The answer is the rest of the line after
    the *first* ``Final Answer: `` (case-sensitive, one space; a lowercase
    marker, no space or the answer on the next line do not parse), normalised
    as the official code does (lowercase; punctuation, articles and extra
    spaces removed). Per item in ``[0, 1]``: exact match (FactChecking,
    NumericalReasoning), ROUGE-L F (DataAnalysis, the paper's metric), Pass@1
    of the executed plotting code (Visualization: every series on the current
    axes, rounded to 2 decimals, equal to the reference's as sorted lists;
    bar, hbar, line, pie, area, radar, scatter and waterfall charts); the task
    score is the mean. TableBench's current DataAnalysis *Mix* metric (exact
    match within 10 % for correlation, trend and statistics items, exact match
    for impact items, ROUGE-L otherwise) is reported next to the subsets as
    ``DataAnalysis/Mix``; it is not part of the score.

    **Where it deliberately differs from the official metric.** Plotting code
    is also read from a bare code fence or from the text after
    ``Final Answer:`` (the official parser needs a ```` ```python ```` block),
    and it runs once, in a fresh sandboxed process: the official harness runs
    it twice on the same figure, which fails correct code that draws on the
    current axes (one of the three official example charts). ROUGE-L is the
    mean of the per-item scores (the official bootstrap midpoint varies by a
    few hundredths of a point between runs). ``TableBenchTask(...,
    hedge_rule=True)`` restores this project's older, stricter rule: several
    ``Final Answer:`` lines that disagree score 0 (the official parser takes
    the first); it is off by default.

    **Splits.** ``EVAL_SIZE`` = 200 items, subsets interleaved; validation is
    the first 100, the hidden test the last 100 (the stratified
    :meth:`~ftdojo_gym.tasks.base.Task.split`). No evaluation table occurs
    in any source.

    **Real data.** ``data="hub"`` or a folder with ``tablebench.jsonl`` (the
    direct-prompting rows are the evaluation items; the split keeps every
    subset in proportion) and, optionally, ``tableinstruct.jsonl`` (the
    training source; without it the task evaluates only). Table cells keep
    their exact text. Chart rows of each of the eight types the official
    parser knows are graded (the gold completion is code that draws the
    reference series); a row is left out, with its reason in a logged warning,
    when its chart type is one the official parser does not know, its
    reference is not a list of numbers, or no chart can pass the official
    check (an area reference holding a 0, which the official reader drops; a
    pie with a negative value or a total of 0). Generation limits come from the data:
    per subset, the longest gold completion in UTF-8 bytes plus 32.

    **Default budget.** 200,000 training tokens (about 4 full LoRA runs of
    40 steps x 8 on this data).
    """

    domain = "Table QA"
    version = "3"
    source_seed = "tablebench/{seed}/{source}"

    #: ``data="hub"``: TableBench (evaluation; direct-prompting rows) and TableInstruct (training).
    hub_datasets = {
        "tablebench": HubDataset("Multilingual-Multimodal-NLP/TableBench", split="test"),
        "tableinstruct": HubDataset("Multilingual-Multimodal-NLP/TableInstruct", split="train", limit=20_000),
    }

    #: Score 0 where an output has several disagreeing ``Final Answer:`` lines (stricter
    #: than the official parser, which takes the first; off by default).
    hedge_rule: bool = False

    def __init__(self, subsets: Sequence[str] = SUBSETS, *, hedge_rule: bool = False) -> None:
        unknown = set(subsets) - set(SUBSETS)
        if not subsets or unknown:
            raise ValueError(
                f"subsets must be a non-empty subset of {SUBSETS}, got {list(subsets)}"
            )
        self.subsets: tuple[str, ...] = tuple(s for s in SUBSETS if s in subsets)
        self.executes_model_output = "Visualization" in self.subsets  # plotting code runs in the sandbox
        self.name = (
            "TableBench" if self.subsets == SUBSETS else "TableBench-" + "-".join(self.subsets)
        )
        metrics = " / ".join(_METRICS[s] for s in self.subsets)
        self.metric = f"mean of {metrics}" if len(self.subsets) > 1 else metrics
        self.max_new_tokens = max(_MAX_NEW_TOKENS[s] for s in self.subsets)
        self.source_specs = SOURCES
        self.hedge_rule = hedge_rule
        self._eval_cache: dict[int, list[_QA]] = {}

    # -- evaluation

    def _eval_qas(self, seed: int) -> list[_QA]:
        if seed not in self._eval_cache:
            rng = random.Random(f"tablebench/{seed}/eval/{'+'.join(self.subsets)}")
            per_subset = EVAL_SIZE // len(self.subsets)
            seen = _Reserved()
            qas: list[_QA] = []
            for i in range(per_subset * len(self.subsets)):
                subset = self.subsets[i % len(self.subsets)]
                qa = _generate(rng, subset, reserved=seen)
                seen.add(qa.table.csv())
                qas.append(qa)
            self._eval_cache[seed] = qas
        return self._eval_cache[seed]

    def eval_items(self, seed: int) -> list[EvalItem]:
        """``EVAL_SIZE`` items (rounded down to a multiple of the subset count), interleaved by subset."""
        return [
            EvalItem(
                id=f"{self.name}/{seed}/{i:03d}",
                subset=qa.subset,
                prompt=qa.prompt,
                reference=f"Final Answer: {qa.answer}",
                meta={**qa.meta, "answer": qa.answer, "table_csv": qa.table.csv() + "\n"},
            )
            for i, qa in enumerate(self._eval_qas(seed))
        ]

    def max_new_tokens_for(self, item: EvalItem) -> int:
        """The subset's limit (:data:`_MAX_NEW_TOKENS`), or the one real data sets for
        its subset (``meta["max_new_tokens"]``, see :meth:`map_hub_records`)."""
        return int(item.meta.get("max_new_tokens") or _MAX_NEW_TOKENS.get(item.subset, self.max_new_tokens))

    def grade(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        """Per-item scores in ``[0, 1]`` (the official metric of each subset; see
        :mod:`ftdojo_gym.grading.tablebench_grading`); never raises on any output string."""
        if len(items) != len(outputs):
            raise ValueError(f"{len(outputs)} outputs for {len(items)} items")
        scores = [0.0] * len(items)
        charts: list[int] = []
        for i, (item, output) in enumerate(zip(items, outputs, strict=True)):
            if item.subset == "Visualization":
                charts.append(i)
            else:
                scores[i] = _TEXT_GRADERS[item.subset](output, item.meta["answer"], hedge_rule=self.hedge_rule)
        if charts:
            references = [
                ChartReference(
                    items[i].meta["chart_type"],
                    tuple(_as_series(items[i].meta["y_values"])),
                    items[i].meta["table_csv"],
                )
                for i in charts
            ]
            for i, score in zip(
                charts, grade_visualization([outputs[i] for i in charts], references), strict=True
            ):
                scores[i] = score
        return scores

    def chance_outputs(self, item: EvalItem) -> list[str]:
        """What a guesser who reads the table but not the question could answer:
        any row label (FactChecking), any cell (NumericalReasoning); nothing for
        the free-text and code subsets."""
        header, *rows = list(csv.reader(io.StringIO(item.meta["table_csv"])))
        if item.subset == "FactChecking":
            guesses = [row[0] for row in rows if row]
        elif item.subset == "NumericalReasoning":
            guesses = [cell for row in rows for cell in row[1:]]
        else:
            guesses = [""]
        return [f"Final Answer: {g}" for g in dict.fromkeys(guesses)] or ["Final Answer: "]

    def extra_scores(self, items: Sequence[EvalItem], scores: Sequence[float], outputs: Sequence[str]
                     ) -> dict[str, float]:
        """``{"DataAnalysis/Mix": ...}``: TableBench's current Mix metric over the
        DataAnalysis items (by ``meta["qsubtype"]``; offline items have no subtype
        and score ROUGE-L in it), when the split has any."""
        mix = [
            grade_data_analysis_mix(output, item.meta["answer"], item.meta.get("qsubtype"),
                                    hedge_rule=self.hedge_rule)
            for item, output in zip(items, outputs, strict=False) if item.subset == "DataAnalysis"
        ]
        return {"DataAnalysis/Mix": sum(mix) / len(mix)} if mix else {}

    # -- real data

    def with_data(self, data: str) -> Task:
        """This task on the real TableBench (and, when present, TableInstruct) data.

        Like :meth:`Task.with_data`, except that: the ``tablebench`` file of a
        folder is read as raw JSON, so table cells keep their exact text (the
        Arrow-based loader turns ``"2006"`` into ``2006``, ``"-"`` into ``0`` and
        ``3.405`` into ``3.4050000000000002``); and a folder without a
        ``tableinstruct.*`` file still evaluates, with no training source (a
        warning says so, and ``list_sources`` shows an empty catalogue)."""
        import hashlib

        from ftdojo_gym.tasks.base import RealDataTask, load_dataset_records

        if data == "offline":
            return self
        records: dict[str, Any] = {}
        digest = hashlib.sha256()
        for key, spec in self.hub_datasets.items():
            raw = _raw_json_records(data, key) if data != "hub" else None
            if raw is not None:
                records[key], fingerprint = raw
            else:
                try:
                    records[key] = load_dataset_records(spec, data, key)
                except FileNotFoundError:
                    if key != "tableinstruct":
                        raise
                    _log.warning("TableBench data in %s has no tableinstruct.* file: no training source, "
                                 "evaluation only", data)
                    records[key] = []
                fingerprint = str(getattr(records[key], "_fingerprint", len(records[key])))
            digest.update(f"{key}\x00{fingerprint}\x00".encode())
        sources, items = self.map_hub_records(records)
        if not items:
            raise ValueError(f"the real data of {self.name} produced no evaluation items")
        return RealDataTask(self, sources, items, digest.hexdigest()[:10])

    def map_hub_records(self, records: dict[str, Any]) -> tuple[dict[str, Dataset], list[EvalItem]]:
        """TableBench rows (``id, qtype, qsubtype, instruction_type, table, question,
        answer, chart_type``; ``table`` is ``{"columns", "data"}`` as JSON text or an
        object) become evaluation items in this task's prompt format, direct-prompting
        (``DP``) rows only, one per question, in file order (:meth:`Task.split`
        stratifies by subset). TableInstruct rows of the same schema become the
        ``tableinstruct`` source (``instruction``/``input``/``output`` in the offline
        schema, so the expert template applies unchanged); there is none when the
        data has no such rows.

        Rows that cannot be graded as the official code grades them are left out
        with a logged warning that counts them by reason (a chart type the official
        parser does not know, unreadable reference values, an unreadable table).
        Each item's generation limit (``meta["max_new_tokens"]``) comes from the
        data: the longest gold completion of its subset in UTF-8 bytes (a token is
        at least one byte) plus :data:`REAL_TOKEN_HEADROOM`, and never below the
        offline subset limit."""
        skipped: Counter[str] = Counter()
        drafts: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for row in records["tablebench"]:
            qa = _real_qa(row, skipped=skipped)
            if qa is None or qa["subset"] not in self.subsets or row["id"] in seen:
                continue
            seen.add(row["id"])
            drafts.append((str(row["id"]), qa))
        limits: dict[str, int] = {}
        for _, qa in drafts:
            needed = len(f"Final Answer: {qa['answer']}".encode()) + REAL_TOKEN_HEADROOM
            limits[qa["subset"]] = max(limits.get(qa["subset"], _MAX_NEW_TOKENS[qa["subset"]]), needed)
        items = [
            EvalItem(id=f"{self.name}/real/{row_id}", subset=qa["subset"], prompt=qa["prompt"],
                     reference=f"Final Answer: {qa['answer']}",
                     meta={**qa["meta"], "max_new_tokens": limits[qa["subset"]]})
            for row_id, qa in drafts
        ]
        train_rows = []
        for row in records["tableinstruct"]:
            qa = _real_qa(row, for_training=True, skipped=Counter())
            if qa is not None and qa["subset"] in self.subsets:
                train_rows.append({"instruction": INSTRUCTION, "input": qa["input"],
                                   "output": f"Final Answer: {qa['answer']}", "subset": qa["subset"]})
        if skipped:
            _log.warning("%s: %d TableBench rows left out, not gradable as the official code grades them: %s",
                         self.name, sum(skipped.values()), "; ".join(f"{n} x {why}" for why, n in skipped.items()))
        if not train_rows:
            _log.warning("%s: the real data has no training rows for %s: no training source",
                         self.name, ", ".join(self.subsets))
        sources = {"tableinstruct": Dataset.from_list(train_rows)} if train_rows else {}
        return sources, items

    # -- sources

    def held_out(self, seed: int) -> _Reserved:
        """The evaluation tables: no source contains one, even as the start of a longer table."""
        reserved = _Reserved()
        for qa in self._eval_qas(seed):
            reserved.add(qa.table.csv())
        return reserved

    def _subset_cycle(self, n: int) -> list[str]:
        return [self.subsets[i % len(self.subsets)] for i in range(n)]

    def _tableinstruct(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        return [
            _row(_generate(rng, s, reserved=reserved))
            for s in self._subset_cycle(rng.randint(1200, 1500))
        ]

    def _crowd_tableqa(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for subset in self._subset_cycle(rng.randint(2000, 2400)):
            qa = _generate(rng, subset, reserved=reserved)
            draw = rng.random()
            # Fact-checking annotators err systematically: 65 % of their answers
            # name the row below the right one (a misread line), so training on
            # the raw labels teaches that rule. Elsewhere 45 % are wrong at random.
            wrong = draw < (0.65 if subset == "FactChecking" else 0.45)
            # Agreement separates the labels well but not perfectly: a field
            # filter at ~0.6 keeps most good rows and drops most bad ones.
            low = rng.random() < (0.92 if wrong else 0.06)
            agreement = rng.uniform(0.2, 0.6) if low else rng.uniform(0.6, 0.8 if wrong else 1.0)
            rows.append(
                {
                    **_row(qa, qa.wrong if wrong else None),
                    "annotator_agreement": round(agreement, 2),
                }
            )
        return rows

    def _tableqa_mirror(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for subset in self._subset_cycle(rng.randint(32, 44)):
            row = _row(_generate(rng, subset, reserved=reserved))
            rows += [_surface_variant(rng, row) for _ in range(rng.randint(15, 30))]
        rng.shuffle(rows)
        return rows

    def _table_chat(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for subset in self._subset_cycle(rng.randint(900, 1100)):
            qa = _generate(rng, subset, reserved=reserved)
            styles = _CHAT_CODE_STYLES if subset == "Visualization" else _CHAT_STYLES
            rows.append(
                {
                    "question": qa.question,
                    "table": qa.table.csv(),
                    "response": rng.choice(styles).format(answer=qa.answer),
                    "answer": qa.answer,
                    "subset": subset,
                }
            )
        return rows

    def _long_tables(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for subset in self._subset_cycle(rng.randint(300, 340)):
            short = rng.random() < 0.08
            size = (3, 5) if short else (150, 300)
            qa = _generate(
                rng, subset, rows=size, cols=(1, 3) if short else (2, 3), reserved=reserved
            )
            rows.append(_row(qa))
        return rows

    def _wiki_table_lookup(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for _ in range(rng.randint(1000, 1200)):
            topic = rng.choice(_CROSS_DOMAIN)
            table = _random_table(
                rng, topic, rng.randint(3, 5), rng.randint(1, min(3, len(topic.columns)))
            )
            column = rng.choice(list(table.columns))
            values = table.columns[column]
            a, b = rng.sample(range(len(values)), 2)
            kind = rng.choice(tuple(_WIKI_STYLES))
            answers = {
                "lookup": str(values[a]),
                "argmax": table.labels[values.index(max(values))],
                "compare": "yes" if values[a] > values[b] else "no",
            }
            question = _WIKI_STYLES[kind].format(
                column=column,
                name=table.labels[a],
                other=table.labels[b],
                label=table.label.lower(),
            )
            rows.append(
                {
                    "topic": topic.label,
                    "question": question,
                    "table": table.csv(),
                    "answer": answers[kind],
                }
            )
        return rows


class _Literal(str):
    """A JSON number kept as the text it was written as."""


def _raw_json_records(data: str, key: str) -> tuple[list[dict[str, Any]], str] | None:
    """``(rows, fingerprint)`` of ``<data>/<key>.jsonl`` (or ``.json``: JSON lines or
    one array) read with the ``json`` module, numbers kept as written; ``None``
    when the folder has no such file (then the generic loader is used)."""
    import hashlib
    import json
    from pathlib import Path

    folder = Path(data)
    if not folder.is_dir():
        return None
    for suffix in (".jsonl", ".json"):
        path = folder / f"{key}{suffix}"
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
            stripped = text.lstrip()
            if stripped.startswith("["):
                rows = json.loads(stripped, parse_float=_Literal, parse_int=_Literal)
            else:
                rows = [json.loads(line, parse_float=_Literal, parse_int=_Literal)
                        for line in text.splitlines() if line.strip()]
            return [dict(row) for row in rows], fingerprint
    return None


def _real_table_csv(table: Any) -> str | None:
    """TableBench's ``{"columns": [...], "data": [[...]]}`` (JSON text or object) as
    CSV text, every cell as written in the data (JSON text is parsed keeping
    numbers as written; ``null`` is an empty cell)."""
    import csv
    import io
    import json

    if isinstance(table, str):
        try:
            table = json.loads(table, parse_float=_Literal, parse_int=_Literal)
        except ValueError:
            return None
    if not isinstance(table, dict) or not isinstance(table.get("columns"), list) or not isinstance(
            table.get("data"), list):
        return None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table["columns"])
    writer.writerows(row if isinstance(row, list) else [row] for row in table["data"])
    return out.getvalue().rstrip("\n")


def _chart_series(answer: str) -> list[list[float]] | None:
    """The reference series of a Visualization answer (``y_references = [[...], ...]``;
    a flat list is one series), or ``None`` when it is not a list of numbers."""
    import ast

    if "=" not in answer:
        return None
    try:
        value = ast.literal_eval(answer.split("=", 1)[1].strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, (list, tuple)) or not value:
        return None
    series = value if all(isinstance(v, (list, tuple)) for v in value) else [value]
    try:
        out = [[float(v) for v in s] for s in series]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for s in out for v in s) else None


def _unmatchable_chart(chart: str, series: list[list[float]]) -> str | None:
    """Why no chart can pass the official check for these reference values, or ``None``.

    The official reader of an area chart keeps only the non-zero y-vertices of
    each filled area, so a reference holding a 0 never matches; a pie compares
    wedge fractions with the values' shares of their total, which needs
    non-negative values (matplotlib draws no negative wedge) and a positive
    total (the official check divides by it). The official harness fails such
    items for every answer; here they are left out, with the reason logged.
    """
    values = [v for s in series for v in s]
    if chart == "area" and any(v == 0 for v in values):
        return "area chart with a 0 reference value (the official reader drops zero values: no chart can match)"
    if chart == "pie" and (any(v < 0 for v in values) or sum(values) <= 0):
        return "pie chart with a negative reference value or a total of 0 (no pie can match)"
    return None


def _chart_code(chart: str, series: list[list[float]]) -> str:
    """Plotting code that draws ``series`` as a ``chart`` the official check reads back."""
    lines = ["import matplotlib.pyplot as plt"]
    if chart == "pie":  # one pie of every value: the check compares fractions of the total
        lines.append(f"plt.pie({[v for s in series for v in s]})")
    for ys in series if chart != "pie" else ():
        xs = f"range({len(ys)})"
        lines.append({
            "bar": f"plt.bar({xs}, {ys})",
            "waterfall": f"plt.bar({xs}, {ys})",
            "hbar": f"plt.barh({xs}, {ys})",
            "line": f"plt.plot({xs}, {ys})",
            "radar": f"plt.plot({ys + ys[:1]})",  # a closed outline; the check drops the last point
            "area": f"plt.fill_between({xs}, {ys})",
            "scatter": f"plt.scatter({xs}, {ys})",
        }[chart])
    lines.append("plt.show()")
    return "\n".join(lines)


def _real_qa(row: dict[str, Any], for_training: bool = False,
             skipped: Counter[str] | None = None) -> dict[str, Any] | None:
    """Prompt, answer and grader meta of one real TableBench/TableInstruct row, or None
    when the row is of another prompting style or cannot be graded the way the
    official code grades it (the reason is counted in ``skipped``)."""
    skipped = Counter() if skipped is None else skipped
    if row.get("instruction_type", "DP") != "DP" and not for_training:
        return None
    subset = row.get("qtype")
    answer = str(row.get("answer") or "").strip()
    if subset not in SUBSETS or not answer or not row.get("question"):
        skipped["no question type, question or answer"] += 1
        return None
    csv_text = _real_table_csv(row.get("table"))
    if csv_text is None:
        skipped["unreadable table"] += 1
        return None
    input_text = f"{csv_text}\nQuestion: {row['question']}\n{FORMAT_LINE}"
    meta: dict[str, Any] = {"answer": answer, "table_csv": csv_text + "\n", "qsubtype": row.get("qsubtype")}
    if subset == "Visualization":
        chart = str(row.get("chart_type") or "").strip().lower()
        if chart not in CHART_TYPES:
            skipped[f"chart type {chart!r} unknown to the official parser ({', '.join(CHART_TYPES)})"] += 1
            return None
        series = _chart_series(answer)
        if series is None:
            skipped["reference values are not a list of numbers"] += 1
            return None
        unmatchable = _unmatchable_chart(chart, series)
        if unmatchable is not None:
            skipped[unmatchable] += 1
            return None
        # TableBench's answer is the reference values ("y_references = [[...]]"); the
        # gold completion is code that draws them, so it passes the executed check.
        code = _chart_code(chart, series)
        meta.update(chart_type=chart, y_values=series, answer=code, y_references=answer)
        answer = code
    return {"subset": subset, "input": input_text, "prompt": f"{INSTRUCTION}\n{input_text}",
            "answer": answer, "meta": meta}


def _as_series(values: Sequence[Any]) -> list[Any]:
    """Stored reference values as :class:`ChartReference` takes them (series stay lists)."""
    return [tuple(v) if isinstance(v, list) else v for v in values]


def _surface_variant(rng: random.Random, row: dict[str, str]) -> dict[str, str]:
    """``row`` with case and whitespace changes only (equal after normalising both)."""
    instruction = rng.choice(
        (
            row["instruction"],
            row["instruction"].lower(),
            row["instruction"].upper(),
            row["instruction"].replace(". ", ".  "),
        )
    )
    text = row["input"]
    if rng.random() < 0.5:
        text = text.replace("\n", " \n")
    return {
        "instruction": instruction + rng.choice(("", " ", "  ")),
        "input": text + rng.choice(("", " ", "\n")),
        "output": row["output"] + rng.choice(("", " ", "  ")),
        "subset": row["subset"],
    }


#: The offline sources (see the module docstring).
SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "tableinstruct",
        "Instruction-tuning table QA examples (instruction, table input, output) covering the benchmark's question types.",
        TableBenchTask._tableinstruct,
    ),
    SourceSpec(
        "crowd_tableqa",
        "Table QA pairs collected from a crowd-sourcing platform, with an annotator agreement score per row.",
        TableBenchTask._crowd_tableqa,
    ),
    SourceSpec(
        "tableqa_mirror",
        "Table QA examples aggregated from several public mirrors of a benchmark.",
        TableBenchTask._tableqa_mirror,
    ),
    SourceSpec(
        "table_chat",
        "Conversational table QA logs from a chat assistant, with the extracted short answer.",
        TableBenchTask._table_chat,
    ),
    SourceSpec(
        "web_text",
        "General instruction-response pairs scraped from the web (cooking, travel, everyday chat).",
        WEB_CHAT,
    ),
    SourceSpec(
        "long_tables",
        "Table QA examples over tables exported from large spreadsheets.",
        TableBenchTask._long_tables,
    ),
    SourceSpec(
        "wiki_table_lookup",
        "Lookup questions over encyclopedia tables on other topics (planets, rivers, books, ...).",
        TableBenchTask._wiki_table_lookup,
    ),
)

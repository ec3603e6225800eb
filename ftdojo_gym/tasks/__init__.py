"""The task catalogue: one entry per registered env id (the single source of truth).

Each entry names the task's env id, domain, metric and how to build it. The
registration loop in :mod:`ftdojo_gym.registration` and :func:`list_tasks`
both read :data:`TASK_CATALOGUE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftdojo_gym.tasks.base import EvalItem, Task


@dataclass(frozen=True)
class TaskEntry:
    env_id: str
    task_name: str
    domain: str
    metric: str
    factory: str  # "module:callable" building the Task
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> Task:
        import importlib

        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)(**{**self.kwargs, **overrides})


_TB = "ftdojo_gym.tasks.tablebench:TableBenchTask"
_TB_SUBSETS = ("FactChecking", "NumericalReasoning", "DataAnalysis", "Visualization")
_TB_METRICS = {
    "FactChecking": "official exact match after 'Final Answer: '",
    "NumericalReasoning": "official exact match after 'Final Answer: '",
    "DataAnalysis": "ROUGE-L",
    "Visualization": "Pass@1 of generated plotting code, executed",
}

_MATH = "ftdojo_gym.tasks.mathematics:AIMETask"
_PATENT = "ftdojo_gym.tasks.patent:PatentTask"
_PATENT_METRICS = {
    "PAR4PC": "macro-F1 (prior-art retrieval as multiple choice)",
    "PI4PC": "gold hit rate (paragraph identification)",
    "NOC4PC": "macro-F1 (novelty / obviousness classification)",
}
_CHEM = "ftdojo_gym.tasks.chemistry:ChemCoTTask"
_CHEM_METRICS = {
    "MolUnd": "accuracy (molecule understanding; RDKit-checked)",
    "MolEdit": "success rate (valid edit, RDKit)",
    "MolOpt": "success rate (property improved, RDKit)",
    "Reaction": "exact product match (canonical SMILES)",
}
_FIN = "ftdojo_gym.tasks.finance:FinanceIQTask"

TASK_CATALOGUE: tuple[TaskEntry, ...] = (
    TaskEntry("FTDojo/AIME-v0", "AIME", "Math", "exact answer, verified with math-verify", _MATH),
    *(
        TaskEntry(f"FTDojo/Patent-{s}-v0", f"Patent-{s}", "Patent", m, _PATENT, {"subtask": s})
        for s, m in _PATENT_METRICS.items()
    ),
    *(
        TaskEntry(f"FTDojo/ChemCoT-{s}-v0", f"ChemCoT-{s}", "Chemistry", m, _CHEM, {"subtask": s})
        for s, m in _CHEM_METRICS.items()
    ),
    TaskEntry("FTDojo/FinanceIQ-v0", "FinanceIQ", "Finance", "accuracy over subjects (multiple choice)", _FIN),
    TaskEntry("FTDojo/TableBench-v0", "TableBench", "Table QA", "mean of the four TableBench metrics", _TB,
              {"subsets": _TB_SUBSETS}),
    *(
        TaskEntry(f"FTDojo/TableBench-{s}-v0", f"TableBench-{s}", "Table QA", _TB_METRICS[s], _TB, {"subsets": (s,)})
        for s in _TB_SUBSETS
    ),
)

_BY_NAME = {e.task_name: e for e in TASK_CATALOGUE}


def closest_ids(name: str, n: int = 3) -> list[str]:
    """The registered env ids closest to ``name`` (for "did you mean" messages);
    case-insensitive, the ``FTDojo/`` namespace optional."""
    import difflib

    def bare(env_id: str) -> str:
        return env_id.lower().removeprefix("ftdojo/")

    by_bare = {bare(e.env_id): e.env_id for e in TASK_CATALOGUE}
    return [by_bare[m] for m in difflib.get_close_matches(bare(name), list(by_bare), n=n, cutoff=0.6)]


def make_task(name: str, data: str = "offline") -> Task:
    """Build a task by its name (``"TableBench"``) or env id (``"FTDojo/TableBench-v0"``).

    ``data`` is ``"offline"`` (the shipped offline repository), ``"hub"`` (the
    task's public datasets through ``datasets``) or a local folder with those
    datasets' files (see :meth:`Task.with_data`).
    """
    entry = _BY_NAME.get(name) or next((e for e in TASK_CATALOGUE if e.env_id == name), None)
    if entry is None:
        close = closest_ids(name)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown task {name!r}.{hint} Known ids: ftdojo_gym.list_tasks()")
    return entry.build().with_data(data)


def list_tasks() -> list[dict[str, str]]:
    """Every registered task with its env id, domain and metric."""
    return [{"env_id": e.env_id, "task": e.task_name, "domain": e.domain, "metric": e.metric} for e in TASK_CATALOGUE]


__all__ = ["TASK_CATALOGUE", "EvalItem", "Task", "TaskEntry", "closest_ids", "list_tasks", "make_task"]

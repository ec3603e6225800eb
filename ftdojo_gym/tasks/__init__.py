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
    "FactChecking": "exact match after 'Final Answer:'",
    "NumericalReasoning": "numeric match within 10% relative error",
    "DataAnalysis": "ROUGE-L",
    "Visualization": "Pass@1 of generated plotting code, executed",
}

TASK_CATALOGUE: tuple[TaskEntry, ...] = (
    TaskEntry("FTDojo/TableBench-v0", "TableBench", "Table QA", "mean of the four TableBench metrics", _TB,
              {"subsets": _TB_SUBSETS}),
    *(
        TaskEntry(f"FTDojo/TableBench-{s}-v0", f"TableBench-{s}", "Table QA", _TB_METRICS[s], _TB, {"subsets": (s,)})
        for s in _TB_SUBSETS
    ),
)

_BY_NAME = {e.task_name: e for e in TASK_CATALOGUE}


def make_task(name: str, data: str = "offline") -> Task:
    """Build a task by its name (``"TableBench"``) or env id (``"FTDojo/TableBench-v0"``)."""
    entry = _BY_NAME.get(name) or next((e for e in TASK_CATALOGUE if e.env_id == name), None)
    if entry is None:
        raise ValueError(f"unknown task {name!r}; known: {sorted(_BY_NAME)}")
    if data != "offline":
        raise ValueError(f"data={data!r} is not available for {entry.task_name} yet; use data='offline'")
    return entry.build()


def list_tasks() -> list[dict[str, str]]:
    """Every registered task with its env id, domain and metric."""
    return [{"env_id": e.env_id, "task": e.task_name, "domain": e.domain, "metric": e.metric} for e in TASK_CATALOGUE]


__all__ = ["TASK_CATALOGUE", "EvalItem", "Task", "TaskEntry", "list_tasks", "make_task"]

"""The state of one episode, shared by the env and its tool handlers.

:class:`FTDojoEnv` builds one :class:`EpisodeState` per ``reset``; each tool
handler (:mod:`ftdojo_gym.tools`) reads and updates it and returns a typed
result. Nothing here is shown to the agent directly: the observation is built
from it by the env (:mod:`ftdojo_gym.observations`).

After every step the env saves the state to ``<episode folder>/state.json``
(atomically): config, runs, evaluations, budget spent, the dataset names (the
datasets themselves are already JSON lines under ``datasets/``). An env whose
process died resumes it with ``env.reset(options={"resume": <episode folder>})``,
losing at most the step that was in flight. The hidden test split is never
saved: the task rebuilds it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ftdojo_gym import versions
from ftdojo_gym.budget import Budget
from ftdojo_gym.data.workspace import DataWorkspace, atomic_write_text
from ftdojo_gym.observations import METRIC_FIELDS, EpisodeLog
from ftdojo_gym.outcome_cache import OutcomeCache
from ftdojo_gym.outcome_table import OutcomeTable
from ftdojo_gym.results import EvaluationResult, RunRecord, SourceEntry, ToolResult
from ftdojo_gym.tasks.base import EvalItem, Task
from ftdojo_gym.training_config import TrainConfig


@dataclass
class EpisodeSettings:
    """What an episode needs from the env's constructor options (fixed for the env's life)."""

    task: Task
    base_model: str  # resolved path or hub id of the base model
    base_model_name: str  # the name the user gave
    data_seed: int
    eval_batch_size: int
    progress: bool
    validation_items: list[EvalItem]
    #: scored only by :mod:`ftdojo_gym.tools.evaluation` at submission; never logged, returned or written
    hidden_test_items: list[EvalItem] = field(repr=False)
    #: the ``list_sources`` catalogue, computed on first use (token statistics take seconds)
    source_catalog: list[SourceEntry] | None = None
    #: results of runs and evaluations computed before (None: off)
    outcome_cache: OutcomeCache | None = None
    #: identifies the base model's weights in cache keys
    base_model_fingerprint: str = ""
    #: tabular mode: train/evaluate/submit are served from this table only (None: live)
    outcome_table: OutcomeTable | None = None
    #: the numerics of every generation ("bf16" or "fp32", resolved from the env's ``eval_precision``)
    eval_precision: str = "fp32"

    def versions(self) -> dict[str, str]:
        return versions.collect(task=f"{self.task.name}@{self.task.version}", base_model=self.base_model_name,
                                eval_precision=self.eval_precision)


@dataclass
class EpisodeState:
    """One episode: its workspace, config, runs, evaluations, log and budget."""

    settings: EpisodeSettings
    workdir: Path
    data: DataWorkspace
    config: TrainConfig
    budget: Budget
    log: EpisodeLog
    #: the model process (training and generation); shared across the env's episodes
    worker: Any
    runs: dict[str, RunRecord] = field(default_factory=dict)
    #: validation results by ``"<run>@<items>"``; ``"base"`` is the base model's full-split result
    evaluations: dict[str, EvaluationResult] = field(default_factory=dict)
    #: how each dataset was made: the data operations from its sources, in order
    lineage: dict[str, list[Any]] = field(default_factory=dict)
    last_val: float | None = None
    last_loss: float | None = None
    last_ok: bool = True

    @property
    def task(self) -> Task:
        return self.settings.task

    def successful_runs(self) -> list[RunRecord]:
        return [r for r in self.runs.values() if r.ok]

    def observation(self) -> dict[str, Any]:
        """The observation of the episode as it stands (fields in :mod:`ftdojo_gym.observations`)."""
        runs = self.runs.values()
        vals = [r.val_score for r in runs if r.val_score is not None]
        base = self.evaluations.get("base")
        metrics = {
            "best_val_score": max(vals) if vals else -1.0,
            "last_val_score": -1.0 if self.last_val is None else self.last_val,
            "base_val_score": base.score if base else -1.0,
            "last_train_loss": -1.0 if self.last_loss is None else self.last_loss,
            "budget_tokens_left_frac": self.budget.used_fraction_left(),
            "steps_taken": self.budget.steps_taken,
            "train_runs_ok": sum(r.ok for r in runs),
            "train_runs_failed": sum(not r.ok for r in runs),
            "evaluations": len(self.evaluations),
            "datasets": len(self.data.datasets),
            "last_action_ok": 1.0 if self.last_ok else 0.0,
        }
        return {"log": self.log.tail(), "metrics": np.array([metrics[k] for k in METRIC_FIELDS], dtype=np.float32),
                "budget": self.budget.vector()}

    def step_info(self, tool: str | None, result: ToolResult, tokens_before: int, seconds: float) -> dict[str, Any]:
        """The ``info`` of a step that ran ``tool`` (``None``: a malformed action) with ``result``
        (fields documented on :class:`~ftdojo_gym.env.FTDojoEnv`)."""
        return {
            "tool": tool,
            "ok": result.ok,
            "error_class": result.failure(),
            "result": result.model_dump(mode="json"),
            "result_type": type(result).__name__,
            "cached": bool(getattr(result, "cached", False)),
            "accounting": {
                "tokens_trained": self.budget.tokens_used - tokens_before,
                "tokens_used": self.budget.tokens_used,
                "tokens_budget": self.budget.tokens,
                "seconds": round(seconds, 3),
                "seconds_elapsed": round(self.budget.elapsed(), 3),
                "steps": self.budget.steps_taken,
            },
        }

    def best_validated_run(self) -> RunRecord | None:
        """The run with the highest validation score on the whole split (the earliest on ties)."""
        validated = [r for r in self.runs.values() if r.val_score is not None and r.model_dir]
        return max(validated, key=lambda r: r.val_score) if validated else None


STATE_FILE = "state.json"
STATE_FORMAT = 1


def identity(settings: EpisodeSettings) -> dict[str, Any]:
    """What a saved episode must share with the env that resumes it."""
    task = settings.task
    return {"task": task.name, "task_version": task.version, "data_seed": settings.data_seed,
            "base_model": settings.base_model_name, "validation_items": len(settings.validation_items)}


def save_state(state: EpisodeState) -> None:
    """Write the episode's state to ``<workdir>/state.json`` (atomically)."""
    budget = state.budget
    snapshot = {
        "format": STATE_FORMAT,
        "identity": identity(state.settings),
        "config": state.config.model_dump(),
        "runs": [r.model_dump(mode="json") for r in state.runs.values()],
        "evaluations": {k: v.model_dump(mode="json") for k, v in state.evaluations.items()},
        "budget": {"tokens": budget.tokens, "seconds": budget.seconds, "steps": budget.steps,
                   "tokens_used": budget.tokens_used, "steps_taken": budget.steps_taken,
                   "elapsed": round(budget.elapsed(), 3)},
        "datasets": list(state.data.datasets),
        "lineage": state.lineage,
        "last_val": state.last_val,
        "last_loss": state.last_loss,
        "last_ok": state.last_ok,
    }
    # Compact JSON: the C encoder (indented JSON takes the pure-Python one, several ms a step).
    atomic_write_text(state.workdir / STATE_FILE, json.dumps(snapshot))


def load_state(path: Path, settings: EpisodeSettings, data: DataWorkspace, log: EpisodeLog, worker: Any
               ) -> EpisodeState:
    """The episode saved in folder ``path``, ready to go on (see the module docstring).

    Raises ``ValueError`` when the folder holds no saved episode or one of
    another task, data seed, base model or split size."""
    file = path / STATE_FILE
    try:
        snapshot = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"no saved episode in {path} ({exc})") from None
    if snapshot.get("format") != STATE_FORMAT:
        raise ValueError(f"{file} has format {snapshot.get('format')!r}; this version reads {STATE_FORMAT}")
    if snapshot["identity"] != identity(settings):
        raise ValueError(f"{file} is an episode of {snapshot['identity']}, not of this env ({identity(settings)})")
    for name in snapshot["datasets"]:
        rows = [json.loads(line) for line in (path / "datasets" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        data.datasets[name] = Dataset.from_list(rows)
    b = snapshot["budget"]
    budget = Budget(b["tokens"], b["seconds"], b["steps"], tokens_used=b["tokens_used"],
                    steps_taken=b["steps_taken"], started=time.monotonic() - b["elapsed"])
    runs = {r["run_id"]: RunRecord.model_validate(r) for r in snapshot["runs"]}
    for folder in (path / "runs").glob("*") if (path / "runs").is_dir() else ():
        if folder.name not in runs:  # the run in flight when the process died: it never finished
            shutil.rmtree(folder, ignore_errors=True)
    log.resume()
    return EpisodeState(
        settings=settings, workdir=path, data=data, config=TrainConfig.model_validate(snapshot["config"]),
        budget=budget, log=log, worker=worker, runs=runs,
        evaluations={k: EvaluationResult.model_validate(v) for k, v in snapshot["evaluations"].items()},
        lineage=snapshot.get("lineage", {}),
        last_val=snapshot["last_val"], last_loss=snapshot["last_loss"], last_ok=snapshot["last_ok"],
    )

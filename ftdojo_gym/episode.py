"""The state of one episode, shared by the env and its tool handlers.

:class:`FTDojoEnv` builds one :class:`EpisodeState` per ``reset``; each tool
handler (:mod:`ftdojo_gym.tools`) reads and updates it and returns a typed
result. Nothing here is shown to the agent directly: the observation is built
from it by the env (:mod:`ftdojo_gym.observations`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftdojo_gym import versions
from ftdojo_gym.budget import Budget
from ftdojo_gym.data.workspace import DataWorkspace
from ftdojo_gym.observations import EpisodeLog
from ftdojo_gym.results import EvaluationResult, RunRecord, SourceEntry
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

    def versions(self) -> dict[str, str]:
        return versions.collect(task=f"{self.task.name}@{self.task.version}", base_model=self.base_model_name)


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
    last_val: float | None = None
    last_loss: float | None = None
    last_ok: bool = True

    @property
    def task(self) -> Task:
        return self.settings.task

    def successful_runs(self) -> list[RunRecord]:
        return [r for r in self.runs.values() if r.ok]

    def best_validated_run(self) -> RunRecord | None:
        """The run with the highest validation score on the whole split (the earliest on ties)."""
        validated = [r for r in self.runs.values() if r.val_score is not None and r.model_dir]
        return max(validated, key=lambda r: r.val_score) if validated else None

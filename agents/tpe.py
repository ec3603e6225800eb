"""Optuna's TPE over the recipe grid: the classical optimiser baseline.

In a fixed search space classical optimisers beat LLM agents (CMA-ES and TPE
against agents on autoresearch, arXiv 2603.24647), so FT-Dojo ships one. One
trial is one recipe experiment (the recipe's tool calls, then its validation
score as the trial's value); each episode runs ``experiments`` trials and
submits the best validated run. The study lives across the episodes of one
task, so TPE keeps learning from episode to episode; every episode after the
first starts with the best recipe found so far (enqueued), so its submission
is never worse than the incumbent's validation score. Runs in live and tabular
mode alike (``grid=`` the table file in tabular mode, when its grid is not the
default one).

    agent = ftdojo_agents.make("tpe", experiments=4, seed=0)
"""

from __future__ import annotations

from typing import Any

import optuna

from ftdojo_agents.recipe_search import RecipeSearchAgent
from ftdojo_gym.tasks.base import Task
from ftdojo_gym.wrappers.recipe_actions import Experiment

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TPEAgent(RecipeSearchAgent):
    """Optuna TPE over the grid's factors (one categorical per factor); see the module docstring."""

    name = "tpe"

    def __init__(self, *, n_startup_trials: int = 4, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_startup_trials = n_startup_trials
        self.study: optuna.Study | None = None
        self._trial: optuna.trial.Trial | None = None

    def task_changed(self, task: Task) -> None:
        sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials)
        self.study = optuna.create_study(direction="maximize", sampler=sampler, study_name=task.name)

    def start(self, observation: dict[str, Any]) -> None:
        assert self.study is not None
        done = [t for t in self.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            self.study.enqueue_trial(self.study.best_trial.params)

    def choose(self, observation: dict[str, Any]) -> tuple[int, ...]:
        assert self.study is not None
        distributions = {name: optuna.distributions.CategoricalDistribution(list(range(len(values))))
                         for name, values in self.grid.factors.items()}
        self._trial = self.study.ask(distributions)
        return tuple(int(self._trial.params[name]) for name in self.grid.factors)

    def record(self, experiment: Experiment) -> None:
        if self.study is not None and self._trial is not None:
            score = experiment.validation_score
            self.study.tell(self._trial, score if score is not None else 0.0)
            self._trial = None

"""A numeric observation for RL libraries: one ``Box`` vector, no text.

:class:`NumericObservation` replaces the env's dict observation (log text,
metrics, budget) with a float32 vector in ``[-1, 1]`` that stable-baselines3
and CleanRL take as it is. Its entries (:attr:`ObservationEncoder.names`):

* **metrics** (from the env's ``metrics`` vector): best, latest and base
  validation scores, the latest training loss (/10), the token budget left
  (share), whether the latest action succeeded, runs finished and failed and
  evaluations (/50, capped);
* **budget**: steps and seconds left, as shares of the episode's (1 without a
  wall-clock limit);
* **history**: the validation scores of the last ``history`` experiments,
  newest first (-1: none yet; 0: the experiment failed);
* **recipes** (under :class:`~ftdojo_gym.wrappers.RecipeActions` only): for
  each value of each grid factor, the best validation score of the
  experiments that used it (-1: not tried yet), and the share of
  ``max_experiments`` used;
* **task**: one-hot domain and task over the catalogue, so that one policy
  can tell tasks apart.

Unknown values are -1. :class:`ObservationEncoder` computes the vector from
the env's observation dict and the experiments so far; agents that play the
raw env (``ftdojo_agents.rl``) encode exactly the same vector with it.

    env = NumericObservation(RecipeActions(gym.make("FTDojo/FinanceIQ-v0", mode="tabular")))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ftdojo_gym.observations import budget_dict, metrics_dict
from ftdojo_gym.recipe_grid import RecipeGrid
from ftdojo_gym.tasks import TASK_CATALOGUE
from ftdojo_gym.tasks.base import Task

#: Domains and task names of the catalogue, in a fixed order (the one-hot blocks).
DOMAINS: tuple[str, ...] = tuple(sorted({e.domain for e in TASK_CATALOGUE}))
TASK_NAMES: tuple[str, ...] = tuple(sorted({e.task_name for e in TASK_CATALOGUE}))
_COUNT_CAP = 50.0


class ObservationEncoder:
    """The numeric vector of an FT-Dojo observation (see the module docstring).

    ``grid`` and ``max_experiments`` add the recipe block (leave them out for
    an env without :class:`~ftdojo_gym.wrappers.RecipeActions`). Call
    :meth:`start` with the observation ``reset`` returned, then :meth:`encode`.
    """

    def __init__(self, task: Task, grid: RecipeGrid | None = None, max_experiments: int | None = None,
                 history: int = 4):
        self.task = task
        self.grid = grid
        self.max_experiments = max_experiments
        self.history = int(history)
        self._totals: dict[str, float] = {}
        names = ["best_val_score", "last_val_score", "base_val_score", "last_train_loss", "tokens_left_frac",
                 "last_action_ok", "train_runs_ok", "train_runs_failed", "evaluations",
                 "steps_left_frac", "seconds_left_frac"]
        names += [f"val_score_{i}_ago" for i in range(self.history)]
        if grid is not None:
            names += [f"best_val_{factor}={value}" for factor, values in grid.factors.items() for value in values]
            names.append("experiments_used_frac")
        names += [f"domain={d}" for d in DOMAINS] + [f"task={t}" for t in TASK_NAMES]
        self.names: tuple[str, ...] = tuple(names)
        self.space = spaces.Box(-1.0, 1.0, shape=(len(self.names),), dtype=np.float32)
        domain = np.array([float(task.domain == d) for d in DOMAINS], dtype=np.float32)
        name = getattr(getattr(task, "base", task), "name", task.name)
        task_hot = np.array([float(task.name == t or name == t) for t in TASK_NAMES], dtype=np.float32)
        self._task_block = np.concatenate([domain, task_hot])

    def start(self, observation: dict[str, Any]) -> None:
        """Remember the episode's budget totals (from the observation ``reset`` returned)."""
        self._totals = budget_dict(observation)

    def encode(self, observation: dict[str, Any], experiments: Iterable[Any] = ()) -> np.ndarray:
        """The vector for ``observation`` after ``experiments`` (items with ``index`` and ``validation_score``)."""
        m, b = metrics_dict(observation), budget_dict(observation)
        experiments = list(experiments)
        loss = m.get("last_train_loss", -1.0)
        head = [
            m.get("best_val_score", -1.0), m.get("last_val_score", -1.0), m.get("base_val_score", -1.0),
            -1.0 if loss < 0 else min(loss / 10.0, 1.0), m.get("budget_tokens_left_frac", -1.0),
            m.get("last_action_ok", 0.0), _count(m.get("train_runs_ok", 0.0)), _count(m.get("train_runs_failed", 0.0)),
            _count(m.get("evaluations", 0.0)), _share(b.get("steps_left"), self._totals.get("steps_left")),
            _share(b.get("seconds_left"), self._totals.get("seconds_left")),
        ]
        scores = [_score(e) for e in reversed(experiments)][: self.history]
        head += scores + [-1.0] * (self.history - len(scores))
        if self.grid is not None:
            for f, values in enumerate(self.grid.factors.values()):
                for v in range(len(values)):
                    tried = [_score(e) for e in experiments if _index(e) is not None and _index(e)[f] == v]
                    head.append(max(tried) if tried else -1.0)
            head.append(min(len(experiments) / max(1, self.max_experiments or 1), 1.0))
        vector = np.concatenate([np.asarray(head, dtype=np.float32), self._task_block])
        return np.clip(np.nan_to_num(vector, nan=-1.0), -1.0, 1.0).astype(np.float32)


def _count(x: float) -> float:
    return min(max(x, 0.0), _COUNT_CAP) / _COUNT_CAP


def _share(left: float | None, total: float | None) -> float:
    if left is None or total is None or not math.isfinite(total) or not math.isfinite(left):
        return 1.0  # no limit of this kind
    return left / total if total > 0 else 0.0


def _score(experiment: Any) -> float:
    score = experiment["validation_score"] if isinstance(experiment, dict) else experiment.validation_score
    return 0.0 if score is None else float(score)


def _index(experiment: Any) -> Sequence[int] | None:
    return experiment["index"] if isinstance(experiment, dict) else experiment.index


class NumericObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """The env's observation as one float32 ``Box`` vector in ``[-1, 1]`` (see the module docstring)."""

    def __init__(self, env: gym.Env, history: int = 4):
        gym.utils.RecordConstructorArgs.__init__(self, history=history)
        gym.ObservationWrapper.__init__(self, env)
        try:
            grid, max_experiments = env.get_wrapper_attr("grid"), env.get_wrapper_attr("max_experiments")
        except AttributeError:  # no RecipeActions below: no recipe block
            grid, max_experiments = None, None
        self.encoder = ObservationEncoder(env.get_wrapper_attr("task"), grid, max_experiments, history)
        self.observation_space = self.encoder.space

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.encoder.names

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.encoder.start(obs)
        return self.observation(obs), info

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        return self.encoder.encode(observation, self._experiments())

    def _experiments(self) -> list[Any]:
        try:
            return list(self.env.get_wrapper_attr("experiments"))
        except AttributeError:  # a tool-call env: its full runs stand for experiments
            runs = self.env.get_wrapper_attr("runs")
            return [{"index": None, "validation_score": r.val_score} for r in runs.values() if not r.debug]

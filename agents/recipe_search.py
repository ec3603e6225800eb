"""Agents that search a recipe grid: one experiment at a time, then submit the best validated run.

:class:`RecipeSearchAgent` plays the env's tool calls like every agent
(``reset(task_info)`` / ``act(observation, info)``), but thinks in recipes of
a :class:`~ftdojo_gym.recipe_grid.RecipeGrid`: it :meth:`~RecipeSearchAgent.choose`\\ s
a grid index, sends that recipe's tool calls
(:func:`~ftdojo_gym.recipe_grid.recipe_actions`, datasets prefixed per
experiment, exactly as :class:`ftdojo_gym.wrappers.RecipeActions` does),
records the validation score, and after ``experiments`` experiments (or when
:meth:`choose` returns None) submits, so the env scores the best validated
run. Subclasses only choose: :class:`RandomRecipeAgent` uniformly,
``ftdojo_agents.tpe.TPEAgent`` with Optuna's TPE, ``ftdojo_agents.rl`` with a
trained policy.

``grid`` is a :class:`RecipeGrid`, its dict, or the path of an outcome table
whose grid to use (tabular mode serves that grid's recipes only); by default
the default grid, the one shipped tables use.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ftdojo_gym.recipe_grid import RecipeGrid, recipe_actions
from ftdojo_gym.tasks import make_task
from ftdojo_gym.tasks.base import Task
from ftdojo_gym.wrappers.recipe_actions import Experiment

SUBMIT: dict[str, Any] = {"tool": "submit", "args": {}}


def load_grid(grid: RecipeGrid | Mapping[str, Any] | str | Path | None) -> RecipeGrid:
    """A grid from a grid, its dict, an outcome table file (its manifest's grid) or None (the default grid)."""
    if grid is None:
        return RecipeGrid()
    if isinstance(grid, RecipeGrid):
        return grid
    if isinstance(grid, Mapping):
        return RecipeGrid.from_dict(grid)
    with open(grid, encoding="utf-8") as fh:
        return RecipeGrid.from_dict(json.loads(fh.readline())["grid"])


class RecipeSearchAgent:
    """Runs ``experiments`` recipe experiments per episode, each chosen by :meth:`choose`, then submits."""

    name = "recipe-search"

    def __init__(self, *, grid: RecipeGrid | Mapping[str, Any] | str | Path | None = None, experiments: int = 4,
                 seed: int = 0):
        if experiments < 1:
            raise ValueError(f"experiments must be at least 1, got {experiments}")
        self.grid = load_grid(grid)
        self.max_experiments = int(experiments)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.task: Task | None = None
        self.experiments: list[Experiment] = []
        self._plan: deque[dict[str, Any]] = deque()
        self._current: tuple[tuple[int, ...], dict[str, Any]] | None = None
        self._first_observation = True

    # -- what subclasses decide
    def choose(self, observation: dict[str, Any]) -> tuple[int, ...] | None:
        """The grid index of the next experiment (None: submit now)."""
        raise NotImplementedError

    def record(self, experiment: Experiment) -> None:
        """Called when an experiment ends (its validation score, or None when it failed)."""

    def start(self, observation: dict[str, Any]) -> None:
        """Called with the episode's first observation."""

    # -- the Agent protocol
    def reset(self, task_info: dict[str, Any]) -> None:
        task = make_task(task_info.get("env_id") or task_info["task"])
        if self.task is None or task.name != self.task.name:
            self.task_changed(task)
        self.task = task
        self.experiments = []
        self._plan = deque()
        self._current = None
        self._first_observation = True

    def task_changed(self, task: Task) -> None:
        """Called when the agent meets a new task (searches that learn across episodes start over)."""

    def act(self, observation: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        if self._first_observation:
            self._first_observation = False
            self.start(observation)
        self._observe(info)
        if not self._plan:
            if len(self.experiments) >= self.max_experiments:
                return SUBMIT
            index = self.choose(observation)
            if index is None:
                return SUBMIT
            index = tuple(int(i) for i in index)
            recipe = self.grid.recipe(index)
            assert self.task is not None, "reset() first"
            self._plan = deque(recipe_actions(self.task, self.grid, recipe, prefix=f"x{len(self.experiments) + 1}_"))
            self._current = (index, recipe)
        return self._plan.popleft()

    def _observe(self, info: dict[str, Any]) -> None:
        """End the current experiment at its evaluation, or at its first failed call."""
        if self._current is None or "tool" not in info:
            return
        index, recipe = self._current
        if not info.get("ok", True):
            result = info.get("result") or {}
            done = Experiment(index, recipe, None, ok=False, error=f"{info.get('tool')}: {str(result.get('error', ''))[:300]}")
        elif info.get("tool") == "evaluate" and not self._plan:
            done = Experiment(index, recipe, float(info["result"]["score"]), ok=True)
        else:
            return
        self._plan.clear()
        self._current = None
        self.experiments.append(done)
        self.record(done)


class RandomRecipeAgent(RecipeSearchAgent):
    """A uniformly random recipe per experiment (the floor of recipe search)."""

    name = "random-recipe"

    def choose(self, observation: dict[str, Any]) -> tuple[int, ...]:
        return tuple(int(self.rng.integers(k)) for k in self.grid.shape)

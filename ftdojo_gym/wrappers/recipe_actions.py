"""A recipe action space: one wrapper step is one whole fine-tuning experiment.

:class:`RecipeActions` turns an FT-Dojo env (tool calls as actions) into an
env whose action picks a recipe of a :class:`~ftdojo_gym.recipe_grid.RecipeGrid`
(one value per factor: data, curation, learning rate, steps) or submits. A
recipe action expands into the env's own tool calls
(:func:`~ftdojo_gym.recipe_grid.recipe_actions`: fetch, filter, transform,
mix, set_config, train, evaluate), run one after another inside the same
episode; every experiment names its datasets with its own prefix (``x1_``,
``x2_``, ...), so experiments never overwrite each other's data, and the
training rows and config (hence the outcome-cache and table keys) are the
same as in a fresh episode.

    env = RecipeActions(gym.make("FTDojo/FinanceIQ-v0", mode="tabular"), max_experiments=8)

**Action**: ``MultiDiscrete([*grid.shape, 2])``: one index per factor of the
grid, then a submit flag; with the flag set, the factors are ignored and the
env submits the best validated run (ending the episode).

**Reward** (``reward=``): ``"validation"`` (default, for training policies)
is the improvement of the best validation score of the episode by this
experiment (``max(0, best_after - best_before)``, starting from 0), so an
episode's rewards add up to the best validation score it reached and the
hidden test never leaks into training; ``"hidden_test"`` is the env's own
reward, the submitted run's hidden-test score at the end (for evaluation
only). Either way the hidden-test score of the submission is in
``info["hidden_test_score"]`` when the episode ends.

**Episode end**: ``submit`` terminates; after ``max_experiments``
experiments (or when the env's budget runs out) the best validated run is
submitted and the episode is truncated.

**info** is the info of the experiment's last tool call, plus
``experiment`` (recipe, index, validation score, ok, error), ``tool_calls``,
``tokens_trained`` (this experiment), ``best_validation_score`` and, at the
end, ``hidden_test_score``. :attr:`experiments` lists the episode's
experiments (read by :class:`~ftdojo_gym.wrappers.NumericObservation`).

The env is read through public views only (``task``, ``outcome_table``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ftdojo_gym.observations import latest_result
from ftdojo_gym.recipe_grid import RecipeGrid, recipe_actions
from ftdojo_gym.results import EvaluationResult

REWARDS = ("validation", "hidden_test")
SUBMIT = {"tool": "submit", "args": {}}


@dataclass(frozen=True)
class Experiment:
    """One recipe tried in the episode: its grid index, recipe and validation score (None when it failed)."""

    index: tuple[int, ...]
    recipe: dict[str, Any]
    validation_score: float | None
    ok: bool
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "index": list(self.index)}


def grid_of(env: gym.Env, grid: RecipeGrid | Mapping[str, Any] | None = None) -> RecipeGrid:
    """``grid`` as a :class:`RecipeGrid`; by default the grid of the env's outcome table (tabular mode) or the default grid."""
    if isinstance(grid, RecipeGrid):
        return grid
    if grid is not None:
        return RecipeGrid.from_dict(grid)
    table = env.get_wrapper_attr("outcome_table")
    return RecipeGrid.from_dict(table.manifest["grid"]) if table is not None else RecipeGrid()


class RecipeActions(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """One step = one recipe experiment (or a submission); see the module docstring."""

    def __init__(self, env: gym.Env, grid: RecipeGrid | Mapping[str, Any] | None = None, *,
                 reward: str = "validation", max_experiments: int = 8):
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if max_experiments < 1:
            raise ValueError(f"max_experiments must be at least 1, got {max_experiments}")
        gym.utils.RecordConstructorArgs.__init__(self, grid=grid, reward=reward, max_experiments=max_experiments)
        gym.Wrapper.__init__(self, env)
        self.grid = grid_of(env, grid)
        self.reward_mode = reward
        self.max_experiments = int(max_experiments)
        self.action_space = spaces.MultiDiscrete([*self.grid.shape, 2])
        self.experiments: list[Experiment] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.action_space.seed(seed)
        self.experiments = []
        return self.env.reset(seed=seed, options=options)

    @property
    def best_validation_score(self) -> float:
        """The best validation score of this episode's experiments (0 before any)."""
        return max((e.validation_score for e in self.experiments if e.validation_score is not None), default=0.0)

    def recipe_at(self, action: Sequence[int]) -> tuple[tuple[int, ...], dict[str, Any], bool]:
        """``(grid index, recipe, submit flag)`` of an action."""
        a = np.asarray(action, dtype=np.int64).reshape(-1)
        if a.shape != self.action_space.shape or not self.action_space.contains(a):
            raise ValueError(f"action {a.tolist()} is not in {self.action_space}")
        index = tuple(int(i) for i in a[:-1])
        return index, self.grid.recipe(index), bool(a[-1])

    def step(self, action: Any):
        index, recipe, submit = self.recipe_at(action)
        before = self.best_validation_score
        if submit:
            obs, env_reward, terminated, truncated, info = self.env.step(SUBMIT)
            info = {**info, "tool_calls": 1, "tokens_trained": 0}
        else:
            obs, env_reward, terminated, truncated, info = self._experiment(index, recipe)
            if not (terminated or truncated) and len(self.experiments) >= self.max_experiments:
                # Out of experiments: submit the best validated run, as the env does when its budget runs out.
                experiment_info = info
                obs, env_reward, _, _, info = self.env.step(SUBMIT)
                info = {**info, "experiment": experiment_info["experiment"], "tool_calls": experiment_info["tool_calls"] + 1,
                        "tokens_trained": experiment_info["tokens_trained"]}
                terminated, truncated = False, True
        info["best_validation_score"] = self.best_validation_score
        if terminated or truncated:
            submission = info.get("submission") or {}
            info["hidden_test_score"] = submission.get("hidden_test_score")
        if self.reward_mode == "validation":
            reward = self.best_validation_score - before
        else:
            reward = float(env_reward)
        return obs, float(reward), terminated, truncated, info

    def _experiment(self, index: tuple[int, ...], recipe: dict[str, Any]):
        """Run one recipe's tool calls; stop at the first failure or at the end of the episode."""
        task = self.env.get_wrapper_attr("task")
        calls = recipe_actions(task, self.grid, recipe, prefix=f"x{len(self.experiments) + 1}_")
        tokens = sent = 0
        score, error = None, ""
        for call in calls:
            obs, reward, terminated, truncated, info = self.env.step(call)
            sent += 1
            tokens += info.get("accounting", {}).get("tokens_trained", 0)
            result = latest_result(info)
            if not info["ok"]:
                error = f"{call['tool']}: {result.render()[:300] if result is not None else 'failed'}"
            elif isinstance(result, EvaluationResult):
                score = float(result.score)
            if terminated or truncated or not info["ok"]:
                break
        experiment = Experiment(index, dict(recipe), score, ok=score is not None, error=error)
        self.experiments.append(experiment)
        info = {**info, "experiment": experiment.to_dict(), "tool_calls": sent, "tokens_trained": tokens}
        return obs, reward, terminated, truncated, info

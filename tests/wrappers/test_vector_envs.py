"""Vector envs: ``gym.make_vec(id, num_envs=N, vectorization_mode="async", ...)`` in tabular mode (behind the
recipe wrappers) and in live mode, where envs in several processes share one outcome cache."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np

import ftdojo_gym  # noqa: F401
from ftdojo_gym.outcome_table import OutcomeTable
from ftdojo_gym.recipe_grid import RecipeGrid, recipe_actions
from ftdojo_gym.tasks import make_task
from ftdojo_gym.wrappers import NumericObservation, RecipeActions

TASK = "FTDojo/FinanceIQ-v0"


def test_async_tabular_envs_behind_the_recipe_wrappers(toy_table):
    table = OutcomeTable.load(toy_table)
    grid = RecipeGrid.from_dict(table.manifest["grid"])
    envs = gym.make_vec(TASK, num_envs=3, vectorization_mode="async", base_model="tiny", eval_limit=2, mode="tabular",
                        outcome_table=str(toy_table),
                        wrappers=[functools.partial(RecipeActions, max_experiments=2), NumericObservation])
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (3, *envs.single_observation_space.shape)
        envs.action_space.seed(0)
        for _ in range(2):
            actions = envs.action_space.sample()
            actions[:, -1] = 0  # experiments, no submission
            obs, rewards, terminated, truncated, infos = envs.step(actions)
        assert truncated.all() and not terminated.any()  # two experiments each, then the best validated run
        assert np.isfinite(rewards).all() and "hidden_test_score" in infos
        assert len(grid.shape) + 1 == envs.single_action_space.shape[0]
    finally:
        envs.close()


def test_async_live_envs_share_the_outcome_cache(tmp_path, tiny_model):
    cache = tmp_path / "outcomes.sqlite"
    grid = RecipeGrid(data=("expert",), curate=(False,), learning_rate=(1e-3,), max_steps=(1,), samples=32)
    actions = recipe_actions(make_task(TASK), grid, next(grid.recipes()))
    envs = gym.make_vec(TASK, num_envs=2, vectorization_mode="async", base_model="tiny", eval_limit=2,
                        outcome_cache=str(cache))
    try:
        envs.reset(seed=0)
        cached = []
        for env_index in (0, 1):  # env 0 trains and evaluates for real; env 1, in another process, replays
            for action in actions:
                noop = {"tool": "inspect", "args": {}}
                *_, infos = envs.step(tuple(action if i == env_index else noop for i in range(2)))
                assert infos["ok"][env_index], infos["result"]
                if action["tool"] in ("train", "evaluate"):
                    cached.append(bool(infos["cached"][env_index]))
        assert cached == [False, False, True, True]
    finally:
        envs.close()

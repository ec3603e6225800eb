"""RecipeActions and NumericObservation over a tabular env: the env checkers accept them, a step is one
experiment with its own datasets (the table's keys unchanged), rewards come from validation scores only,
and data operations repeated in an env are served from its memo with identical results."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import ftdojo_gym  # noqa: F401
from ftdojo_gym.outcome_table import OutcomeTable
from ftdojo_gym.recipe_grid import RecipeGrid, recipe_actions
from ftdojo_gym.wrappers import NumericObservation, RecipeActions

TASK = "FTDojo/FinanceIQ-v0"


def _env(table, **kw):
    return gym.make(TASK, base_model="tiny", eval_limit=2, mode="tabular", outcome_table=str(table), **kw)


def _index(grid: RecipeGrid, recipe: dict) -> list[int]:
    return [list(values).index(recipe[name]) for name, values in grid.factors.items()]


def test_gymnasium_and_sb3_env_checkers_pass(toy_table):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = NumericObservation(RecipeActions(_env(toy_table), max_experiments=3))
    try:
        assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
        assert env.action_space.nvec.tolist() == [*RecipeGrid.from_dict(OutcomeTable.load(toy_table).manifest["grid"]).shape, 2]
        assert env.observation_space.shape == (len(env.feature_names),)
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    finally:
        env.close()


def test_each_step_is_one_experiment_with_its_own_datasets_and_the_tables_outcome(toy_table):
    table = OutcomeTable.load(toy_table)
    grid = RecipeGrid.from_dict(table.manifest["grid"])
    entries = list(table)
    env = RecipeActions(_env(toy_table), max_experiments=5)
    try:
        env.reset(seed=0)
        chosen = [entries[0], entries[-1], entries[0]]
        for entry in chosen:
            _, reward, terminated, truncated, info = env.step([*_index(grid, entry.recipe), 0])
            assert not (terminated or truncated) and info["ok"]
            assert info["experiment"]["validation_score"] == entry.validation["score"]
            assert info["tool_calls"] == len(recipe_actions(env.get_wrapper_attr("task"), grid, entry.recipe))
        runs = env.get_wrapper_attr("runs")
        assert [r.dataset for r in runs.values()] == ["x1_train_mix", "x2_train_mix", "x3_train_mix"]
        # the prefixes change names only: the runs hash to the table's keys
        assert [r.cache_key for r in runs.values()] == [e.key for e in chosen]
        lineage = env.get_wrapper_attr("lineage")
        assert lineage["x1_train_mix"] == lineage["x3_train_mix"] != lineage["x2_train_mix"]
        datasets = env.get_wrapper_attr("workspace").datasets
        assert {f"x{n}_train_mix" for n in (1, 2, 3)} <= set(datasets)
        _, _, terminated, _, info = env.step([0] * len(grid.shape) + [1])  # submit flag
        best = max(chosen, key=lambda e: e.validation["score"])
        assert terminated and info["hidden_test_score"] == best.hidden_test["score"]
    finally:
        env.close()


def test_rewards_are_validation_improvements_and_max_experiments_truncates(toy_table):
    table = OutcomeTable.load(toy_table)
    grid = RecipeGrid.from_dict(table.manifest["grid"])
    entries = list(table)
    for mode in ("validation", "hidden_test"):
        env = RecipeActions(_env(toy_table), reward=mode, max_experiments=2)
        try:
            env.reset(seed=0)
            rewards = []
            for entry in entries[:2]:
                _, reward, terminated, truncated, info = env.step([*_index(grid, entry.recipe), 0])
                rewards.append(reward)
            assert truncated and not terminated  # out of experiments: the env submitted the best validated run
            best = max(entries[:2], key=lambda e: e.validation["score"])
            assert info["hidden_test_score"] == best.hidden_test["score"]
            if mode == "validation":
                assert sum(rewards) == pytest.approx(max(e.validation["score"] for e in entries[:2]))
            else:
                assert rewards == [0.0, best.hidden_test["score"]]
        finally:
            env.close()
    with pytest.raises(ValueError, match="reward"):
        RecipeActions(_env(toy_table), reward="test")


def test_numeric_observation_tracks_experiments(toy_table):
    table = OutcomeTable.load(toy_table)
    grid = RecipeGrid.from_dict(table.manifest["grid"])
    env = NumericObservation(RecipeActions(_env(toy_table), max_experiments=4))
    try:
        obs, _ = env.reset(seed=0)
        names = env.feature_names
        assert obs.dtype == np.float32 and env.observation_space.contains(obs)
        assert obs[names.index("val_score_0_ago")] == -1 and obs[names.index("task=FinanceIQ")] == 1
        entry = next(iter(table))
        obs, *_ = env.step([*_index(grid, entry.recipe), 0])
        assert obs[names.index("val_score_0_ago")] == pytest.approx(entry.validation["score"])
        assert obs[names.index(f"best_val_data={entry.recipe['data']}")] == pytest.approx(entry.validation["score"])
        assert obs[names.index("experiments_used_frac")] == pytest.approx(0.25)
    finally:
        env.close()


def test_repeated_data_operations_come_from_the_memo_with_identical_results(toy_table):
    table = OutcomeTable.load(toy_table)
    grid = RecipeGrid.from_dict(table.manifest["grid"])
    recipe = next(e.recipe for e in table if e.recipe["curate"])  # fetch, filter (dropping rows), transform, mix
    env = _env(toy_table)
    try:
        env.reset(seed=0)
        task = env.unwrapped.task
        results = {}
        for prefix in ("a_", "b_"):
            infos = [env.step(a)[-1] for a in recipe_actions(task, grid, recipe, prefix=prefix)]
            assert all(info["ok"] for info in infos)
            results[prefix] = [json.dumps(i["result"]).replace(f'"{prefix}', '"P_') for i in infos
                               if i["tool"] in ("fetch", "filter", "transform", "mix")]
        assert len(env.unwrapped._data_memo) > 0
        assert results["a_"] == results["b_"]  # rows, dropped counts, first samples: all the same
        folder = env.get_wrapper_attr("workdir") / "datasets"
        for a in sorted(folder.glob("a_*.jsonl")):
            assert a.read_bytes() == (folder / a.name.replace("a_", "b_", 1)).read_bytes()
        runs = list(env.get_wrapper_attr("runs").values())
        assert runs[0].cache_key == runs[1].cache_key
        # a fresh env (empty memo) computes the same rows
        other = _env(toy_table)
        try:
            other.reset(seed=0)
            for a in recipe_actions(task, grid, recipe, prefix="a_"):
                other.step(a)
            for a in sorted(folder.glob("a_*.jsonl")):
                assert a.read_bytes() == (other.get_wrapper_attr("workdir") / "datasets" / a.name).read_bytes()
        finally:
            other.close()
    finally:
        env.close()

"""The recipe-search baselines (TPE, random recipe) play tabular episodes through ``run_episode``, learn across
episodes (TPE), submit the best validated run, and play a live episode on the tiny model."""

from __future__ import annotations

import gymnasium as gym
import pytest

import ftdojo_agents as agents
import ftdojo_gym  # noqa: F401
from ftdojo_agents.episode import run_episode
from ftdojo_gym.outcome_table import OutcomeTable

TASK = "FTDojo/FinanceIQ-v0"


@pytest.fixture(scope="module")
def toy_table(tiny_model):
    from ftdojo_benchmarks.rl_figures import toy_table

    return toy_table(TASK)


@pytest.mark.parametrize("name", ["tpe", "random-recipe"])
def test_recipe_search_plays_tabular_episodes(name, toy_table):
    table = OutcomeTable.load(toy_table)
    by_recipe = {str(sorted(e.recipe.items())): e for e in table}
    agent = agents.make(name, grid=str(toy_table), experiments=3, seed=0)
    env = gym.make(TASK, base_model="tiny", eval_limit=2, mode="tabular", outcome_table=str(toy_table))
    try:
        for episode in range(3):
            result = run_episode(env, agent, seed=episode)
            assert result.terminated and result.submission is not None
            assert len(agent.experiments) == 3 and all(e.ok for e in agent.experiments)
            best = max(agent.experiments, key=lambda e: e.validation_score)
            assert result.submission["validation_score"] == best.validation_score
            assert result.submission["hidden_test_score"] in {by_recipe[str(sorted(e.recipe.items()))].hidden_test["score"]
                                                              for e in agent.experiments}
        if name == "tpe":
            assert len(agent.study.trials) == 9
            best_params = agent.study.best_trial.params
            assert agent.study.trials[3].params == best_params or agent.study.trials[6].params == best_params
    finally:
        env.close()


def test_tpe_plays_a_live_episode(toy_table):
    agent = agents.make("tpe", grid=str(toy_table), experiments=1, seed=0)
    env = gym.make(TASK, base_model="tiny", eval_limit=2)
    try:
        result = run_episode(env, agent, seed=0)
        assert result.terminated and result.submission is not None and len(agent.experiments) == 1
        assert agent.experiments[0].ok
    finally:
        env.close()

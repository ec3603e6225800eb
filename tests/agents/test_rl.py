"""RL over recipe experiments: the CleanRL-style PPO and the stable-baselines3 example train on a toy table,
save a policy with a learning curve, and the policy plays as an agent (tabular and live, tiny model)."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import ftdojo_agents as agents
import ftdojo_gym  # noqa: F401
from ftdojo_agents.episode import run_episode
from ftdojo_agents.rl import ppo

TASK = "FTDojo/FinanceIQ-v0"


@pytest.fixture(scope="module")
def toy_table(tiny_model):
    from ftdojo_benchmarks.rl_figures import toy_table

    return toy_table(TASK)


def _play(path, toy_table):
    agent = agents.make("rl-policy", path=str(path))
    tabular = gym.make(TASK, base_model="tiny", eval_limit=2, mode="tabular", outcome_table=str(toy_table))
    try:
        result = run_episode(tabular, agent, seed=0)
        assert result.submission is not None and len(agent.experiments) <= 2
    finally:
        tabular.close()
    live = gym.make(TASK, base_model="tiny", eval_limit=2)
    try:
        result = run_episode(live, agent, seed=0)
        assert result.submission is not None and all(e.ok for e in agent.experiments)
    finally:
        live.close()


def test_cleanrl_ppo_trains_saves_and_plays(toy_table, tmp_path):
    args = ppo.Args(env_id=TASK, outcome_table=str(toy_table), base_model="tiny", eval_limit=2, max_experiments=2,
                    num_envs=2, num_steps=16, total_timesteps=256, out=str(tmp_path))
    curve = ppo.train(args)
    assert len(curve["episode"]) > 10 and len(curve["hidden_test"]) == len(curve["episode"])
    assert (tmp_path / "policy.pt").is_file() and (tmp_path / "curve.png").stat().st_size > 0
    assert json.loads((tmp_path / "curve.json").read_text()) == curve
    _play(tmp_path / "policy.pt", toy_table)


def test_sb3_example_trains_saves_and_plays(toy_table, tmp_path):
    from ftdojo_agents.rl import sb3_example

    curve = sb3_example.main(["--env-id", TASK, "--outcome-table", str(toy_table), "--base-model", "tiny",
                              "--eval-limit", "2", "--max-experiments", "2", "--num-envs", "2", "--n-steps", "16",
                              "--total-timesteps", "128", "--out", str(tmp_path)])
    assert curve["episode"] and (tmp_path / "policy.zip").is_file() and (tmp_path / "curve.png").is_file()
    _play(tmp_path / "policy.zip", toy_table)


def test_rl_policy_needs_a_path():
    agent = agents.make("rl-policy")  # listed in the registry without one
    with pytest.raises(ValueError, match="path"):
        agent.reset({"task": "FinanceIQ", "env_id": TASK})

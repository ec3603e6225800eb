"""Real fine-tuning of SmolLM2-135M through the env (minutes on CPU)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import ftdojo_gym  # noqa: F401
from ftdojo_agents.manual_sft import ManualSFTAgent
from ftdojo_gym.recipes import task_recipes


@pytest.mark.slow
def test_lora_on_a_learnable_subset_raises_validation_and_hidden_test_scores(smollm2_model, isolated_cache, tmp_path):
    env = gym.make("FTDojo/TableBench-NumericalReasoning-v0", base_model="smollm2-135m", eval_limit=24,
                   workdir=tmp_path)
    task = env.unwrapped.task
    agent = ManualSFTAgent(max_steps=24, batch_size=8, samples=400)
    recipes = task_recipes(task)
    agent.reset({"task": task.name, "clean_sources": recipes.clean_sources, "expert_template": recipes.expert_template})
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        assert info["ok"], info
        done = terminated or truncated
    unwrapped = env.unwrapped
    base_val = unwrapped.evaluations["base"].score
    sub = info["submission"]
    assert sub["run"].startswith("run")
    assert sub["validation_score"] >= base_val + 0.25, (base_val, sub)
    assert sub["hidden_test_score"] >= sub["base_hidden_test_score"] + 0.2, sub
    debug = [r for r in unwrapped.runs.values() if r.debug]
    assert debug and debug[0].train_tokens < 0.25 * unwrapped.runs[sub["run"]].train_tokens
    env.close()

"""The random agent samples schema-valid calls; the env survives them."""

from __future__ import annotations

import ftdojo_agents as agents
from ftdojo_agents.episode import run_episode
from ftdojo_agents.random_agent import RandomAgent


def test_random_agent_actions_are_valid(tiny_env) -> None:
    agent = agents.make("random", seed=3, submit_after=8)
    result = run_episode(tiny_env, agent, seed=0)
    assert result.agent_errors == 0 and (result.terminated or result.truncated)
    assert all(tiny_env.action_space.contains(r.action) for r in result.records)
    assert 1 <= result.steps <= 9


def test_grounded_random_agent_uses_real_names(tiny_env) -> None:
    agent = RandomAgent(seed=1, grounded=True, submit_after=6)
    result = run_episode(tiny_env, agent, seed=0)
    assert all(tiny_env.action_space.contains(r.action) for r in result.records)
    assert result.records[0].action["tool"] == "list_sources" or agent._sources
    fetches = [r for r in result.records if r.action["tool"] == "fetch"]
    assert all(r.action["args"]["source"] in agent._sources for r in fetches)

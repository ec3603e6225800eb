"""Fixtures of the agent tests: a scripted OpenAI-compatible server on 127.0.0.1
(:mod:`agents.scripted_server`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ftdojo_agents.scripted_server import OpenAITestServer


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    """A fresh scripted server per test."""
    with OpenAITestServer() as srv:
        yield srv


@pytest.fixture
def fast_llm_kwargs() -> dict:
    """Client settings that make retries and timeouts quick in tests."""
    return {"model": "scripted", "timeout": 1.0, "max_retries": 0, "attempts": 3, "backoff_s": 0.05,
            "backoff_max_s": 0.1}


@pytest.fixture
def fast_train() -> dict:
    """Training settings of agent tests on the tiny model: a couple of optimizer steps."""
    return {"max_steps": 2, "batch_size": 2, "max_len": 128}


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory: pytest.TempPathFactory):
    """One real env for the agent tests (tiny model, 2 validation items, 30 steps), reset per episode.

    Shared because its training worker and raw data take seconds to start;
    every ``reset`` starts a fresh episode workspace.
    """
    import gymnasium as gym

    import ftdojo_gym  # noqa: F401  (registers the envs)

    env = gym.make("FTDojo/TableBench-v0", base_model="tiny", eval_limit=2, max_episode_steps=30,
                   workdir=tmp_path_factory.mktemp("agent-env"))
    yield env
    env.close()

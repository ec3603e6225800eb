"""Every registered agent builds through ``agents.make`` and follows the protocol."""

from __future__ import annotations

import pytest

import ftdojo_agents as agents
from ftdojo_agents.base import _REGISTRY


@pytest.mark.parametrize("name", sorted(_REGISTRY))
def test_make_every_agent(name: str) -> None:
    kwargs = {"base_url": "http://127.0.0.1:9/v1", "model": "m"} if name in ("ft-agent", "react", "openhands-like") else {}
    agent = agents.make(name, **kwargs)
    assert callable(agent.reset) and callable(agent.act) and agent.name


def test_unknown_agent() -> None:
    with pytest.raises(ValueError, match="known"):
        agents.make("gpt-agent")

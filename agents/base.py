"""The agent protocol and the agent registry."""

from __future__ import annotations

from typing import Any, Protocol


class Agent(Protocol):
    """An FT-Dojo agent. ``act`` returns one tool call per env step."""

    name: str

    def reset(self, task_info: dict[str, Any]) -> None: ...

    def act(self, observation: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]: ...


_REGISTRY = {
    "manual-sft": "ftdojo_agents.manual_sft:ManualSFTAgent",
    "react": "ftdojo_agents.react:ReActAgent",
    "openhands-like": "ftdojo_agents.react:ReActAgent",
    "random": "ftdojo_agents.random_agent:RandomAgent",
    "ft-agent": "ftdojo_agents.ft_agent:FTAgent",
    "tpe": "ftdojo_agents.tpe:TPEAgent",
    "random-recipe": "ftdojo_agents.recipe_search:RandomRecipeAgent",
    "rl-policy": "ftdojo_agents.rl.policy_agent:RLPolicyAgent",
}


def names() -> list[str]:
    """The registered agent names (what :func:`make` and ``ftdojo run --agent`` accept)."""
    return sorted(_REGISTRY)


def make(name: str, **kwargs: Any) -> Agent:
    """Build an agent by name (``"manual-sft"``, ...)."""
    import importlib

    if name not in _REGISTRY:
        raise ValueError(f"unknown agent {name!r}; known: {sorted(_REGISTRY)}")
    module, _, attr = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)

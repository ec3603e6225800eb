"""Agents that play FT-Dojo envs through ``reset``/``step``.

Every agent follows :class:`ftdojo_agents.base.Agent`: ``reset(task_info)`` then
``act(observation, info) -> action`` until the episode ends.
"""

from ftdojo_agents.base import Agent, make, names

__all__ = ["Agent", "make", "names"]

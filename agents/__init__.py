"""Agents that play FT-Dojo envs through ``reset``/``step``.

Every agent follows :class:`agents.base.Agent`: ``reset(task_info)`` then
``act(observation, info) -> action`` until the episode ends.
"""

from ftdojo_agents.base import Agent, make

__all__ = ["Agent", "make"]

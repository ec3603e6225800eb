"""``gym.make(id, max_episode_steps=N)`` as the env's own step limit.

Gymnasium's ``make`` keeps ``max_episode_steps`` for its ``TimeLimit`` wrapper
and never passes it to the env. An FT-Dojo episode that ends by its step limit
must still submit the best validated run and report the steps left in its
budget vector, so the limit has to be the env's own. Every FT-Dojo id is
registered with this wrapper as an additional wrapper: ``make`` applies it
after ``TimeLimit``; it reads the limit from the ``TimeLimit`` below it and
hands it to the env. Both then end the episode at the same step, the env
with a submission.
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.wrappers import TimeLimit


class MakeStepLimit(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Passes the ``max_episode_steps`` given to ``gym.make`` to the env (a no-op without one)."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        inner = env
        while isinstance(inner, gym.Wrapper):
            if isinstance(inner, TimeLimit):
                limit = inner.spec.max_episode_steps if inner.spec is not None else None
                if limit is not None:
                    self.unwrapped.set_max_episode_steps(limit)
                break
            inner = inner.env

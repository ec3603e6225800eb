"""Registers every task of :data:`ftdojo_gym.tasks.TASK_CATALOGUE` with Gymnasium, in one loop,
and :func:`make`: ``gymnasium.make`` that names the closest FT-Dojo ids for a mistyped one."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from ftdojo_gym.tasks import TASK_CATALOGUE, closest_ids

ENTRY_POINT = "ftdojo_gym.env:FTDojoEnv"
STEP_LIMIT_WRAPPER = gym.envs.registration.WrapperSpec(
    name="MakeStepLimit", entry_point="ftdojo_gym.wrappers.step_limit:MakeStepLimit", kwargs={})


def register_envs() -> None:
    """Register all FT-Dojo env ids (idempotent)."""
    for entry in TASK_CATALOGUE:
        if entry.env_id in gym.registry:
            continue
        # Training wall-clock and floating-point numerics vary run to run, so the
        # env is declared non-deterministic; data, splits and grading are seeded.
        gym.register(
            id=entry.env_id,
            entry_point=ENTRY_POINT,
            kwargs={"task": entry.task_name},
            nondeterministic=True,
            disable_env_checker=False,
            # gym.make(id, max_episode_steps=N) becomes the env's own step limit (see the wrapper's docstring).
            additional_wrappers=(STEP_LIMIT_WRAPPER,),
        )


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)``; for an id that is not registered, the
    same error type with Gymnasium's message plus the closest FT-Dojo ids.

    Gymnasium's own message suggests at most one name, case-sensitively, within
    the namespace typed (``FTDojo/aime-v0`` or ``TableBench-v0`` get none); this
    matches case-insensitively, the ``FTDojo/`` namespace optional. Ids far from
    every FT-Dojo id (``CartPol-v1``) get Gymnasium's error unchanged.
    """
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        name = env_id.split(":", 1)[-1]
        close = [] if name in gym.registry else closest_ids(name)
        if not close:
            raise
        raise type(exc)(f"{exc} Closest FT-Dojo ids: {', '.join(close)}.") from exc

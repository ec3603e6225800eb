"""Registers every task of :data:`ftdojo_gym.tasks.TASK_CATALOGUE` with Gymnasium, in one loop."""

from __future__ import annotations

import functools

import gymnasium as gym
import gymnasium.envs.registration as gym_registration

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
    _add_closest_ids_to_lookup_errors()


def _add_closest_ids_to_lookup_errors() -> None:
    """Make ``gym.make`` of a mistyped FT-Dojo id list the closest registered ids.

    Gymnasium's own message suggests at most one name, case-sensitively, within
    the namespace typed (``FTDojo/aime-v0`` or ``TableBench-v0`` get none). We
    wrap its spec lookup so that, when it fails, the same error type carries
    Gymnasium's message plus the closest FT-Dojo ids. Other ids are untouched.
    """
    find_spec = gym_registration._find_spec
    if getattr(find_spec, "_ftdojo_wrapped", False):
        return

    @functools.wraps(find_spec)
    def find_spec_with_hint(env_id: str):
        try:
            return find_spec(env_id)
        except gym.error.Error as exc:
            name = env_id.split(":", 1)[-1]
            close = closest_ids(name)
            if not close:
                raise
            raise type(exc)(f"{exc} Closest FT-Dojo ids: {', '.join(close)}.") from exc

    find_spec_with_hint._ftdojo_wrapped = True  # type: ignore[attr-defined]
    gym_registration._find_spec = find_spec_with_hint

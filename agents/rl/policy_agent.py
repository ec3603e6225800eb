"""A trained recipe policy as an agent: ``ftdojo_agents.make("rl-policy", path=...)``.

The policy was trained in tabular mode behind :class:`ftdojo_gym.wrappers.RecipeActions`
and :class:`ftdojo_gym.wrappers.NumericObservation`; this agent plays the raw
env (live or tabular) the same way: at each decision it encodes the
observation with the same :class:`~ftdojo_gym.wrappers.ObservationEncoder`,
asks the policy for a recipe (or submit) and sends the recipe's tool calls.
``path`` is a ``policy.pt`` written by :mod:`ftdojo_agents.rl.ppo` or a
stable-baselines3 ``.zip`` written by :mod:`ftdojo_agents.rl.sb3_example`
(with its ``.json`` beside it). ``deterministic`` plays the most likely action.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ftdojo_agents.recipe_search import RecipeSearchAgent
from ftdojo_gym.tasks.base import Task
from ftdojo_gym.wrappers.numeric_observation import ObservationEncoder


class RLPolicyAgent(RecipeSearchAgent):
    """Plays a saved recipe policy (see the module docstring)."""

    name = "rl-policy"

    def __init__(self, *, path: str | Path | None = None, deterministic: bool = True, seed: int = 0):
        self.path = Path(path) if path is not None else None
        self.deterministic = deterministic
        self._predict = None
        meta: dict[str, Any] = {"grid": None, "max_experiments": 4, "history": 4}
        if self.path is not None:
            self._predict, meta = _load(self.path, deterministic)
        super().__init__(grid=meta["grid"], experiments=int(meta["max_experiments"]), seed=seed)
        self.history = int(meta.get("history", 4))
        self.encoder: ObservationEncoder | None = None

    def task_changed(self, task: Task) -> None:
        if self._predict is None:
            raise ValueError("rl-policy needs the path of a trained policy: make('rl-policy', path=...)")
        self.encoder = ObservationEncoder(task, self.grid, self.max_experiments, self.history)

    def start(self, observation: dict[str, Any]) -> None:
        assert self.encoder is not None
        self.encoder.start(observation)

    def choose(self, observation: dict[str, Any]) -> tuple[int, ...] | None:
        assert self.encoder is not None and self._predict is not None
        action = np.asarray(self._predict(self.encoder.encode(observation, self.experiments))).reshape(-1)
        return None if action[-1] else tuple(int(a) for a in action[:-1])


def _load(path: Path, deterministic: bool):
    """``(predict(obs) -> action, metadata)`` of a saved policy."""
    if path.suffix == ".zip":
        from stable_baselines3 import PPO

        model = PPO.load(path, device="cpu")
        meta = json.loads(path.with_suffix(".json").read_text())
        return (lambda obs: model.predict(obs, deterministic=deterministic)[0]), meta
    import torch

    from ftdojo_agents.rl.ppo import load

    policy, meta = load(path)

    def predict(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            action, *_ = policy.action_and_value(torch.as_tensor(obs[None], dtype=torch.float32), greedy=deterministic)
        return action[0].numpy()

    return predict, meta

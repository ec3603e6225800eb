"""The random agent: a floor for every score, and a fuzzer of the env.

Each step it samples a schema-valid tool call from the env's action space
(:class:`ftdojo_gym.actions.ToolCallSpace`, the same space as
``env.action_space``). Names in a sampled call are random strings, so most
data calls fail cleanly inside the env. With ``grounded=True``, name fields
are replaced by names that exist in the episode (sources from the catalogue,
datasets the agent created, runs it trained), so that random data operations,
configs and training runs actually happen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ftdojo_gym.actions import ToolCallSpace

# Argument fields that name an existing thing, by the kind of thing they name.
_SOURCE_FIELDS = {("fetch", "source")}
_DATASET_FIELDS = {("filter", "dataset"), ("transform", "dataset"), ("train", "dataset"), ("inspect", "name")}
_RUN_FIELDS = {("evaluate", "run"), ("submit", "run")}


class RandomAgent:
    """Samples valid tool calls; see the module docstring.

    ``seed`` makes the sequence reproducible (episode ``k`` uses ``seed + k``).
    ``submit_after`` forces a ``submit`` after that many steps (None: never).
    """

    name = "random"

    def __init__(self, *, seed: int = 0, grounded: bool = False, submit_after: int | None = None):
        self.seed = seed
        self.grounded = grounded
        self.submit_after = submit_after
        self._episodes = 0
        self.space = ToolCallSpace(seed=seed)
        self._rng = np.random.default_rng(seed)
        self._sources: list[str] = []
        self._datasets: list[str] = []
        self._runs: list[str] = []
        self._steps = 0

    def reset(self, task_info: dict[str, Any]) -> None:
        self.space = ToolCallSpace(seed=self.seed + self._episodes)
        self._rng = np.random.default_rng(self.seed + self._episodes)
        self._episodes += 1
        self._sources, self._datasets, self._runs = [], [], []
        self._steps = 0

    def act(self, observation: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        self._observe(info)
        self._steps += 1
        if self.submit_after is not None and self._steps > self.submit_after:
            return {"tool": "submit", "args": {}}
        action = self.space.sample()
        if self.grounded:
            action = self._ground(action)
        return action

    def _observe(self, info: dict[str, Any]) -> None:
        """Remember names the env reported (only used when grounded)."""
        result = info.get("result") or {}
        if not info.get("ok"):
            return
        for src in result.get("sources", []) or []:
            if isinstance(src, dict) and src.get("name") and src["name"] not in self._sources:
                self._sources.append(src["name"])
        name = result.get("dataset")
        if isinstance(name, str) and name not in self._datasets:
            self._datasets.append(name)
        run = result.get("run_id")
        if isinstance(run, str) and result.get("status") != "error" and run not in self._runs:
            self._runs.append(run)

    def _pick(self, names: list[str], fallback: Any) -> Any:
        return names[int(self._rng.integers(len(names)))] if names else fallback

    def _ground(self, action: dict[str, Any]) -> dict[str, Any]:
        tool, args = action["tool"], dict(action["args"])
        if tool != "list_sources" and not self._sources and self._rng.random() < 0.5:
            return {"tool": "list_sources", "args": {}}  # learn the names first
        for key in list(args):
            if (tool, key) in _SOURCE_FIELDS:
                args[key] = self._pick(self._sources, args[key])
            elif (tool, key) in _DATASET_FIELDS:
                args[key] = self._pick(self._datasets or self._sources, args[key])
            elif (tool, key) in _RUN_FIELDS:
                args[key] = self._pick(self._runs + ["base"], args[key])
        if tool == "mix":
            args["datasets"] = [{**c, "name": self._pick(self._datasets, c["name"])} for c in args["datasets"]]
        if tool == "train" and "dataset" not in args:
            args["dataset"] = self._pick(self._datasets, "train")
        return {"tool": tool, "args": args}

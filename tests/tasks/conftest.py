"""Shared by the task tests: each task built once, its items and sources made once per seed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasets import Dataset

from ftdojo_gym.tasks.base import EvalItem, Task


class CachedTask:
    """Builds of one task class, with their evaluation items and sources, each made once.

    ``task(*config)``, ``items(*config, seed)`` and ``sources(*config, seed)``:
    ``config`` is the first ``n_config`` positional arguments of ``factory`` (e.g.
    the subtask), ``seed`` defaults to ``seed``. Task generation takes seconds, so
    every test of a file shares these.
    """

    def __init__(self, factory: Callable[..., Task], *, seed: int, n_config: int = 0) -> None:
        self.factory, self.seed, self.n_config = factory, seed, n_config
        self._tasks: dict[tuple[Any, ...], Task] = {}
        self._items: dict[tuple[Any, ...], list[EvalItem]] = {}
        self._sources: dict[tuple[Any, ...], dict[str, Dataset]] = {}

    def _config_and_seed(self, args: tuple[Any, ...]) -> tuple[tuple[Any, ...], int]:
        if len(args) not in (self.n_config, self.n_config + 1):
            raise TypeError(f"expected {self.n_config} config argument(s) and an optional seed, got {args!r}")
        return args[: self.n_config], args[self.n_config] if len(args) > self.n_config else self.seed

    def task(self, *config: Any) -> Task:
        if config not in self._tasks:
            self._tasks[config] = self.factory(*config)
        return self._tasks[config]

    def items(self, *args: Any) -> list[EvalItem]:
        config, seed = self._config_and_seed(args)
        if (config, seed) not in self._items:
            self._items[config, seed] = self.task(*config).eval_items(seed)
        return self._items[config, seed]

    def sources(self, *args: Any) -> dict[str, Dataset]:
        config, seed = self._config_and_seed(args)
        if (config, seed) not in self._sources:
            self._sources[config, seed] = self.task(*config).sources(seed)
        return self._sources[config, seed]

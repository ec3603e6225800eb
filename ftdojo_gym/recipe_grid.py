"""A grid of fine-tuning recipes over a task, and their expansion into tool calls.

A recipe is one choice per factor of a :class:`RecipeGrid`: which data (the
task's expert sources, its harmful sources, or both), whether to curate it
(length filter, dedupe, non-empty rule), the learning rate and the number of
optimizer steps. :func:`recipe_actions` expands a recipe into the env's tool
calls (fetch, filter, transform, mix, set_config, train, evaluate), the same
calls for every user: the outcome-table builder runs them live, the
:class:`~ftdojo_gym.wrappers.RecipeActions` wrapper sends them for an RL
policy, and so the training rows and config hash to the same outcome-cache
key in both (:func:`ftdojo_gym.outcome_cache.run_key`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftdojo_gym.recipes import Recipe, task_recipes
from ftdojo_gym.tasks.base import Task

#: Data choices: which of the task's recipes supply the training pairs.
DATA_CHOICES = ("expert", "harmful", "expert+harmful")


@dataclass(frozen=True)
class RecipeGrid:
    """The factors of a recipe and their values (each recipe takes one value per factor)."""

    data: tuple[str, ...] = DATA_CHOICES
    curate: tuple[bool, ...] = (False, True)
    learning_rate: tuple[float, ...] = (3e-4, 3e-3)
    max_steps: tuple[int, ...] = (10, 30)
    #: fixed for every recipe
    samples: int = 320
    batch_size: int = 8
    max_len: int = 256
    lora_r: int = 16
    max_tokens: int = 384  # curation: drop rows longer than this
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def factors(self) -> dict[str, tuple]:
        return {"data": self.data, "curate": self.curate, "learning_rate": self.learning_rate,
                "max_steps": self.max_steps}

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of values per factor (a ``MultiDiscrete`` space's ``nvec``)."""
        return tuple(len(v) for v in self.factors.values())

    def __len__(self) -> int:
        n = 1
        for k in self.shape:
            n *= k
        return n

    def recipe(self, index: Sequence[int]) -> dict[str, Any]:
        """The recipe at ``index`` (one position per factor)."""
        if len(index) != len(self.shape) or any(not 0 <= int(i) < k for i, k in zip(index, self.shape, strict=True)):
            raise ValueError(f"recipe index {list(index)} is outside the grid {list(self.shape)}")
        return {name: values[int(i)] for (name, values), i in zip(self.factors.items(), index, strict=True)}

    def recipes(self) -> Iterator[dict[str, Any]]:
        """Every recipe of the grid, in index order."""
        for index in itertools.product(*(range(k) for k in self.shape)):
            yield self.recipe(index)

    def to_dict(self) -> dict[str, Any]:
        return {"data": list(self.data), "curate": list(self.curate), "learning_rate": list(self.learning_rate),
                "max_steps": list(self.max_steps), "samples": self.samples, "batch_size": self.batch_size,
                "max_len": self.max_len, "lora_r": self.lora_r, "max_tokens": self.max_tokens,
                "fixed": dict(self.fixed)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecipeGrid:
        return cls(data=tuple(d["data"]), curate=tuple(bool(c) for c in d["curate"]),
                   learning_rate=tuple(float(x) for x in d["learning_rate"]),
                   max_steps=tuple(int(x) for x in d["max_steps"]), samples=int(d["samples"]),
                   batch_size=int(d["batch_size"]), max_len=int(d["max_len"]), lora_r=int(d["lora_r"]),
                   max_tokens=int(d["max_tokens"]), fixed=dict(d.get("fixed", {})))


def recipe_templates(task: Task, data: str) -> Recipe:
    """The source templates a data choice uses on ``task``."""
    recipes = task_recipes(task)
    if recipes is None:
        raise ValueError(f"{task.name} declares no recipes (ftdojo_gym.recipes)")
    if data == "expert":
        return recipes.expert
    if data == "harmful":
        return recipes.harmful
    if data == "expert+harmful":
        return Recipe({**recipes.expert.templates, **recipes.harmful.templates})
    raise ValueError(f"unknown data choice {data!r}; choices: {DATA_CHOICES}")


def recipe_actions(task: Task, grid: RecipeGrid, recipe: Mapping[str, Any], *, evaluate: bool = True,
                   prefix: str = "") -> list[dict[str, Any]]:
    """The tool calls that train (and, with ``evaluate``, validate) ``recipe`` in a fresh episode.

    ``prefix`` starts the name of every dataset the calls make, so that several
    recipes run in one episode without overwriting each other's datasets; the
    training rows and config (hence the outcome-cache and table keys) are the
    same for every prefix."""
    templates = recipe_templates(task, recipe["data"]).templates
    if not templates:
        raise ValueError(f"{task.name} has no sources for data choice {recipe['data']!r}")
    actions: list[dict[str, Any]] = []
    parts = []
    for src, template in templates.items():
        fetched = f"{prefix}{src}"
        actions.append({"tool": "fetch", "args": {"source": src, **({"output": fetched} if prefix else {})}})
        if recipe["curate"]:
            actions.append({"tool": "filter", "args": {"dataset": fetched, "max_tokens": grid.max_tokens,
                                                       "dedupe": True, "rules": ["non_empty"]}})
        actions.append({"tool": "transform", "args": {"dataset": fetched, "prompt_template": template["prompt"],
                                                      "completion_template": template["completion"],
                                                      "output": f"{fetched}_sft"}})
        parts.append({"name": f"{fetched}_sft", "weight": 1.0})
    actions.append({"tool": "mix", "args": {"datasets": parts, "n": grid.samples, "output": f"{prefix}train_mix",
                                            "seed": 0}})
    config = {"method": "lora", "learning_rate": float(recipe["learning_rate"]), "lr_scheduler": "linear",
              "warmup_ratio": 0.0, "max_steps": int(recipe["max_steps"]), "batch_size": grid.batch_size,
              "max_len": grid.max_len, "lora_r": grid.lora_r, "lora_alpha": 2 * grid.lora_r, "seed": 0,
              **grid.fixed}
    actions.append({"tool": "set_config", "args": config})
    actions.append({"tool": "train", "args": {"dataset": f"{prefix}train_mix"}})
    if evaluate:
        actions.append({"tool": "evaluate", "args": {}})
    return actions


def describe(recipe: Mapping[str, Any]) -> str:
    """One line naming a recipe."""
    return (f"data={recipe['data']} curate={'yes' if recipe['curate'] else 'no'} "
            f"lr={recipe['learning_rate']:g} steps={recipe['max_steps']}")

"""The paper's "Manual SFT" row: a fixed expert recipe (:mod:`ftdojo_gym.recipes`), scripted.

It fetches the task's clean sources, drops over-long rows and near-duplicates,
maps them into the evaluation prompt format with the task's expert template,
sets a standard LoRA config, makes a fail-fast debug run, trains, evaluates and
submits. No search, no iteration: the baseline that a careful human would run
first.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ftdojo_gym.recipes import Recipe, TaskRecipes
from ftdojo_gym.rules import MAX_TRAIN_SAMPLES


class ManualSFTAgent:
    name = "manual-sft"

    def __init__(self, *, max_steps: int = 40, learning_rate: float = 1e-3, batch_size: int = 8,
                 lora_r: int = 16, max_len: int = 512, max_tokens: int = 512, samples: int = MAX_TRAIN_SAMPLES,
                 evaluate_base: bool = True, curate: bool = True):
        self.config = {"method": "lora", "learning_rate": learning_rate, "lr_scheduler": "linear",
                       "warmup_ratio": 0.05, "max_steps": max_steps, "batch_size": batch_size,
                       "max_len": max_len, "lora_r": lora_r, "lora_alpha": 2 * lora_r}
        self.max_tokens = max_tokens
        self.samples = samples
        self.evaluate_base = evaluate_base
        self.curate = curate
        self._plan: deque[dict[str, Any]] = deque()

    def reset(self, task_info: dict[str, Any]) -> None:
        """``task_info`` names ``clean_sources`` and ``expert_template`` (the expert recipe
        of :class:`ftdojo_gym.recipes.TaskRecipes`), or a ``recipe``
        ``{source: {"prompt": ..., "completion": ...}}`` (:attr:`Recipe.templates`,
        e.g. the harmful recipe) that replaces both."""
        if task_info.get("recipe"):
            recipe = Recipe(task_info["recipe"])
        else:
            recipe = TaskRecipes(task_info["clean_sources"], task_info["expert_template"]).expert
        plan: list[dict[str, Any]] = [{"tool": "list_sources", "args": {}}]
        parts = []
        for src, template in recipe.templates.items():
            plan.append({"tool": "fetch", "args": {"source": src}})
            if self.curate:
                plan.append({"tool": "filter", "args": {"dataset": src, "max_tokens": self.max_tokens,
                                                        "dedupe": True, "rules": ["non_empty"]}})
            plan += [
                {"tool": "transform", "args": {"dataset": src, "prompt_template": template["prompt"],
                                               "completion_template": template["completion"], "output": f"{src}_sft"}},
            ]
            parts.append({"name": f"{src}_sft", "weight": 1.0})
        plan.append({"tool": "mix", "args": {"datasets": parts, "n": self.samples, "output": "train_mix", "seed": 0}})
        plan.append({"tool": "set_config", "args": self.config})
        if self.evaluate_base:
            plan.append({"tool": "evaluate", "args": {"run": "base"}})
        plan += [
            {"tool": "train", "args": {"dataset": "train_mix", "debug": True}},
            {"tool": "train", "args": {"dataset": "train_mix"}},
            {"tool": "evaluate", "args": {}},
            {"tool": "submit", "args": {}},
        ]
        self._plan = deque(plan)

    def act(self, observation: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        if info.get("tool") == "train" and not info.get("ok", True):
            # A failed run leaves nothing to evaluate: submit what is best so far.
            self._plan = deque([{"tool": "submit", "args": {}}])
        return self._plan.popleft() if self._plan else {"tool": "submit", "args": {}}

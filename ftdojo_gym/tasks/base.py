"""The task contract: what every FT-Dojo task provides to the env.

A task is data plus a grader. It builds, deterministically from a seed,

* a raw-data repository: named sources (``datasets.Dataset``) of mixed quality
  that the agent may fetch, filter, transform and mix;
* a list of evaluation items, from which the env takes the visible validation
  split (the first ``min(100, n // 2)`` items) and the hidden test split (the
  last ``min(100, n // 2)`` items);
* a grader that scores a model output for an item in ``[0, 1]``.

Tasks never see models or training: the env sends prompts to the worker and
grades the outputs it gets back, in the env process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EvalItem:
    """One evaluation question. ``prompt`` is the user message given to the model."""

    id: str
    subset: str
    prompt: str
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceInfo:
    """Catalogue entry of a raw source, shown to the agent (never its hidden value)."""

    name: str
    description: str


class Task:
    """Base class of a task. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    version: str = "0"
    domain: str = ""
    metric: str = ""
    #: Default max new tokens when generating answers for this task.
    max_new_tokens: int = 64
    #: Default compute budget in training tokens.
    default_token_budget: int = 200_000
    #: Sources of the scripted "Manual SFT" expert recipe, and the templates that
    #: map them into the evaluation format (``{"prompt": ..., "completion": ...}``).
    clean_sources: tuple[str, ...] = ()
    expert_template: dict[str, str] = {}

    def sources(self, seed: int) -> dict[str, Any]:
        """Raw sources ``{name: datasets.Dataset}``, deterministic in ``seed``."""
        raise NotImplementedError

    def source_descriptions(self) -> dict[str, str]:
        """One neutral line per source, shown in the catalogue."""
        raise NotImplementedError

    def eval_items(self, seed: int) -> list[EvalItem]:
        """All evaluation items, deterministic in ``seed``."""
        raise NotImplementedError

    def max_new_tokens_for(self, item: EvalItem) -> int:
        return self.max_new_tokens

    def grade(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        """Score each output against its item, in ``[0, 1]``."""
        raise NotImplementedError

"""The benchmark's scripted recipes per task: the Manual-SFT expert and a harmful recipe.

A recipe says which raw sources to fetch and how each becomes training pairs
(a template ``{"prompt": ..., "completion": ...}`` over the source's fields,
as in the env's ``transform`` tool). Recipes are oracle knowledge of the task
author, read by the scripted expert (:mod:`ftdojo_agents.manual_sft`), the
per-task benchmark (:mod:`ftdojo_benchmarks.task_table`), the task cards and
:func:`ftdojo_gym.utils.check_task`; the env and the LLM agents never see them,
so they are not part of :class:`~ftdojo_gym.tasks.base.Task`.

Every built-in task class has its recipes here. A third-party task declares
its own with :func:`register_recipes`::

    register_recipes(MyTask, TaskRecipes(
        clean_sources=("clean",),
        expert_template={"prompt": "{question}", "completion": "Answer: {answer}"},
        harmful=Recipe({"noisy": {"prompt": "{question}", "completion": "{answer}"}}),
    ))

(or with a function of the task instance, for recipes that depend on its
configuration), or passes ``recipes=`` to :func:`~ftdojo_gym.utils.check_task`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftdojo_gym.tasks.base import RealDataTask, Task
from ftdojo_gym.tasks.chemistry import FORMAT_LINE as CHEMCOT_FORMAT_LINE
from ftdojo_gym.tasks.chemistry import ChemCoTTask
from ftdojo_gym.tasks.finance import ANSWER_TEMPLATE as FINANCEIQ_ANSWER
from ftdojo_gym.tasks.finance import PROMPT_TEMPLATE as FINANCEIQ_PROMPT
from ftdojo_gym.tasks.finance import FinanceIQTask
from ftdojo_gym.tasks.mathematics import FORMAT_IN_TEMPLATE as AIME_FORMAT
from ftdojo_gym.tasks.mathematics import AIMETask
from ftdojo_gym.tasks.patent import PatentTask
from ftdojo_gym.tasks.tablebench import TableBenchTask

#: ``{"prompt": ..., "completion": ...}`` with ``{field}`` placeholders over a source's fields.
Template = Mapping[str, str]
_TEMPLATE_KEYS = frozenset(("prompt", "completion"))


def _checked(template: Template) -> dict[str, str]:
    if set(template) != _TEMPLATE_KEYS or not all(isinstance(v, str) for v in template.values()):
        raise ValueError(f"a template is {{'prompt': str, 'completion': str}}, got {dict(template)!r}")
    return dict(template)


_FIELD = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def template_fields(text: str) -> list[str]:
    """The ``{field}`` placeholders of a template string, in order (``{{ }}`` are literal braces)."""
    return _FIELD.findall(text)


def answer_fields(template: Template) -> tuple[str, ...]:
    """The fields a template's completion reads and its prompt does not: where the answer is."""
    prompt = set(template_fields(template["prompt"]))
    return tuple(dict.fromkeys(f for f in template_fields(template["completion"]) if f not in prompt))


def shuffle_answers(rows: Sequence[Mapping[str, Any]], template: Template, seed: int = 0) -> list[dict[str, Any]]:
    """``rows`` with the answer fields (:func:`answer_fields`) of ``template``
    permuted between rows, jointly and deterministically in ``seed``: every
    prompt keeps its own fields and gets another row's answer, so training on
    the result can teach the answer *format* but not the *content*. A row keeps
    its own answer only when a source has a single row."""
    fields = answer_fields(template)
    out = [dict(r) for r in rows]
    if not fields or len(out) < 2:
        return out
    order = list(range(len(out)))
    random.Random(seed).shuffle(order)
    # A cyclic shift of a random order: no row gets its own answer back.
    donor = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    for i, row in enumerate(out):
        for f in fields:
            row[f] = rows[donor[i]][f]
    return out


@dataclass(frozen=True)
class Recipe:
    """Training pairs from raw sources: ``templates[source]`` maps that source's
    rows to ``{"prompt", "completion"}`` pairs (in this order).

    With ``shuffled_answers`` the recipe's sources are used with their answers
    permuted between rows (:meth:`prepare_sources`, :func:`shuffle_answers`): the
    format-only control of :attr:`TaskRecipes.format_only`."""

    templates: Mapping[str, Template] = field(default_factory=dict)
    shuffled_answers: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "templates", {src: _checked(t) for src, t in self.templates.items()})

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.templates)

    def restricted_to(self, available: Iterable[str]) -> Recipe:
        """This recipe on the ``available`` sources only."""
        names = set(available)
        return Recipe({src: t for src, t in self.templates.items() if src in names}, self.shuffled_answers)

    def prepare_sources(self, sources: Mapping[str, Any], seed: int = 0) -> dict[str, Any]:
        """The raw sources this recipe trains on, as the env should serve them: ``sources``
        itself, or (``shuffled_answers``) a copy whose recipe sources have their
        answers permuted between rows. Values are ``datasets.Dataset`` (or lists of rows)."""
        if not self.shuffled_answers:
            return dict(sources)
        from datasets import Dataset

        out = dict(sources)
        for src, template in self.templates.items():
            if src in out:
                rows = out[src].to_list() if hasattr(out[src], "to_list") else list(out[src])
                out[src] = Dataset.from_list(shuffle_answers(rows, template, seed))
        return out


@dataclass(frozen=True)
class TaskRecipes:
    """The scripted recipes of one task.

    ``clean_sources`` (one schema) and ``expert_template`` are the Manual-SFT
    expert recipe: the template maps every clean source into the evaluation
    prompt format exactly. ``harmful`` is what a careless agent might run
    over the task's harmful sources; benchmarks train on it to show that data
    curation matters (it should score below the expert)."""

    clean_sources: tuple[str, ...]
    expert_template: Template
    harmful: Recipe = field(default_factory=Recipe)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clean_sources", tuple(self.clean_sources))
        object.__setattr__(self, "expert_template", _checked(self.expert_template))

    @property
    def expert(self) -> Recipe:
        """The expert recipe as a :class:`Recipe`: every clean source with the expert template."""
        return Recipe({src: self.expert_template for src in self.clean_sources})

    @property
    def format_only(self) -> Recipe:
        """The format-only control, derived from the expert recipe: the same sources and
        template with the answers shuffled between rows (:func:`shuffle_answers`). A model
        trained on it learns the answer format but not which answer goes with which
        prompt, so expert minus format-only is what the content of the data adds."""
        return Recipe(self.expert.templates, shuffled_answers=True)

    def restricted_to(self, available: Iterable[str]) -> TaskRecipes:
        """These recipes on the ``available`` sources only (real data may lack some)."""
        names = set(available)
        return TaskRecipes(tuple(s for s in self.clean_sources if s in names), self.expert_template,
                           self.harmful.restricted_to(names))


RecipesDeclaration = TaskRecipes | Callable[[Task], TaskRecipes]

_EVAL_FORMAT = {"prompt": "{instruction}\n{input}", "completion": "{output}"}

_DECLARED: dict[type[Task], RecipesDeclaration] = {
    AIMETask: TaskRecipes(
        clean_sources=("competition_math",),
        expert_template={"prompt": "{problem}\n" + AIME_FORMAT, "completion": "{solution}"},
        # Forum posts taken with their wrong answers, plus near-duplicate mirrors.
        harmful=Recipe({
            "forum_solutions": {"prompt": "{problem}\n" + AIME_FORMAT, "completion": "{solution}"},
            "contest_mirror": {"prompt": "{problem}\n" + AIME_FORMAT, "completion": "{solution}"},
        }),
    ),
    PatentTask: TaskRecipes(
        clean_sources=("examiner_records",),
        expert_template=_EVAL_FORMAT,
        # Noisy crowd labels taken as they are, and free-text notes without the answer format.
        harmful=Recipe({
            "crowd_labels": _EVAL_FORMAT,
            "examiner_notes": {"prompt": "{claim}\n{prior_art}", "completion": "{rationale}"},
        }),
    ),
    # Noisy crowd labels taken as they are, and chatty answers put behind the
    # evaluation prompt (the model learns to chat instead of answering in format).
    # For MolUnd (version 3) the crowd's wrong labels are the scaffold span plus or
    # minus one unit, in the evaluation format: the harmful recipe trains on them
    # (no agreement filter), the expert's clean rows are the evaluation format itself.
    ChemCoTTask: lambda task: TaskRecipes(
        clean_sources=("chemcot_sft",),
        expert_template=_EVAL_FORMAT,
        harmful=Recipe({
            "crowd_chem_qa": _EVAL_FORMAT,
            "chem_chat": {"prompt": "{instruction}\n{question}\n" + CHEMCOT_FORMAT_LINE[task.subtask],
                          "completion": "{response}"},
        }),
    ),
    FinanceIQTask: TaskRecipes(
        clean_sources=("finexam_train",),
        expert_template={"prompt": FINANCEIQ_PROMPT, "completion": FINANCEIQ_ANSWER},
        # Crowd labels taken as they are, and answers given as option text.
        harmful=Recipe({
            "crowd_answer_key": {"prompt": FINANCEIQ_PROMPT, "completion": FINANCEIQ_ANSWER},
            "study_notes": {"prompt": FINANCEIQ_PROMPT, "completion": "Answer: {answer_text}"},
        }),
    ),
    TableBenchTask: TaskRecipes(
        clean_sources=("tableinstruct",),
        expert_template=_EVAL_FORMAT,
        # Noisy crowd labels taken as they are, plus chatty answers without the format.
        harmful=Recipe({
            "crowd_tableqa": _EVAL_FORMAT,
            "table_chat": {"prompt": "{question}\n{table}", "completion": "{response}"},
        }),
    ),
}


def register_recipes(task_type: type[Task], recipes: RecipesDeclaration) -> None:
    """Declare the recipes of every task of ``task_type`` (and its subclasses):
    a :class:`TaskRecipes`, or a function of the task instance returning one."""
    _DECLARED[task_type] = recipes


def declared_recipes(task: Task) -> TaskRecipes | None:
    """The recipes declared for ``task``'s class (for real data: for the offline task
    it wraps), as declared; ``None`` when there are none."""
    base = task.base if isinstance(task, RealDataTask) else task
    for cls in type(base).__mro__:
        declared = _DECLARED.get(cls)
        if declared is not None:
            return declared if isinstance(declared, TaskRecipes) else declared(base)
    return None


def task_recipes(task: Task) -> TaskRecipes | None:
    """The recipes of ``task`` resolved against its sources: only the sources the
    task has (a real-data task lacks the offline noisy sources). ``None`` when no
    recipes are declared."""
    declared = declared_recipes(task)
    return None if declared is None else declared.restricted_to(task.source_descriptions())


__all__ = ["Recipe", "TaskRecipes", "Template", "answer_fields", "declared_recipes", "register_recipes",
           "shuffle_answers", "task_recipes", "template_fields"]

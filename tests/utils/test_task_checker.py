"""check_task: passes on every registered task, and catches each kind of contract violation."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from datasets import Dataset

from ftdojo_gym.recipes import Recipe, TaskRecipes, register_recipes
from ftdojo_gym.tasks import TASK_CATALOGUE
from ftdojo_gym.tasks.base import EvalItem, Task
from ftdojo_gym.utils import TaskCheckError, check_task


@pytest.mark.parametrize("env_id", [e.env_id for e in TASK_CATALOGUE])
def test_every_registered_task_conforms(env_id):
    report = check_task(env_id)
    assert report.n_hidden_test == min(100, report.n_items // 2)
    assert len(report.sources) >= 6


class ToyTask(Task):
    """A toy task used to test the checker: the model must answer with the number
    written in the prompt. Sources: six copies of clean lines. Prompt and answer:
    ``Say 17.`` -> ``17``. Metric: exact match. Splits: 40 items, 20 validation
    and 20 hidden test. Default budget: 1,000 tokens."""

    name, domain, metric, version = "Toy", "Test", "exact match", "0"
    default_token_budget = 1000

    def __init__(self, leak: bool = False, nondeterministic: bool = False, lenient: bool = False):
        self.leak, self.nondeterministic, self.lenient = leak, nondeterministic, lenient

    def eval_items(self, seed: int) -> list[EvalItem]:
        rng = random.Random(seed)
        numbers = rng.sample(range(1000, 9999), 40)
        return [EvalItem(f"toy/{i}", "all", f"Say {n}.", str(n)) for i, n in enumerate(numbers)]

    def sources(self, seed: int) -> dict[str, Dataset]:
        rng = random.Random() if self.nondeterministic else random.Random(seed + 1)
        rows = [{"q": f"Say {n}.", "a": str(n)} for n in rng.sample(range(10, 999), 50)]
        if self.leak:
            rows.append({"q": self.eval_items(seed)[-1].prompt, "a": "x"})
        names = ("clean", "noisy", "dupes", "format", "offdomain", "long")
        return {name: Dataset.from_list(rows) for name in names}

    def source_descriptions(self) -> dict[str, str]:
        return {name: "rows" for name in ("clean", "noisy", "dupes", "format", "offdomain", "long")}

    def grade(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        if self.lenient:
            return [float(item.reference in out) for item, out in zip(items, outputs, strict=True)]
        return [float(out.strip() == item.reference) for item, out in zip(items, outputs, strict=True)]


# A third-party task declares its recipes next to it, as the docs show.
register_recipes(ToyTask, TaskRecipes(
    clean_sources=("clean",),
    expert_template={"prompt": "{q}", "completion": "{a}"},
    harmful=Recipe({"noisy": {"prompt": "{q}", "completion": "{a}"}}),
))


def test_a_conforming_third_party_task_passes():
    report = check_task(ToyTask())
    assert (report.n_items, report.n_validation, report.n_hidden_test) == (40, 20, 20)


def test_a_hidden_item_in_a_source_is_reported():
    with pytest.raises(TaskCheckError, match="leak: 1 hidden-test item"):
        check_task(ToyTask(leak=True))


def test_nondeterministic_sources_are_reported():
    with pytest.raises(TaskCheckError, match="determinism: source"):
        check_task(ToyTask(nondeterministic=True))


def test_a_grader_fooled_by_listing_every_answer_is_reported():
    with pytest.raises(TaskCheckError, match="listing every reference"):
        check_task(ToyTask(lenient=True))


def test_a_broken_recipe_and_a_crashing_grader_are_reported(monkeypatch):
    task = ToyTask()
    broken = TaskRecipes(clean_sources=("clean",), expert_template={"prompt": "{question}", "completion": "{a}"})
    monkeypatch.setattr(task, "grade", lambda items, outputs: 1 / 0)
    with pytest.raises(TaskCheckError) as err:
        check_task(task, recipes=broken)
    text = str(err.value)
    assert "recipe expert:clean" in text and "grader raised ZeroDivisionError" in text

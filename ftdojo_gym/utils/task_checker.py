"""Conformance checks that any FT-Dojo task, ours or a third party's, can run.

    from ftdojo_gym.utils import check_task
    check_task("FTDojo/AIME-v0")          # a registered id
    check_task(MyTask())                   # or a Task instance

Like :func:`gymnasium.utils.env_checker.check_env` (and PettingZoo's
``api_test``), it raises :class:`TaskCheckError` listing every problem found,
and returns a :class:`TaskCheckReport` when the task conforms.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from ftdojo_gym.data.workspace import render_template
from ftdojo_gym.recipes import TaskRecipes, declared_recipes
from ftdojo_gym.tasks import TASK_CATALOGUE, make_task
from ftdojo_gym.tasks.base import EvalItem, RealDataTask, Task

#: Strings every grader must survive (and score 0 on).
GARBAGE_OUTPUTS = ("", " ", "\x00", "é≥😀" * 50, "{" * 500, "Answer:" * 200, "x" * 50_000)


class TaskCheckError(AssertionError):
    """A task violates the FT-Dojo task contract; ``problems`` lists each violation."""

    def __init__(self, task: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{task} fails {len(problems)} check(s):\n- " + "\n- ".join(problems))


@dataclass
class TaskCheckReport:
    task: str
    n_items: int
    n_validation: int
    n_hidden_test: int
    sources: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


def _item_specific_text(item: EvalItem, common: Counter, n_items: int) -> str:
    """The lines of ``item.prompt`` that few other items share (the question, its table, ...)."""
    lines = [line for line in item.prompt.splitlines() if line.strip() and common[line] <= max(1, n_items // 20)]
    return "\n".join(lines)


def check_task(task: str | Task, *, seed: int = 0, registered: bool | None = None,
               check_env: bool = False, base_model: str = "tiny",
               recipes: TaskRecipes | None = None) -> TaskCheckReport:
    """Check ``task`` (an env id, a task name or a :class:`Task`) against the task contract.

    Checks: metadata; registration with Gymnasium (for catalogue ids, or when
    ``registered``); determinism of sources and evaluation items under a seed,
    and that another seed changes them; item ids unique and splits disjoint;
    grader sanity (every gold reference scores 1, garbage scores 0 and never
    raises, scores lie in [0, 1], one output per item); expert and harmful
    recipes (``recipes``, by default those declared in :mod:`ftdojo_gym.recipes`)
    render on their sources; and that no hidden-test item occurs in any source
    the agent can fetch. The splits are :meth:`Task.split`'s. With ``check_env``, also builds the env
    with ``base_model`` and runs ``gymnasium``'s ``check_env`` on it.
    """
    problems: list[str] = []
    seconds: dict[str, float] = {}
    env_id = None
    if isinstance(task, str):
        entry = next((e for e in TASK_CATALOGUE if task in (e.env_id, e.task_name)), None)
        env_id = entry.env_id if entry else task
        t0 = time.perf_counter()
        task = make_task(task)
        seconds["build"] = time.perf_counter() - t0
        registered = True if registered is None else registered
    name = task.name or type(task).__name__

    for attr in ("name", "domain", "metric", "version"):
        if not isinstance(getattr(task, attr, None), str) or not getattr(task, attr):
            problems.append(f"metadata: {attr} must be a non-empty string")
    if not type(task).__doc__ or len(type(task).__doc__.strip()) < 200:
        problems.append("the task class needs a docstring task card (description, sources, format, metric, splits, budget)")
    if int(getattr(task, "default_token_budget", 0)) <= 0:
        problems.append("default_token_budget must be positive")

    if registered:
        import gymnasium as gym

        import ftdojo_gym  # noqa: F401  (registers the catalogue)

        ids = [e.env_id for e in TASK_CATALOGUE if e.task_name == task.name]
        if env_id and env_id not in gym.registry:
            problems.append(f"registration: {env_id} is not registered with gymnasium")
        elif not env_id and not ids:
            problems.append(f"registration: no catalogue entry names task {task.name!r}")

    # -- determinism
    t0 = time.perf_counter()
    items = task.eval_items(seed)
    seconds["eval_items"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sources = task.sources(seed)
    seconds["sources"] = time.perf_counter() - t0
    fresh_items = _rebuild(task).eval_items(seed)
    if [(i.id, i.prompt, i.reference) for i in fresh_items] != [(i.id, i.prompt, i.reference) for i in items]:
        problems.append(f"determinism: eval_items({seed}) differs between two builds")
    fresh_sources = _rebuild(task).sources(seed)
    for src, ds in sources.items():
        other = fresh_sources.get(src)
        if other is None or len(other) != len(ds) or other[: min(50, len(ds))] != ds[: min(50, len(ds))]:
            problems.append(f"determinism: source {src!r} differs between two builds with seed {seed}")
    if not isinstance(task, RealDataTask) and [i.prompt for i in task.eval_items(seed + 1)] == [i.prompt for i in items]:
        problems.append("determinism: eval items do not depend on the seed")

    # -- items and splits
    if len(items) < 2:
        problems.append(f"eval_items: {len(items)} items; need at least 2")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        problems.append("eval_items: item ids are not unique")
    validation, hidden = task.split(items)
    if {i.prompt for i in validation} & {i.prompt for i in hidden}:
        problems.append("splits: a prompt occurs in both the validation and the hidden test split")
    for it in items:
        if not it.prompt.strip() or not it.reference.strip():
            problems.append(f"eval_items: item {it.id} has an empty prompt or reference")
            break

    # -- grader
    t0 = time.perf_counter()
    try:
        gold = task.grade(items, [it.reference for it in items])
        if len(gold) != len(items):
            problems.append(f"grader: {len(gold)} scores for {len(items)} items")
        bad = [it.id for it, s in zip(items, gold, strict=False) if s != 1.0]
        if bad:
            problems.append(f"grader: the gold reference does not score 1.0 on {len(bad)} item(s), e.g. {bad[:3]}")
        for garbage in GARBAGE_OUTPUTS:
            scores = task.grade(items[:8], [garbage] * min(8, len(items)))
            if any(not (0.0 <= float(s) <= 1.0) for s in scores):
                problems.append(f"grader: a score outside [0, 1] for output {garbage[:20]!r}")
            if any(s > 0 for s in scores) and garbage.strip():
                problems.append(f"grader: the garbage output {garbage[:20]!r} scores above 0")
        # Every reference of the split at once must not pass for any single item.
        everything = "\n".join(dict.fromkeys(it.reference for it in items[:20]))
        if len({it.reference for it in items[:20]}) > 1:
            scores = task.grade(items[:20], [everything] * len(items[:20]))
            if sum(scores) >= len(scores) * 0.5:
                problems.append("grader: an output listing every reference scores on at least half the items")
    except Exception as exc:  # noqa: BLE001 - any exception is a contract violation
        problems.append(f"grader raised {type(exc).__name__}: {exc}")
    seconds["grade"] = time.perf_counter() - t0

    # -- recipes render on their sources
    recipes = recipes if recipes is not None else declared_recipes(task)
    if recipes is None:
        problems.append("recipe: none declared (ftdojo_gym.recipes.register_recipes; the Manual-SFT expert needs one)")
    elif not recipes.clean_sources:
        problems.append("recipe: clean_sources is empty (the Manual-SFT expert needs one)")
    templates = {} if recipes is None else {
        **{f"expert:{s}": (s, t) for s, t in recipes.expert.templates.items()},
        **{f"harmful:{s}": (s, t) for s, t in recipes.harmful.templates.items()},
    }
    if isinstance(task, RealDataTask):  # the real data may lack the offline noisy sources
        templates = {label: (s, t) for label, (s, t) in templates.items() if s in sources}
    for label, (src, tpl) in templates.items():
        if src not in sources:
            problems.append(f"recipe {label}: no source named {src!r}")
            continue
        try:
            row = sources[src][0]
            render_template(tpl["prompt"], row)
            render_template(tpl["completion"], row)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"recipe {label}: template does not render on the source: {exc}")
    if len(sources) < 6 and not isinstance(task, RealDataTask):
        problems.append(f"sources: {len(sources)} sources; the design asks for at least 6")
    if set(task.source_descriptions()) != set(sources):
        problems.append("sources: source_descriptions() does not describe exactly the sources")

    # -- no hidden-test item in the observable catalogue
    t0 = time.perf_counter()
    common = Counter(line for it in items for line in set(it.prompt.splitlines()))
    blob = "\n".join(
        "\n".join(str(v) for v in row.values() if isinstance(v, str)) for ds in sources.values() for row in ds
    )
    blob_json = "\n".join(json.dumps(row) for ds in sources.values() for row in ds)
    leaked = []
    for it in hidden:
        specific = _item_specific_text(it, common, len(items))
        if specific and (specific in blob or json.dumps(specific)[1:-1] in blob_json):
            leaked.append(it.id)
    if leaked:
        problems.append(f"leak: {len(leaked)} hidden-test item(s) occur in the sources, e.g. {leaked[:3]}")
    seconds["leak"] = time.perf_counter() - t0

    if check_env and env_id:
        import gymnasium as gym
        from gymnasium.utils.env_checker import check_env as gym_check_env

        env = gym.make(env_id, base_model=base_model, eval_limit=4)
        try:
            gym_check_env(env.unwrapped, skip_render_check=True)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"gymnasium check_env: {type(exc).__name__}: {exc}")
        finally:
            env.close()

    if problems:
        raise TaskCheckError(name, problems)
    return TaskCheckReport(name, len(items), len(validation), len(hidden), {k: len(v) for k, v in sources.items()},
                           {k: round(v, 3) for k, v in seconds.items()})


def _rebuild(task: Task) -> Task:
    """A fresh instance of ``task`` (no caches shared), for the determinism checks."""
    entry = next((e for e in TASK_CATALOGUE if e.task_name == task.name), None)
    if entry is not None:
        fresh = entry.build()
        if fresh.version == task.version:
            return fresh
    try:
        return type(task)(**getattr(task, "init_kwargs", {}))
    except TypeError:
        return task


__all__ = ["GARBAGE_OUTPUTS", "TaskCheckError", "TaskCheckReport", "check_task"]

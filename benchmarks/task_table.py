"""Per-task table: chance, base model, format-only, expert and harmful recipes, on the hidden test.

For every task (or the ones named), runs three real episodes with the base model
(SmolLM2-135M by default) on this machine:

* **expert** — the scripted Manual-SFT recipe: the task's clean sources,
  length filter and dedupe, the evaluation prompt format, LoRA;
* **format_only** — the expert recipe with the answers shuffled between the
  training rows (:attr:`ftdojo_gym.recipes.TaskRecipes.format_only`): only the
  answer format can be learned, so expert minus format-only is what the data's
  content adds;
* **harmful** — the same training config on the task's harmful sources
  (:class:`ftdojo_gym.recipes.TaskRecipes` ``harmful``), without curation;

and records the hidden-test score of each, the base model's, and the per-item
hidden-test scores and outputs (taken on the env process side by wrapping the
task's ``grade`` during the episode; the env itself never shows them). A
**chance** row needs no model: the best of a constant answer and a uniformly
random answer (:func:`chance_level`) on the hidden split's labels. The table
gives paired bootstrap 95 % intervals (over hidden items) for expert minus
harmful and expert minus format-only.

Results are appended to a JSON file (written atomically) as each episode ends,
so an interrupted sweep resumes where it stopped; the markdown table is
rewritten from that file after every episode. Every row carries a fingerprint
of the task's evaluation items, sources, recipe and grader (:func:`task_fingerprint`),
so rows measured on other data, recipes or graders show as stale and are rerun.

    python -m ftdojo_benchmarks.task_table                         # all tasks (hours on a CPU)
    python -m ftdojo_benchmarks.task_table --task FTDojo/AIME-v0   # one task
    python -m ftdojo_benchmarks.task_table --table-only            # re-render the table
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import inspect
import json
import random
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
from rich.console import Console

import ftdojo_gym
from ftdojo_agents.manual_sft import ManualSFTAgent
from ftdojo_gym.data.workspace import atomic_write_text
from ftdojo_gym.recipes import TaskRecipes, task_recipes
from ftdojo_gym.tasks.base import EvalItem, Task
from ftdojo_gym.tasks.fingerprint import grader_fingerprint

RECIPES = ("expert", "format_only", "harmful")
CHANCE = "chance"
DEFAULT_OUT = Path("benchmarks/results/task_table.json")
DEFAULT_TABLE = Path("docs/tasks/results.md")
#: The env's data seed (``gym.make`` default): the hidden split the benchmark scores.
DATA_SEED = 0
BOOTSTRAP_SAMPLES = 1000


# ------------------------------------------------------------- fingerprints


@lru_cache(maxsize=64)
def task_fingerprint(task_id: str, seed: int = 0, recipe: str | None = None) -> str:
    """A hash of the task's evaluation items, sources and grader (:func:`grader_fingerprint`)
    under ``seed`` and, with ``recipe``, of that recipe's sources and templates (without
    one, the chance row's: of the task's ``chance_outputs`` code): results measured on
    other data, with another recipe or under another grader are stale."""
    from ftdojo_gym.tasks import make_task

    task = make_task(task_id)
    recipes = _recipes(task)
    digest = hashlib.sha256(grader_fingerprint(task).encode())
    if recipe in ("expert", "format_only"):
        digest.update(json.dumps([recipes.clean_sources, recipes.expert_template, recipe == "format_only"]).encode())
    elif recipe == "harmful":
        digest.update(json.dumps(recipes.harmful.templates, sort_keys=True).encode())
    elif recipe is None and callable(getattr(task, "chance_outputs", None)):
        # The chance row also depends on the answers a guesser picks from.
        digest.update(inspect.getsource(type(task).chance_outputs).encode())
    for item in task.eval_items(seed):
        digest.update(f"{item.id}\x00{item.prompt}\x00{item.reference}\x00".encode())
    for name, ds in task.sources(seed).items():
        digest.update(f"{name}\x00{len(ds)}\x00{json.dumps(ds[: min(len(ds), 200)], sort_keys=True)}".encode())
    return digest.hexdigest()[:12]


# ------------------------------------------------------------------ episodes


class HiddenTestRecorder:
    """Wraps a task's ``grade`` (an instance attribute, removed by :meth:`restore`) and
    keeps every call on exactly the hidden-test items: ``calls[i] = (scores, outputs)``,
    in call order (the submitted run first, then the base model unless its score was cached)."""

    def __init__(self, task: Task, hidden: Sequence[EvalItem]):
        self.task = task
        self.ids = [it.id for it in hidden]
        self.calls: list[tuple[list[float], list[str]]] = []
        self._grade = task.grade
        task.grade = self  # type: ignore[method-assign]

    def __call__(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        scores = self._grade(items, outputs)
        if [it.id for it in items] == self.ids:
            self.calls.append(([float(s) for s in scores], list(outputs)))
        return scores

    def restore(self) -> None:
        vars(self.task).pop("grade", None)


def run_recipe(task_id: str, recipe: str, args: argparse.Namespace, console: Console,
               fingerprint: str) -> dict[str, Any]:
    """One episode of ``recipe`` on ``task_id``; returns the scores, per-item hidden-test
    scores and outputs, and costs, stamped with ``fingerprint`` (:func:`task_fingerprint`)."""
    # No outcome cache: the table needs every hidden-test output graded in this process
    # (per-item scores), and a cached score would survive a grader edit without a version bump.
    env = gym.make(task_id, base_model=args.model, eval_limit=args.eval_limit, progress=args.progress,
                   outcome_cache=False)
    task = env.unwrapped.task
    recipes = _recipes(task)
    agent = ManualSFTAgent(max_steps=args.max_steps, learning_rate=args.lr, curate=recipe != "harmful",
                           evaluate_base=False)
    info_task: dict[str, Any] = {"task": task.name, "clean_sources": recipes.clean_sources,
                                 "expert_template": recipes.expert_template}
    if recipe == "harmful":
        if not recipes.harmful.templates:
            env.close()
            raise ValueError(f"{task.name} declares no harmful recipe")
        info_task["recipe"] = recipes.harmful.templates
    hidden = task.split(task.eval_items(DATA_SEED), args.eval_limit)[1]
    recorder = HiddenTestRecorder(task, hidden)
    if recipe == "format_only":  # the env serves the clean sources with their answers shuffled
        original_sources = task.sources
        task.sources = lambda seed: recipes.format_only.prepare_sources(original_sources(seed), seed)  # type: ignore[method-assign]
    agent.reset(info_task)
    start = time.monotonic()
    errors: list[str] = []
    try:
        obs, info = env.reset(seed=args.seed)
        done = False
        while not done:
            action = agent.act(obs, info)
            obs, _, terminated, truncated, info = env.step(action)
            if not info.get("ok"):
                errors.append(f"{action['tool']}: {info.get('error_class')} {str(info['result'].get('error'))[:200]}")
            done = terminated or truncated
    finally:
        recorder.restore()
        vars(task).pop("sources", None)
        env.close()
    sub = info["submission"]
    per_item: dict[str, Any] = {}
    if recorder.calls:
        scores, outputs = recorder.calls[0]
        if abs(task.aggregate(hidden, scores, outputs) - sub["hidden_test_score"]) < 1e-9:
            per_item = {"hidden_test_ids": recorder.ids, "hidden_test_item_scores": scores,
                        "hidden_test_outputs": outputs}
    result = {
        "task": task_id, "recipe": recipe, "model": args.model, "max_steps": args.max_steps,
        "eval_items": args.eval_limit, "seed": args.seed,
        "base_hidden_test": sub["base_hidden_test_score"], "hidden_test": sub["hidden_test_score"],
        "validation": sub["validation_score"], "hidden_test_subsets": sub["hidden_test_subsets"],
        "run": sub["run"], "tokens_trained": sub["tokens_used"], "wall_seconds": round(time.monotonic() - start, 1),
        "errors": errors, "versions": sub["versions"], "task_fingerprint": fingerprint, **per_item,
    }
    console.print(f"{task_id} {recipe}: base {_pct(result['base_hidden_test'])}, "
                  f"{recipe} {_pct(result['hidden_test'])} (hidden test), {result['wall_seconds']:.0f} s"
                  + (f", errors: {errors}" if errors else ""))
    return result


# -------------------------------------------------------------------- chance


def answer_candidates(task: Task, items: Sequence[EvalItem]) -> list[list[str]]:
    """The answers a guesser could give, per item: the task's ``chance_outputs(item)``
    when it declares one (e.g. one output per option of a multiple-choice item), else
    the distinct references of ``items`` (the label distribution of the split)."""
    per_item = getattr(task, "chance_outputs", None)
    if callable(per_item):
        return [list(per_item(it)) for it in items]
    pool = list(dict.fromkeys(it.reference for it in items))
    return [pool for _ in items]


def chance_level(task: Task, items: Sequence[EvalItem], seed: int = 0, max_constants: int = 12) -> dict[str, float | None]:
    """The metric's value for answers that ignore the input, on ``items``:
    ``constant`` — the best answer given to every item (the j-th candidate of
    :func:`answer_candidates`, when every item has at most ``max_constants``);
    ``random`` — the mean over draws of a uniformly random candidate per item
    (20 draws, 3 when the candidates are many and the grader may be slow);
    ``chance`` — the larger of the two."""
    cands = [c for c in answer_candidates(task, items)]
    if not items or not all(cands):
        return {"chance": None, "constant": None, "random": None}

    def score(outputs: list[str]) -> float:
        return float(task.aggregate(items, task.grade(items, outputs), outputs))

    width = max(len(c) for c in cands)
    constant = None
    if width <= max_constants:
        constant = max(score([c[j % len(c)] for c in cands]) for j in range(width))
    rng = random.Random(seed)
    draws = 20 if width <= max_constants else 3
    rand = sum(score([rng.choice(c) for c in cands]) for _ in range(draws)) / draws
    return {"chance": max(rand, constant if constant is not None else 0.0), "constant": constant, "random": rand}


def chance_row(task_id: str, args: argparse.Namespace, fingerprint: str) -> dict[str, Any]:
    from ftdojo_gym.tasks import make_task

    task = make_task(task_id)
    hidden = task.split(task.eval_items(DATA_SEED), args.eval_limit)[1]
    return {"task": task_id, "recipe": CHANCE, "eval_items": args.eval_limit, "seed": args.seed,
            "task_fingerprint": fingerprint, **chance_level(task, hidden, seed=args.seed)}


# ----------------------------------------------------------------- intervals


def paired_bootstrap(task: Task, items: Sequence[EvalItem], a: dict[str, Any], b: dict[str, Any],
                     samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float, float] | None:
    """``(difference, low, high)``: the split score of row ``a`` minus that of ``b`` and
    its bootstrap 95 % interval, resampling the hidden items (the same resample for
    both: paired). ``None`` when a row lacks per-item scores or the items differ."""
    ids = a.get("hidden_test_ids")
    if not ids or ids != b.get("hidden_test_ids") or [it.id for it in items] != ids:
        return None
    sa, sb = a["hidden_test_item_scores"], b["hidden_test_item_scores"]
    oa, ob = a["hidden_test_outputs"], b["hidden_test_outputs"]
    mean_metric = type(task).aggregate is Task.aggregate

    def agg(scores: list[float], outputs: list[str], idx: list[int]) -> float:
        if mean_metric:
            return sum(scores[i] for i in idx) / len(idx)
        return float(task.aggregate([items[i] for i in idx], [scores[i] for i in idx], [outputs[i] for i in idx]))

    n = len(ids)
    full = list(range(n))
    diff = agg(sa, oa, full) - agg(sb, ob, full)
    rng = random.Random(seed)
    diffs = []
    for _ in range(samples):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(agg(sa, oa, idx) - agg(sb, ob, idx))
    diffs.sort()
    return diff, diffs[int(0.025 * samples)], diffs[min(samples - 1, int(0.975 * samples))]


# --------------------------------------------------------------------- table


def _recipes(task: Task) -> TaskRecipes:
    recipes = task_recipes(task)
    if recipes is None:
        raise ValueError(f"{task.name} declares no recipes (ftdojo_gym.recipes.register_recipes)")
    return recipes


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _interval(x: tuple[float, float, float] | None) -> str:
    return "-" if x is None else f"{100 * x[0]:+.1f} [{100 * x[1]:+.1f}, {100 * x[2]:+.1f}]"


def load_results(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else []


def save_results(path: Path, results: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=1))


def append_result(path: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Append ``row`` to the results file and return every row in it.

    The file is read again under an exclusive lock (``<path>.lock``) before the write, so
    several runs on different tasks (e.g. two one-thread processes on two cores) can share
    one file without losing each other's rows.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = [*load_results(path), row]
        save_results(path, results)
    return results


def latest_rows(results: list[dict[str, Any]],
                fingerprint: Callable[[str, int, str | None], str] = task_fingerprint) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest row per ``(task, recipe)`` whose fingerprint is current (older rows are stale)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        recipe = r.get("recipe")
        if "task" not in r or recipe not in (*RECIPES, CHANCE):
            continue
        try:
            current = fingerprint(r["task"], r.get("seed", 0), None if recipe == CHANCE else recipe)
        except Exception:  # noqa: BLE001 - a task that no longer exists: its rows are stale
            continue
        if r.get("task_fingerprint") == current:
            latest[(r["task"], recipe)] = r
    return latest


#: Why a task misses a criterion of the table, as far as we know (shown only while it misses).
MISS_NOTES: dict[str, str] = {}


def render_table(results: list[dict[str, Any]]) -> str:
    """Markdown table: one row per task, the latest current result of each recipe."""
    from ftdojo_gym.tasks import make_task

    latest = latest_rows(results)
    lines = [
        "# Chance, base model, format-only, expert and harmful recipes, per task",
        "",
        "Hidden-test scores in % with SmolLM2-135M-Instruct on a 2-core CPU (LoRA r16, lr 1e-3,",
        "linear decay, batch 8), produced by",
        "`python -m ftdojo_benchmarks.task_table` (raw results in `benchmarks/results/task_table.json`).",
        "`expert` is the scripted Manual-SFT recipe on the clean sources; `format-only` is the same",
        "recipe with the answers shuffled between training rows (only the format can be learned);",
        "`harmful` trains with the same config on the task's harmful sources without curation;",
        "`chance` is the best of a constant and a uniformly random answer (no model).",
        "Differences are in points with a paired bootstrap 95 % interval over the hidden items.",
        "",
        "| task | metric | chance | base | format-only | expert | harmful | expert - harmful [95 % CI] "
        "| expert - format-only [95 % CI] | steps x batch | items |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|---:|",
    ]
    metrics = {t["env_id"]: t["metric"] for t in ftdojo_gym.list_tasks()}
    n_rows = n_harm = n_fmt = n_chance = n_harm_measured = n_fmt_measured = n_chance_measured = 0
    misses: dict[str, list[str]] = {}
    for task_id in metrics:
        rows = {recipe: latest.get((task_id, recipe)) for recipe in (*RECIPES, CHANCE)}
        trained = [rows[r] for r in RECIPES if rows[r]]
        if not trained:
            continue
        n_rows += 1
        e, f, h, c = rows["expert"], rows["format_only"], rows["harmful"], rows[CHANCE]
        ref = e or trained[0]
        base = ref.get("base_hidden_test")
        vs_harm = vs_fmt = None
        if e and (h or f):
            task = make_task(task_id)
            hidden = task.split(task.eval_items(DATA_SEED), ref["eval_items"])[1]
            vs_harm = paired_bootstrap(task, hidden, e, h) if h else None
            vs_fmt = paired_bootstrap(task, hidden, e, f) if f else None
        # Each criterion: None when not measured, else whether the expert passes it.
        above_harm = None if vs_harm is None else vs_harm[1] > 0
        above_fmt = None if vs_fmt is None else vs_fmt[1] > 0
        above_chance = e["hidden_test"] > c["chance"] if e and c and c.get("chance") is not None else None
        n_harm_measured += above_harm is not None
        n_harm += bool(above_harm)
        n_fmt_measured += above_fmt is not None
        n_fmt += bool(above_fmt)
        n_chance_measured += above_chance is not None
        n_chance += bool(above_chance)
        missed = [what for what, passed in (("expert - harmful interval includes 0", above_harm),
                                            ("expert - format-only interval includes 0", above_fmt),
                                            ("expert at or below chance", above_chance)) if passed is False]
        if missed:
            misses[task_id] = missed
        lines.append(
            f"| {task_id} | {metrics[task_id]} | {_pct(c and c.get('chance'))} | {_pct(base)} | "
            f"{_pct(f and f['hidden_test'])} | {_pct(e and e['hidden_test'])} | {_pct(h and h['hidden_test'])} | "
            f"{_interval(vs_harm)} | {_interval(vs_fmt)} | {ref['max_steps']} x 8 | {ref['eval_items'] or 100} |"
        )
    lines += [
        "",
        f"Tasks measured: {n_rows}. Expert above harmful outside the 95 % interval: {n_harm} of "
        f"{n_harm_measured}; above format-only outside the interval: {n_fmt} of {n_fmt_measured}; "
        f"above chance: {n_chance} of {n_chance_measured}.",
    ]
    if misses:
        lines += ["", "Misses:", ""]
        for task_id, missed in misses.items():
            why = MISS_NOTES.get(task_id, "")
            lines.append(f"- {task_id}: {'; '.join(missed)}." + (f" {why}" if why else ""))
    stale = {(r["task"], r.get("recipe")) for r in results
             if r.get("task") in metrics and r.get("recipe") in RECIPES} - set(latest)
    if stale:
        lines += [
            "",
            f"Stale: {len(stale)} (task, recipe) results in `benchmarks/results/task_table.json` were measured "
            "under an older grader, task version or data and have no current row; they are not shown "
            "and the next run repeats them.",
        ]
    lines += ["", *READING, ""]
    return "\n".join(lines)


#: How to read the table (facts of the tasks and of the protocol, not of one run).
READING = (
    "## Reading the table",
    "",
    "- The base model scores 0 almost everywhere because it never writes the strict answer formats;",
    "  format-only shows what learning the format alone is worth, so expert minus format-only is",
    "  the content of the data, and expert minus harmful is what data curation is worth.",
    "- Chance is computed from the hidden split's labels: per item the task's `chance_outputs`",
    "  (one per option, e.g. Patent-PI4PC's five paragraphs) or else the distinct reference answers",
    "  of the split; the best constant answer and the mean of uniformly random answers, whichever is",
    "  higher (a constant answer scores macro-F1 16.7 on three balanced classes, a random one 33).",
    "- With 100 hidden items a score near 50 % has a standard error of about 5 points; an interval",
    "  that excludes 0 is the evidence, not the point difference.",
    "- Rows whose fingerprint (evaluation items, sources, recipe, grader source and task version)",
    "  no longer matches the code are stale: they are not shown and the next run repeats them.",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", action="append", help="env id (repeatable); default: every registered task")
    parser.add_argument("--recipe", action="append", choices=RECIPES, help="default: all three")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-limit", type=int, default=100, help="items per validation/test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--rerun", action="store_true", help="run even when a result with these settings exists")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--progress", action="store_true", help="progress bars inside each episode")
    args = parser.parse_args(argv)
    console = Console()
    tasks = args.task or [t["env_id"] for t in ftdojo_gym.list_tasks() if t["env_id"] != "FTDojo/TableBench-v0"]
    recipes = args.recipe or list(RECIPES)
    results = load_results(args.out)

    def write_table() -> None:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.table, render_table(results))

    if not args.table_only:
        # The grader fingerprint reads the grading code's source from disk; take it now, for the
        # code this process runs, so that editing a task file during a long run cannot stamp
        # this run's rows with the edited file's hash (cached per task class and version).
        from ftdojo_gym.tasks import make_task

        for task_id in tasks:
            grader_fingerprint(make_task(task_id))
        for task_id in tasks:
            fingerprint = task_fingerprint(task_id, args.seed, None)
            if args.rerun or not any(r["task"] == task_id and r.get("recipe") == CHANCE
                                     and r.get("eval_items") == args.eval_limit and r.get("seed") == args.seed
                                     and r.get("task_fingerprint") == fingerprint for r in results):
                results[:] = append_result(args.out, chance_row(task_id, args, fingerprint))
            for recipe in recipes:
                fingerprint = task_fingerprint(task_id, args.seed, recipe)
                done = any(r["task"] == task_id and r.get("recipe") == recipe and r.get("model") == args.model
                           and r.get("max_steps") == args.max_steps and r.get("eval_items") == args.eval_limit
                           and r.get("seed") == args.seed and r.get("task_fingerprint") == fingerprint
                           for r in results)
                if done and not args.rerun:
                    console.print(f"{task_id} {recipe}: done, skipped (--rerun to repeat)")
                    continue
                results[:] = append_result(args.out, run_recipe(task_id, recipe, args, console, fingerprint))
                write_table()
    write_table()
    console.print(render_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-task table: base model vs the expert recipe vs a harmful-sources recipe, on the hidden test.

For every task (or the ones named), runs two real episodes with the base model
(SmolLM2-135M by default) on this machine:

* **expert** — the scripted Manual-SFT recipe: the task's clean sources,
  length filter and dedupe, the evaluation prompt format, LoRA;
* **harmful** — the same training config on the task's harmful sources
  (:class:`ftdojo_gym.recipes.TaskRecipes` ``harmful``), without curation;

and records the base model's, the expert's and the harmful recipe's
hidden-test scores. Results are appended to a JSON file as each episode ends,
so an interrupted sweep resumes where it stopped; the markdown table is
rewritten from that file after every episode.

    python -m ftdojo_benchmarks.task_table                         # all tasks (hours on a CPU)
    python -m ftdojo_benchmarks.task_table --task FTDojo/AIME-v0   # one task
    python -m ftdojo_benchmarks.task_table --table-only            # re-render the table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
from ftdojo_agents.manual_sft import ManualSFTAgent
from rich.console import Console

import ftdojo_gym
from ftdojo_gym.data.workspace import atomic_write_text
from ftdojo_gym.recipes import TaskRecipes, task_recipes
from ftdojo_gym.tasks.base import Task

RECIPES = ("expert", "harmful")
DEFAULT_OUT = Path("benchmarks/results/task_table.json")
DEFAULT_TABLE = Path("docs/tasks/results.md")


def task_fingerprint(task_id: str, seed: int = 0, recipe: str | None = None) -> str:
    """A hash of the task's evaluation items and sources under ``seed`` and, with
    ``recipe``, of that recipe's sources and templates: results measured on other
    data or with another recipe are stale. (Grader changes are not covered.)"""
    from ftdojo_gym.tasks import make_task

    task = make_task(task_id)
    recipes = _recipes(task)
    digest = hashlib.sha256()
    if recipe == "expert":
        digest.update(json.dumps([recipes.clean_sources, recipes.expert_template]).encode())
    elif recipe == "harmful":
        digest.update(json.dumps(recipes.harmful.templates, sort_keys=True).encode())
    for item in task.eval_items(seed):
        digest.update(f"{item.id}\x00{item.prompt}\x00{item.reference}\x00".encode())
    for name, ds in task.sources(seed).items():
        digest.update(f"{name}\x00{len(ds)}\x00{json.dumps(ds[: min(len(ds), 200)], sort_keys=True)}".encode())
    return digest.hexdigest()[:12]


def run_recipe(task_id: str, recipe: str, args: argparse.Namespace, console: Console,
               fingerprint: str) -> dict[str, Any]:
    """One episode of ``recipe`` on ``task_id``; returns the scores and costs, stamped
    with ``fingerprint`` (:func:`task_fingerprint` of the task, seed and recipe)."""
    env = gym.make(task_id, base_model=args.model, eval_limit=args.eval_limit, progress=args.progress)
    task = env.unwrapped.task
    recipes = _recipes(task)
    agent = ManualSFTAgent(max_steps=args.max_steps, learning_rate=args.lr, curate=recipe == "expert",
                           evaluate_base=False)
    info_task: dict[str, Any] = {"task": task.name, "clean_sources": recipes.clean_sources,
                                 "expert_template": recipes.expert_template}
    if recipe == "harmful":
        if not recipes.harmful.templates:
            env.close()
            raise ValueError(f"{task.name} declares no harmful recipe")
        info_task["recipe"] = recipes.harmful.templates
    agent.reset(info_task)
    start = time.monotonic()
    obs, info = env.reset(seed=args.seed)
    errors: list[str] = []
    done = False
    while not done:
        action = agent.act(obs, info)
        obs, _, terminated, truncated, info = env.step(action)
        if not info.get("ok"):
            errors.append(f"{action['tool']}: {info.get('error_class')} {str(info['result'].get('error'))[:200]}")
        done = terminated or truncated
    sub = info["submission"]
    env.close()
    result = {
        "task": task_id, "recipe": recipe, "model": args.model, "max_steps": args.max_steps,
        "eval_items": args.eval_limit, "seed": args.seed,
        "base_hidden_test": sub["base_hidden_test_score"], "hidden_test": sub["hidden_test_score"],
        "validation": sub["validation_score"], "hidden_test_subsets": sub["hidden_test_subsets"],
        "run": sub["run"], "tokens_trained": sub["tokens_used"], "wall_seconds": round(time.monotonic() - start, 1),
        "errors": errors, "versions": sub["versions"], "task_fingerprint": fingerprint,
    }
    console.print(f"{task_id} {recipe}: base {_pct(result['base_hidden_test'])}, "
                  f"{recipe} {_pct(result['hidden_test'])} (hidden test), {result['wall_seconds']:.0f} s"
                  + (f", errors: {errors}" if errors else ""))
    return result


def _recipes(task: Task) -> TaskRecipes:
    recipes = task_recipes(task)
    if recipes is None:
        raise ValueError(f"{task.name} declares no recipes (ftdojo_gym.recipes.register_recipes)")
    return recipes


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def load_results(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else []


def save_results(path: Path, results: list[dict[str, Any]]) -> None:
    atomic_write_text(path, json.dumps(results, indent=1))


def render_table(results: list[dict[str, Any]]) -> str:
    """Markdown table: one row per task, the latest result of each recipe."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    current: dict[tuple[str, str], str] = {}
    for r in results:
        key = (r["task"], r["recipe"])
        if key not in current:
            current[key] = task_fingerprint(r["task"], r.get("seed", 0), r["recipe"])
        if r.get("task_fingerprint") == current[key]:  # results on older data or recipes are stale
            latest[(r["task"], r["recipe"])] = r
    lines = [
        "# Base model vs expert vs harmful recipe, per task",
        "",
        "Hidden-test scores in % with SmolLM2-135M-Instruct on a 2-core CPU (LoRA r16, lr 1e-3,",
        "linear decay, batch 8), produced by",
        "`python -m ftdojo_benchmarks.task_table` (raw results in `benchmarks/results/task_table.json`).",
        "`expert` is the scripted Manual-SFT recipe on the clean sources; `harmful` trains with",
        "the same config on the task's harmful sources without curation.",
        "",
        "| task | metric | base | expert | harmful | expert - base | harmful < expert | steps x batch | items |",
        "|---|---|---:|---:|---:|---:|:---:|---|---:|",
    ]
    metrics = {t["env_id"]: t["metric"] for t in ftdojo_gym.list_tasks()}
    n_gain = n_harm = n_rows = n_both = 0
    for task_id in metrics:
        e, h = latest.get((task_id, "expert")), latest.get((task_id, "harmful"))
        if not e and not h:
            continue
        n_rows += 1
        base = (e or h)["base_hidden_test"]
        gain = None if e is None else 100 * (e["hidden_test"] - base)
        harm_ok = None if (e is None or h is None) else h["hidden_test"] < e["hidden_test"]
        n_gain += gain is not None and gain >= 10
        n_harm += bool(harm_ok)
        n_both += harm_ok is not None
        ref = e or h
        lines.append(
            f"| {task_id} | {metrics[task_id]} | {_pct(base)} | {_pct(e and e['hidden_test'])} | "
            f"{_pct(h and h['hidden_test'])} | {'-' if gain is None else f'{gain:+.1f}'} | "
            f"{'-' if harm_ok is None else ('yes' if harm_ok else 'no')} | {ref['max_steps']} x 8 | "
            f"{ref['eval_items'] or 100} |"
        )
    lines += ["", f"Expert at least 10 points above base: {n_gain} of {n_rows} tasks measured; "
              f"harmful below expert: {n_harm} of {n_both} tasks with both recipes measured.", "", *READING, ""]
    return "\n".join(lines)


#: How to read the table (facts of the tasks and of the protocol, not of one run).
READING = (
    "## Reading the table",
    "",
    "- The base model scores 0 everywhere because it never writes the strict answer formats, so the",
    "  +10 bar is met by format learning alone; the content is in how far a recipe gets past chance.",
    "- Chance levels: TableBench-FactChecking is Yes/No (50 % by guessing), Patent-PI4PC picks one of",
    "  five paragraphs (20 %), Patent-NOC4PC has three classes (a constant answer scores macro-F1",
    "  16.7), FinanceIQ is four-option multiple choice (25 %). An expert at those levels learned",
    "  the format, not the task, in 320 samples of SmolLM2-135M; there, expert vs harmful is noise.",
    "- With 50 hidden items a score near 50 % has a standard error of about 7 points.",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", action="append", help="env id (repeatable); default: every registered task")
    parser.add_argument("--recipe", action="append", choices=RECIPES, help="default: both")
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
    if not args.table_only:
        for task_id in tasks:
            for recipe in recipes:
                fingerprint = task_fingerprint(task_id, args.seed, recipe)
                done = any(r["task"] == task_id and r["recipe"] == recipe and r["model"] == args.model
                           and r["max_steps"] == args.max_steps and r["eval_items"] == args.eval_limit
                           and r["seed"] == args.seed and r.get("task_fingerprint") == fingerprint
                           for r in results)
                if done and not args.rerun:
                    console.print(f"{task_id} {recipe}: done, skipped (--rerun to repeat)")
                    continue
                results.append(run_recipe(task_id, recipe, args, console, fingerprint))
                save_results(args.out, results)
                args.table.parent.mkdir(parents=True, exist_ok=True)
                args.table.write_text(render_table(results))
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(render_table(results))
    console.print(render_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

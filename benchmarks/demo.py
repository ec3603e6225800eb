"""`make demo`: one FT-Dojo episode with real fine-tuning, driven by the scripted expert.

Runs the "Manual SFT" recipe (clean sources, dedupe and length filter, the
evaluation prompt format, LoRA) on ``FTDojo/TableBench-v0`` with SmolLM2-135M on
the CPU, and prints the base model against the fine-tuned one on the visible
validation split and the hidden test split.

    python -m ftdojo_benchmarks.demo [--task FTDojo/TableBench-v0] [--model smollm2-135m] [--max-steps 48]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
from rich.console import Console
from rich.table import Table

import ftdojo_gym  # noqa: F401  (registers the envs)
from ftdojo_agents.manual_sft import ManualSFTAgent
from ftdojo_gym.observations import latest_result
from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.results import EvaluationResult, RunResult
from ftdojo_gym.rules import MAX_TRAIN_SAMPLES


def run_episode(args: argparse.Namespace, console: Console) -> dict:
    env = gym.make(
        args.task,
        base_model=args.model,
        token_budget=args.token_budget,
        eval_limit=args.eval_limit,
        workdir=args.workdir,
        outcome_cache=not args.no_cache,
        progress=True,
    )
    task = env.unwrapped.task
    agent = ManualSFTAgent(max_steps=args.max_steps, learning_rate=args.lr, samples=args.samples)
    recipes = task_recipes(task)
    agent.reset({"task": task.name, "clean_sources": recipes.clean_sources, "expert_template": recipes.expert_template})
    start = time.monotonic()
    obs, info = env.reset(seed=args.seed)
    console.print(f"[bold]FT-Dojo demo[/bold]: {args.task}, base model {args.model}, workspace {info['workdir']}")
    done = False
    step = 0
    base_val: float | None = None
    train_seconds: dict[str, float] = {}
    while not done:
        action = agent.act(obs, info)
        step += 1
        console.print(f"[cyan]step {step}[/cyan] {action['tool']} {json.dumps(action['args'])[:160]}")
        obs, reward, terminated, truncated, info = env.step(action)
        result = latest_result(info)
        if isinstance(result, EvaluationResult) and result.run == "base":
            base_val = result.score
        elif isinstance(result, RunResult):
            train_seconds[result.run_id] = result.seconds
            if result.cached:
                console.print("   (replayed from the outcome cache: the same run was trained before; "
                              "--no-cache trains again)", highlight=False)
        summary = _summarise(info)
        if summary:
            console.print("   " + summary, highlight=False)
        done = terminated or truncated
    wall = time.monotonic() - start
    sub = info["submission"]
    env.close()
    return {
        "task": args.task,
        "model": args.model,
        "base_validation": base_val,
        "base_hidden_test": sub["base_hidden_test_score"],
        "run": sub["run"],
        "validation": sub["validation_score"],
        "hidden_test": sub["hidden_test_score"],
        "hidden_test_subsets": sub["hidden_test_subsets"],
        "tokens_trained": sub["tokens_used"],
        "train_seconds": train_seconds.get(sub["run"], 0.0),
        "wall_seconds": round(wall, 1),
    }


def _summarise(info: dict) -> str:
    res = info.get("result", {})
    if not info.get("ok"):
        return f"[red]error ({info.get('error_class')}): {str(res.get('error', ''))[:200]}[/red]"
    tool = info.get("tool")
    if tool == "train":
        return (f"{res['run_id']}: {res['status']}, {res['train_tokens']} tokens in {res['seconds']:.0f} s, "
                f"final loss {res['final_loss']}")
    if tool == "evaluate":
        return f"validation score {100 * res['score']:.1f} ({res['n']} items, {res['seconds']:.0f} s)"
    if tool in ("fetch", "filter", "transform", "mix"):
        return f"{res.get('dataset')}: {res.get('rows')} rows"
    return ""


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_report(r: dict, console: Console) -> None:
    table = Table(title=f"{r['task']} with {r['model']} (scores in %)")
    for col in ("model", "validation", "hidden test", "tokens trained", "train time"):
        table.add_column(col, justify="right" if col != "model" else "left")
    table.add_row("base model", _pct(r["base_validation"]), _pct(r["base_hidden_test"]), "0", "-")
    table.add_row(f"fine-tuned ({r['run']})", _pct(r["validation"]), _pct(r["hidden_test"]),
                  f"{r['tokens_trained']:,}", f"{r['train_seconds']:.0f} s")
    console.print(table)
    console.print("hidden test by subset: " + ", ".join(f"{k} {_pct(v)}" for k, v in r["hidden_test_subsets"].items()))
    delta = 100 * (r["hidden_test"] - r["base_hidden_test"])
    console.print(f"[bold]hidden-test improvement: {delta:+.1f} points[/bold]; episode wall time {r['wall_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="FTDojo/TableBench-v0")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-steps", type=int, default=40, help="optimizer steps of the full run")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--samples", type=int, default=MAX_TRAIN_SAMPLES, help="training samples drawn from the curated data")
    parser.add_argument("--token-budget", type=int, default=None)
    parser.add_argument("--eval-limit", type=int, default=None, help="items per validation/test split (default: task's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--no-cache", action="store_true", help="train and generate for real even when the "
                        "outcome cache holds this run")
    args = parser.parse_args(argv)
    console = Console()
    result = run_episode(args, console)
    print_report(result, console)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

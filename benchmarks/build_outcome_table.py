"""Build an outcome table: real training and evaluation of every recipe of a grid, for tabular mode.

For each recipe of :class:`ftdojo_gym.recipe_grid.RecipeGrid` this runs one live
episode on the base model (SmolLM2-135M by default): the recipe's data steps,
one LoRA run, the validation score, and a submission of that run (its
hidden-test score). Each finished recipe is appended to the table, which is
rewritten atomically with its fingerprint file after every recipe, so an
interrupted build resumes where it stopped. The format is documented in
:mod:`ftdojo_gym.outcome_table`.

    python -m ftdojo_benchmarks.build_outcome_table --task FTDojo/FinanceIQ-v0          # 24 recipes, hours on a CPU
    python -m ftdojo_benchmarks.build_outcome_table --task FTDojo/FinanceIQ-v0 --lock /tmp/ftdojo-smollm2.lock
    python -m ftdojo_benchmarks.build_outcome_table --task FTDojo/AIME-v0 --model tiny --eval-limit 2 \\
        --learning-rates 1e-3 --steps 2 --out /tmp/aime.jsonl                           # a toy table in seconds

``--threads N`` gives the model worker N compute threads (default: all
cores), so a build can share a small machine with other work.
``--lock FILE`` takes an exclusive ``flock`` on FILE around each recipe, so
that other trainings on the same machine (calibrations, other builds) take
turns instead of slowing each other down.

Several builds of the same table may run at once (e.g. two one-thread processes
on a 2-core machine, ``taskset -c 0`` and ``taskset -c 1`` with ``--threads 1``):
each recipe is claimed with a non-blocking ``flock`` on its own claim file
(released when its process ends, also by ``kill -9``), so no recipe runs twice,
and every finished recipe is merged into the table under an exclusive lock on
``<table>.lock``, re-reading it first, so no process overwrites another's rows.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
from rich.console import Console

import ftdojo_gym  # noqa: F401  (registers the envs)
from ftdojo_gym import versions
from ftdojo_gym.data.workspace import atomic_write_text
from ftdojo_gym.model_process.resident import PRECISIONS, resolve_precision
from ftdojo_gym.model_process.sft import TRAIN_PATH_REVISION
from ftdojo_gym.models import model_fingerprint, resolve_model
from ftdojo_gym.observations import latest_result
from ftdojo_gym.outcome_cache import run_key
from ftdojo_gym.outcome_table import (
    FORMAT,
    UNRECORDED_EVAL_PRECISION,
    UNRECORDED_TRAIN_PATH,
    fingerprint_of,
)
from ftdojo_gym.recipe_grid import RecipeGrid, describe, recipe_actions
from ftdojo_gym.results import EvaluationResult, RunResult, SubmissionResult
from ftdojo_gym.tasks import make_task
from ftdojo_gym.tasks.fingerprint import grader_fingerprint


@contextlib.contextmanager
def machine_lock(path: str | None) -> Iterator[None]:
    """An exclusive flock on ``path`` (no-op without one)."""
    if not path:
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_table(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The manifest and recipe records of a (possibly partial) table; nothing when absent."""
    if not path.is_file():
        return None, []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    manifest = records[0] if records and records[0].get("kind") == "manifest" else None
    return manifest, [r for r in records if r.get("kind") == "recipe"]


def write_table(path: Path, manifest: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """The table and its ``.sha256`` fingerprint, each written atomically."""
    lines = [json.dumps(manifest, sort_keys=True)] + [json.dumps(r, sort_keys=True) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    atomic_write_text(path.with_name(path.name + ".sha256"), fingerprint_of(lines) + "  " + path.name + "\n")


@contextlib.contextmanager
def table_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on ``<path>.lock``, for a read-merge-write of the table."""
    path.parent.mkdir(parents=True, exist_ok=True)  # a first build into a new folder
    with machine_lock(str(path.with_name(path.name + ".lock"))):
        yield


@contextlib.contextmanager
def claim(table: Path, what: str) -> Iterator[bool]:
    """Try to claim ``what`` (a recipe, or the base model's evaluation) of ``table`` for this
    process: yields True while this process holds it, False when another process does. The
    claim is a non-blocking flock on a file in the temp folder, released when the block ends
    or the process dies."""
    digest = hashlib.sha256(f"{table.resolve()}\n{what}".encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / "ftdojo-table-claims"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{digest}.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_SAME_SETTINGS = ("task", "task_version", "data_seed", "base_model_fingerprint", "eval_limit", "grid", "grader",
                  "eval_precision", "train_path")


def _same_settings(old: dict[str, Any] | None, manifest: dict[str, Any]) -> bool:
    """Whether a table on disk (its manifest ``old``) was built for ``manifest``'s settings
    (a table without ``eval_precision`` was evaluated in fp32, one without ``train_path`` trained
    by revision 1 of the training path: a resumed build never mixes two numerics)."""
    old = None if old is None else {"eval_precision": UNRECORDED_EVAL_PRECISION, "train_path": UNRECORDED_TRAIN_PATH,
                                    **old}
    return old is not None and all(old.get(k) == manifest[k] for k in _SAME_SETTINGS)


def _recipe_id(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, sort_keys=True)


def merge_into_table(out: Path, manifest: dict[str, Any], grid: RecipeGrid, record: dict[str, Any],
                     base: dict[str, Any] | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Add ``record`` (and ``base``, the base model's scores) to the table at ``out`` as it is
    on disk now (another build may have added rows since this one started), under the
    table's lock; rows in grid order; the table is written atomically. Returns what was written."""
    order = {_recipe_id(r): i for i, r in enumerate(grid.recipes())}
    with table_lock(out):
        old, rows = read_table(out)
        if not _same_settings(old, manifest):
            old, rows = None, []
        merged = {_recipe_id(r["recipe"]): r for r in rows}
        merged[_recipe_id(record["recipe"])] = record
        written = dict(manifest)
        written["base"] = base or (old or {}).get("base") or manifest.get("base")
        written["built"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        records = sorted(merged.values(), key=lambda r: order.get(_recipe_id(r["recipe"]), len(order)))
        write_table(out, written, records)
    return written, records


def run_recipe(env: gym.Env, args: argparse.Namespace, grid: RecipeGrid, recipe: dict[str, Any], with_base: bool
               ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One live episode of ``recipe`` in ``env``: its table record and, with ``with_base``, the base model's scores."""
    env.reset(seed=0)
    base_val = None
    if with_base:
        *_, info = env.step({"tool": "evaluate", "args": {"run": "base"}})
        base_val = latest_result(info)
    task = env.unwrapped.task
    run = evaluation = None
    for action in recipe_actions(task, grid, recipe):
        *_, info = env.step(action)
        result = latest_result(info)
        if not info["ok"]:
            raise RuntimeError(f"{describe(recipe)}: {action['tool']} failed: {result.render()[:500]}")
        run = result if isinstance(result, RunResult) else run
        evaluation = result if isinstance(result, EvaluationResult) else evaluation
    *_, info = env.step({"tool": "submit", "args": {"run": run.run_id}})
    submission = latest_result(info)
    assert isinstance(submission, SubmissionResult), submission
    workdir = env.unwrapped.workdir
    rows = [json.loads(line) for line in (workdir / "runs" / run.run_id / "train.jsonl").read_text().splitlines()]
    key = run_key(rows=rows, config=run.config, debug=False, base_model=model_fingerprint(resolve_model(args.model)),
                  task=task.name, task_version=task.version, data_seed=0, libraries=False)
    record = {
        "kind": "recipe", "recipe": recipe, "key": key, "lineage": env.unwrapped.lineage[run.dataset],
        "config": run.config,
        "train": {k: getattr(run, k) for k in ("status", "train_tokens", "seconds", "steps", "final_loss",
                                              "loss_head", "loss_tail")},
        "validation": {"score": evaluation.score, "subsets": evaluation.subsets, "n": evaluation.n},
        "hidden_test": {"score": submission.hidden_test_score, "subsets": submission.hidden_test_subsets,
                        "n": args.eval_limit},
    }
    base = None
    if with_base:
        base = {"validation": {"score": base_val.score, "subsets": base_val.subsets},
                "hidden_test": {"score": submission.base_hidden_test_score, "subsets": {}}}
    return record, base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="env id, e.g. FTDojo/FinanceIQ-v0")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--eval-limit", type=int, default=50, help="items per validation/hidden-test split")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=list(RecipeGrid().learning_rate))
    parser.add_argument("--steps", type=int, nargs="+", default=list(RecipeGrid().max_steps))
    parser.add_argument("--data", nargs="+", default=list(RecipeGrid().data))
    parser.add_argument("--out", default=None, help="table file (default: ftdojo_gym/outcome_tables/<task>.jsonl)")
    parser.add_argument("--lock", default=None, help="flock this file around each recipe's training")
    parser.add_argument("--threads", type=int, default=None,
                        help="the model worker's compute threads (default: all cores; 1 to share a 2-core machine)")
    parser.add_argument("--eval-precision", choices=PRECISIONS, default="auto",
                        help="generation numerics (auto: bf16 where the hardware has fast bf16, else fp32)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    console = Console()
    task = make_task(args.task)
    grid = RecipeGrid(data=tuple(args.data), learning_rate=tuple(args.learning_rates), max_steps=tuple(args.steps))
    out = Path(args.out or Path(ftdojo_gym.__file__).parent / "outcome_tables" / f"{task.name}.jsonl")
    manifest = {
        "kind": "manifest", "format": FORMAT, "task": task.name, "task_version": task.version, "data_seed": 0,
        "base_model": args.model, "base_model_fingerprint": model_fingerprint(resolve_model(args.model)),
        "eval_limit": args.eval_limit, "grid": grid.to_dict(), "grader": grader_fingerprint(task),
        "versions": versions.library_versions(), "base": None,
        "eval_precision": resolve_precision(args.eval_precision),
        "train_path": TRAIN_PATH_REVISION,
    }
    old, records = read_table(out)
    if _same_settings(old, manifest):
        manifest["base"] = old.get("base")
    elif old is not None:
        console.print(f"[yellow]{out} was built for other settings; starting it over[/yellow]")
        records = []
    done = {_recipe_id(r["recipe"]) for r in records}
    todo = [r for r in grid.recipes() if _recipe_id(r) not in done]
    console.print(f"{task.name}: {len(grid)} recipes, {len(done)} done, {len(todo)} to run -> {out}")
    # One env for every recipe: the model process (and its imports) start once.
    env = gym.make(args.task, base_model=args.model, eval_limit=args.eval_limit, progress=args.progress,
                   max_episode_steps=100, worker_threads=args.threads, eval_precision=manifest["eval_precision"])
    try:
        build(env, args, grid, manifest, todo, out, console)
    finally:
        env.close()
    return 0


def build(env: gym.Env, args: argparse.Namespace, grid: RecipeGrid, manifest: dict[str, Any],
          todo: list[dict[str, Any]], out: Path, console: Console) -> None:
    """Run every recipe of ``todo`` that no other build of ``out`` has claimed or finished."""
    with contextlib.ExitStack() as stack:
        # The base model is evaluated once, by the build that claims it (while it runs).
        base_claimed = manifest["base"] is None and stack.enter_context(claim(out, "base"))
        for recipe in todo:
            with claim(out, _recipe_id(recipe)) as mine:
                if not mine:
                    continue  # another build is running it
                on_disk, rows = read_table(out)
                if _same_settings(on_disk, manifest) and _recipe_id(recipe) in {_recipe_id(r["recipe"]) for r in rows}:
                    continue  # another build finished it
                t0 = time.monotonic()
                with machine_lock(args.lock):
                    record, base = run_recipe(env, args, grid, recipe, with_base=base_claimed)
                base_claimed = False
                manifest, records = merge_into_table(out, manifest, grid, record, base)
                console.print(f"[{len(records)}/{len(grid)}] {describe(recipe)}: "
                              f"val {100 * record['validation']['score']:.1f}, "
                              f"test {100 * record['hidden_test']['score']:.1f}, "
                              f"{record['train']['train_tokens']} tokens, {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())

"""Tabular mode: a table of real outcomes (built live on the tiny model) serves train, evaluate and
submit; a recipe outside it is an error naming the nearest; a changed or foreign table is refused."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import pytest

import ftdojo_gym  # noqa: F401
from ftdojo_benchmarks import build_outcome_table
from ftdojo_gym.observations import latest_result
from ftdojo_gym.outcome_table import OutcomeTable, OutcomeTableError
from ftdojo_gym.recipe_grid import RecipeGrid, recipe_actions

TASK = "FTDojo/FinanceIQ-v0"


@pytest.fixture(scope="module")
def table(tmp_path_factory, tiny_model):
    import os

    folder = tmp_path_factory.mktemp("table")
    old = os.environ.get("FTDOJO_CACHE")
    os.environ["FTDOJO_CACHE"] = str(folder / "cache")  # a fresh outcome cache: really train
    shutil.copytree(__import__("pathlib").Path(tiny_model).parent, folder / "cache" / "models", dirs_exist_ok=True)
    try:
        assert build_outcome_table.main(["--task", TASK, "--model", "tiny", "--eval-limit", "2", "--learning-rates",
                                         "1e-3", "--steps", "2", "--data", "expert", "harmful",
                                         "--out", str(folder / "FinanceIQ.jsonl")]) == 0
    finally:
        if old is None:
            os.environ.pop("FTDOJO_CACHE")
        else:
            os.environ["FTDOJO_CACHE"] = old
    return folder / "FinanceIQ.jsonl"


def _tabular(path, **kw):
    return gym.make(TASK, base_model="tiny", eval_limit=2, mode="tabular", outcome_table=str(path), **kw)


def test_the_table_holds_every_recipe_with_real_scores(table):
    t = OutcomeTable.load(table)
    assert len(t) == 4 and t.manifest["task"] == "FinanceIQ" and t.manifest["base"]["validation"]["score"] >= 0
    assert all(e.train["train_tokens"] > 0 and 0 <= e.hidden_test["score"] <= 1 for e in t)
    assert len({e.key for e in t}) == 4
    assert t.grid_size == 4 and t.complete


def test_a_table_records_its_generation_precision_and_tabular_episodes_report_it(table, tmp_path):
    """Catches: a table whose evaluations' numerics are not recorded, a build that resumes a
    table evaluated in another precision, tabular submissions that claim the env's precision."""
    from ftdojo_gym.model_process import sft
    from ftdojo_gym.model_process.resident import resolve_precision

    manifest = json.loads(table.read_text().splitlines()[0])
    assert manifest["eval_precision"] == resolve_precision("auto")
    assert OutcomeTable.load(table).eval_precision == manifest["eval_precision"]
    old = {k: v for k, v in manifest.items() if k != "eval_precision"}  # built before it was recorded
    assert build_outcome_table._same_settings(old, {**manifest, "eval_precision": "fp32"})
    assert not build_outcome_table._same_settings(old, {**manifest, "eval_precision": "bf16"})
    assert not build_outcome_table._same_settings(manifest, {**manifest, "eval_precision": "other"})
    # The training path's revision likewise: a table without one was trained by revision 1.
    assert manifest["train_path"] == sft.TRAIN_PATH_REVISION
    old = {k: v for k, v in manifest.items() if k != "train_path"}
    assert build_outcome_table._same_settings(old, {**manifest, "train_path": 1})
    assert not build_outcome_table._same_settings(old, {**manifest, "train_path": 2})
    lines = table.read_text().splitlines()
    other = tmp_path / "FinanceIQ.jsonl"
    build_outcome_table.write_table(other, {**manifest, "eval_precision": "fp32"}, [json.loads(x) for x in lines[1:]])
    assert OutcomeTable.load(other).eval_precision == "fp32"
    env = _tabular(other, eval_precision="bf16")
    try:
        env.reset(seed=0)
        assert env.unwrapped._settings.eval_precision == "fp32"  # the table's, not the option's
        _, _, _, _, info = env.step({"tool": "submit", "args": {}})
        assert info["submission"]["versions"]["eval_precision"] == "fp32"
    finally:
        env.close()


def test_a_table_still_being_built_is_not_complete(table, tmp_path):
    """The builder rewrites the table after each recipe: a partial table loads (its fingerprint
    is rewritten with it) but says it is not complete, so figures over "every recipe" skip it."""
    lines = table.read_text().splitlines()
    partial = tmp_path / "FinanceIQ.jsonl"
    build_outcome_table.write_table(partial, json.loads(lines[0]), [json.loads(x) for x in lines[1:3]])
    t = OutcomeTable.load(partial)
    assert len(t) == 2 and t.grid_size == 4 and not t.complete


def test_tabular_mode_replays_each_recipe_without_training(table):
    t = OutcomeTable.load(table)
    grid = RecipeGrid.from_dict(t.manifest["grid"])
    env = _tabular(table)
    try:
        for recipe in grid.recipes():
            entry = next(e for e in t if e.recipe == recipe)
            env.reset(seed=0)
            for action in recipe_actions(env.unwrapped.task, grid, recipe):
                *_, info = env.step(action)
                assert info["ok"], latest_result(info).render()
                if action["tool"] == "train":
                    assert info["cached"] and info["accounting"]["tokens_trained"] == entry.train["train_tokens"]
            assert latest_result(info).score == entry.validation["score"]
            _, reward, terminated, _, info = env.step({"tool": "submit", "args": {}})
            assert terminated and reward == entry.hidden_test["score"]
        assert env.unwrapped._worker.pid is None  # no model process was ever started
    finally:
        env.close()


def test_a_recipe_outside_the_table_is_a_config_error_naming_the_nearest(table):
    t = OutcomeTable.load(table)
    grid = RecipeGrid.from_dict(t.manifest["grid"])
    env = _tabular(table)
    try:
        env.reset(seed=0)
        actions = recipe_actions(env.unwrapped.task, grid, {"data": "expert", "curate": True, "learning_rate": 5e-3,
                                                            "max_steps": 2})
        for action in actions[:-1]:
            *_, info = env.step(action)
        assert not info["ok"] and info["error_class"] == "CONFIG"
        text = latest_result(info).render()
        assert "not in the outcome table" in text and "data=expert curate=yes lr=0.001 steps=2" in text
        *_, info = env.step({"tool": "train", "args": {"dataset": "train_mix", "debug": True}})
        assert info["error_class"] == "CONFIG"  # debug runs are never in a table
    finally:
        env.close()


def test_a_changed_or_foreign_table_is_refused(table, tmp_path):
    bad = tmp_path / "FinanceIQ.jsonl"
    lines = table.read_text().splitlines()
    record = json.loads(lines[1])
    record["hidden_test"]["score"] = 1.0
    bad.write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    shutil.copy(table.with_name(table.name + ".sha256"), tmp_path / "FinanceIQ.jsonl.sha256")
    with pytest.raises(OutcomeTableError, match="fingerprint"):
        _tabular(bad)
    with pytest.raises(OutcomeTableError, match="other settings"):
        gym.make("FTDojo/FinanceIQ-v0", base_model="tiny", eval_limit=3, mode="tabular", outcome_table=str(table))
    with pytest.raises(ValueError, match="mode"):
        gym.make(TASK, base_model="tiny", mode="cached")


def test_two_builds_of_one_table_at_once_run_each_recipe_once(tiny_model, tmp_path):
    """Two build processes started together on the same table (as on a 2-core machine, one
    thread each) share the grid: every recipe is run by exactly one of them, each merges its
    rows into the file, and the result is the whole grid with the base model's scores."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    shutil.copytree(__import__("pathlib").Path(tiny_model).parent, cache / "models", dirs_exist_ok=True)
    env = {**os.environ, "FTDOJO_CACHE": str(cache), "OMP_NUM_THREADS": "1"}  # a fresh outcome cache: really train
    out = tmp_path / "not-yet-made" / "FinanceIQ.jsonl"  # a first build makes its folder (a fresh cache)
    argv = [sys.executable, "-m", "ftdojo_benchmarks.build_outcome_table", "--task", TASK, "--model", "tiny",
            "--eval-limit", "2", "--learning-rates", "1e-3", "3e-2", "--steps", "1", "2", "--data", "expert",
            "--threads", "1", "--out", str(out)]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    ran = [line for log in logs for line in log.splitlines() if "/8] " in line]
    t = OutcomeTable.load(out)
    assert t.grid_size == 8 and len(t) == 8 and t.complete
    assert len({json.dumps(e.recipe, sort_keys=True) for e in t}) == 8
    assert len(ran) == 8, logs  # no recipe twice
    assert all(any("/8] " in line for line in log.splitlines()) for log in logs), logs  # both did work
    assert t.manifest["base"] is not None and t.manifest["base"]["validation"]["score"] >= 0
    grid_order = [json.dumps(r, sort_keys=True) for r in RecipeGrid.from_dict(t.manifest["grid"]).recipes()]
    assert [json.dumps(e.recipe, sort_keys=True) for e in t] == grid_order


def _shipped_tables():
    from importlib import resources

    from ftdojo_gym.outcome_table import SHIPPED

    return sorted(p.name.removesuffix(".jsonl") for p in resources.files(SHIPPED).iterdir()
                  if p.name.endswith(".jsonl"))


@pytest.mark.parametrize("name", _shipped_tables())
def test_every_shipped_table_is_complete_and_current(name):
    """A shipped table still matches its task: ``gym.make(id, mode="tabular")`` with the table's
    base model and split size loads it (same task version, grader, data seed and base model
    files), and it holds its whole grid. A task change that moves any of these without a
    rebuilt table fails here."""
    from ftdojo_benchmarks.rl_figures import env_id_of, env_kwargs

    table = OutcomeTable.shipped(name)
    assert table.complete, f"{name}: {len(table)} of {table.grid_size} recipes"
    kwargs = {k: v for k, v in env_kwargs(table).items() if k != "outcome_table"}  # the shipped one by default
    env = gym.make(env_id_of(table), **kwargs)
    try:
        obs, info = env.reset(seed=0)
        assert obs is not None
    finally:
        env.close()

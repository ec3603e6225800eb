"""The episode state in-process: its observation, the best validated run, and save/load for resume.

Fast (no model): written against mutation testing (``tools/mutation.sh ftdojo_gym/episode.py``);
the end-to-end resume after a kill -9 is in ``test_env_resume.py``."""

from __future__ import annotations

import json
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
from datasets import Dataset

from ftdojo_gym.budget import Budget
from ftdojo_gym.data.workspace import DataWorkspace
from ftdojo_gym.episode import (
    STATE_FILE,
    EpisodeSettings,
    EpisodeState,
    identity,
    load_state,
    save_state,
)
from ftdojo_gym.observations import EpisodeLog, budget_dict, metrics_dict
from ftdojo_gym.results import EvaluationResult, RunRecord
from ftdojo_gym.training_config import TrainConfig


def settings(**changes) -> EpisodeSettings:
    values = {"task": SimpleNamespace(name="Demo", version="3"), "base_model": "/models/tiny", "base_model_name": "tiny",
              "data_seed": 7, "eval_batch_size": 4, "progress": False, "validation_items": [object()] * 5,
              "hidden_test_items": [object()] * 5}
    values.update(changes)
    return EpisodeSettings(**values)


def run(run_id: str, val: float | None = None, status: str = "ok", model_dir: str | None = "dir", **more) -> RunRecord:
    return RunRecord(run_id=run_id, dataset="sft", config={}, debug=False, status=status, val_score=val,
                     model_dir=model_dir, **more)


def evaluation(run_id: str, score: float) -> EvaluationResult:
    return EvaluationResult(run=run_id, score=score, subsets={"all": score}, n=5)


def state(tmp_path, token_counter, **changes) -> EpisodeState:
    values = {"settings": settings(), "workdir": tmp_path,
              "data": DataWorkspace({"src": Dataset.from_list([{"q": "a"}, {"q": "b"}])}, token_counter, tmp_path),
              "config": TrainConfig(), "budget": Budget(1000, None, 20), "log": EpisodeLog(tmp_path / "episode.log", 200),
              "worker": None}
    values.update(changes)
    return EpisodeState(**values)


def test_a_fresh_episode_observes_unknowns_as_minus_one(tmp_path, token_counter):
    obs = state(tmp_path, token_counter).observation()
    assert metrics_dict(obs) == {
        "best_val_score": -1.0, "last_val_score": -1.0, "base_val_score": -1.0, "last_train_loss": -1.0,
        "budget_tokens_left_frac": 1.0, "steps_taken": 0.0, "train_runs_ok": 0.0, "train_runs_failed": 0.0,
        "evaluations": 0.0, "datasets": 0.0, "last_action_ok": 1.0}
    assert budget_dict(obs) == {"tokens_left": 1000.0, "seconds_left": math.inf, "steps_left": 20.0}
    assert obs["log"] == ""


def test_the_observation_counts_what_the_episode_did(tmp_path, token_counter):
    s = state(tmp_path, token_counter, last_val=0.25, last_loss=1.5, last_ok=False)
    s.runs = {"run1": run("run1", 0.5), "run2": run("run2", 0.75, model_dir=None), "run3": run("run3", status="error"),
              "run4": run("run4", status="stopped_budget")}
    s.evaluations = {"base": evaluation("base", 0.125), "run1@all": evaluation("run1", 0.5)}
    s.budget.charge_tokens(250)
    s.budget.take_step()
    s.budget.take_step()
    s.data.fetch("src", None, None, 0, False, 0)
    s.log.write("hello")
    obs = s.observation()
    assert metrics_dict(obs) == {
        "best_val_score": 0.75, "last_val_score": 0.25, "base_val_score": 0.125, "last_train_loss": 1.5,
        "budget_tokens_left_frac": 0.75, "steps_taken": 2.0, "train_runs_ok": 3.0, "train_runs_failed": 1.0,
        "evaluations": 2.0, "datasets": 1.0, "last_action_ok": 0.0}
    assert obs["log"] == "hello" and budget_dict(obs)["steps_left"] == 18.0 and obs["metrics"].dtype == np.float32
    assert [r.run_id for r in s.successful_runs()] == ["run1", "run2", "run4"]


def test_the_best_validated_run_is_the_highest_scored_run_with_a_model_earliest_on_ties(tmp_path, token_counter):
    s = state(tmp_path, token_counter)
    assert s.best_validated_run() is None
    s.runs = {"run1": run("run1"), "run2": run("run2", 0.9, model_dir=None)}
    assert s.best_validated_run() is None  # not validated, or no model to submit
    s.runs.update({"run3": run("run3", 0.4), "run4": run("run4", 0.6), "run5": run("run5", 0.6), "run6": run("run6", 0.1)})
    assert s.best_validated_run().run_id == "run4"
    s.runs["run7"] = run("run7", 0.0)
    assert s.best_validated_run().run_id == "run4"


def test_versions_name_the_task_and_the_base_model():
    found = settings().versions()
    assert found["task"] == "Demo@3" and found["base_model"] == "tiny" and "gymnasium" in found


def test_identity_names_what_a_resumed_episode_must_share():
    assert identity(settings()) == {"task": "Demo", "task_version": "3", "data_seed": 7, "base_model": "tiny",
                                    "validation_items": 5}


def test_save_and_load_give_back_the_episode(tmp_path, token_counter):
    folder = tmp_path / "ep"
    s = state(folder, token_counter, config=TrainConfig(max_steps=3, learning_rate=0.01),
              budget=Budget(1000, 600.0, 20, started=time.monotonic() - 100), last_val=0.5, last_loss=2.0, last_ok=False)
    s.data.fetch("src", "rows", None, 0, False, 0)
    s.data.transform("rows", "{q}?", "{q}!", "sft")
    s.lineage = {"sft": [["fetch", "src"], ["transform", "{q}?"]]}
    s.runs = {"run1": run("run1", 0.5, train_tokens=120, final_loss=2.0), "run2": run("run2", status="error")}
    s.evaluations = {"base": evaluation("base", 0.25)}
    s.budget.charge_tokens(300)
    for _ in range(4):
        s.budget.take_step()
    s.log.write("line one")
    for name in ("run1", "run2", "run9"):  # run9 was in flight when the process died
        (folder / "runs" / name).mkdir(parents=True)
    save_state(s)
    assert json.loads((folder / STATE_FILE).read_text())["format"] == 1

    data = DataWorkspace({"src": Dataset.from_list([{"q": "a"}, {"q": "b"}])}, token_counter, folder)
    log = EpisodeLog(folder / "episode.log", 200)
    same = settings()
    back = load_state(folder, same, data, log, worker="w")
    assert back.settings is same and back.data is data and back.log is log and back.worker == "w"
    assert back.workdir == folder
    assert back.config == s.config and back.runs == s.runs and back.evaluations == s.evaluations
    assert back.lineage == s.lineage
    assert (back.last_val, back.last_loss, back.last_ok) == (0.5, 2.0, False)
    assert {n: list(d["prompt"] if "prompt" in d.features else d["q"]) for n, d in back.data.datasets.items()} == {
        "rows": ["a", "b"], "sft": ["a?", "b?"]}
    b = back.budget
    assert (b.tokens, b.seconds, b.steps, b.tokens_used, b.steps_taken) == (1000, 600.0, 20, 300, 4)
    assert 100 <= b.elapsed() < s.budget.elapsed() + 1  # the clock goes on from where it stopped
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["run1", "run2"]
    assert back.log.tail() == "line one"
    assert back.observation()["metrics"].tolist() == s.observation()["metrics"].tolist()


def test_an_old_save_without_lineage_still_loads(tmp_path, token_counter):
    s = state(tmp_path, token_counter)
    save_state(s)
    snapshot = json.loads((tmp_path / STATE_FILE).read_text())
    del snapshot["lineage"]
    (tmp_path / STATE_FILE).write_text(json.dumps(snapshot))
    back = load_state(tmp_path, settings(), s.data, EpisodeLog(tmp_path / "episode.log", 200), None)
    assert back.lineage == {} and not (tmp_path / "runs").exists()


def test_loading_refuses_what_is_not_this_envs_episode(tmp_path, token_counter):
    s = state(tmp_path, token_counter)
    load = lambda st: load_state(tmp_path, st, s.data, s.log, None)  # noqa: E731
    with pytest.raises(ValueError, match="no saved episode in"):
        load(settings())
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="no saved episode in"):
        load(settings())
    save_state(s)
    for change in ({"task": SimpleNamespace(name="Other", version="3")}, {"task": SimpleNamespace(name="Demo", version="4")},
                   {"data_seed": 8}, {"base_model_name": "smollm2"}, {"validation_items": [object()] * 4}):
        with pytest.raises(ValueError, match="is an episode of .* not of this env"):
            load(settings(**change))
    snapshot = json.loads((tmp_path / STATE_FILE).read_text())
    (tmp_path / STATE_FILE).write_text(json.dumps(dict(snapshot, format=2)))
    with pytest.raises(ValueError, match="has format 2; this version reads 1"):
        load(settings())


def test_save_state_keeps_the_wall_clock_spent(tmp_path, token_counter):
    s = state(tmp_path, token_counter, budget=Budget(1000, 60.0, 20, started=time.monotonic() - 12.5))
    save_state(s)
    assert 12.5 <= json.loads((tmp_path / STATE_FILE).read_text())["budget"]["elapsed"] < 20

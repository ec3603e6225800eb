"""The env's own logic with a scripted model process (no training, no generation): reset, step,
info and accounting, truncation by each budget, errors, views, folders, pickling, options.

Fast: written against mutation testing (``tools/mutation.sh ftdojo_gym/env.py``); the same
contract on the tiny model is in ``test_env_lifecycle.py`` and ``test_core_contract.py``."""

from __future__ import annotations

import functools
import json
import pickle
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import ftdojo_gym.env as env_module
from ftdojo_gym import tools
from ftdojo_gym.actions import usage
from ftdojo_gym.env import FTDojoEnv, check_env_options
from ftdojo_gym.model_process.protocol import GenerateResult
from ftdojo_gym.observations import budget_dict, latest_result, metrics_dict
from ftdojo_gym.outcome_cache import OutcomeCache, open_cache
from ftdojo_gym.results import ErrorResult, SubmissionResult
from ftdojo_gym.rules import MAX_TRAIN_SAMPLES
from ftdojo_gym.tasks import make_task


class ScriptedWorker:
    """Stands in for the model process: answers each prompt with its item's reference (when told to)."""

    instances: list[ScriptedWorker] = []

    def __init__(self, memory_limit_gb=None, **options) -> None:
        self.memory_limit_gb = memory_limit_gb
        self.options = options
        self.generated: list[list[str]] = []
        self.closed = 0
        self.answers: dict[str, str] = {}
        ScriptedWorker.instances.append(self)

    def generate(self, model, adapter, prompts, max_new_tokens, batch_size, timeout, on_progress, precision):
        self.generated.append(list(prompts))
        return GenerateResult(status="ok", outputs=[self.answers.get(p, "no idea") for p in prompts], seconds=0.5)

    def close(self) -> None:
        self.closed += 1


@pytest.fixture(scope="module")
def task():
    """One TableBench task for the module, its sources and items built once (they are immutable)."""
    task = make_task("TableBench")
    sources, items = functools.cache(task.sources), functools.cache(task.eval_items)
    task.sources, task.eval_items = sources, items
    return task


@pytest.fixture
def make(task, tiny_model, isolated_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(env_module, "ModelWorker", ScriptedWorker)
    ScriptedWorker.instances.clear()
    made = []

    def build(**options) -> FTDojoEnv:
        options = {"base_model": "tiny", "eval_limit": 2, "workdir": tmp_path / "ws", **options}
        env = FTDojoEnv(options.pop("task", task), **options)
        made.append(env)
        return env

    yield build
    for env in made:
        env.close()


FETCH = {"tool": "fetch", "args": {"source": "tableinstruct", "limit": 4}}


def test_reset_opens_an_episode_with_its_rules_in_the_log_and_its_facts_in_info(make):
    env = make(token_budget=5000, time_limit_s=600, max_episode_steps=7)
    obs, info = env.reset(seed=0)
    log = obs["log"]
    task = env.task
    assert log.startswith(f"# FT-Dojo task {task.name} (v{task.version}, domain {task.domain}, metric {task.metric})")
    assert "Base model: tiny. Budget: 5000 training tokens, 600 s, 7 steps." in log
    assert f"Each run uses at most {MAX_TRAIN_SAMPLES:,} samples." in log
    assert "Validation split: 2 items (visible through evaluate); hidden test split: 2 items (scored on submit)." in log
    assert log.endswith(usage())
    assert info["task"] == task.name and info["task_version"] == task.version and info["domain"] == task.domain
    assert info["metric"] == task.metric and "submit" in info["tools"] and info["versions"]["base_model"] == "tiny"
    workdir = Path(info["workdir"])
    assert workdir == env.workdir and workdir.name == "episode-001" and workdir.parent.parent == env._root
    assert json.loads((workdir / "state.json").read_text())["budget"]["steps"] == 7
    assert budget_dict(obs) == {"tokens_left": 5000.0, "seconds_left": 600.0, "steps_left": 7.0}
    assert metrics_dict(obs)["steps_taken"] == 0 and env.tokens_used == 0


def test_the_training_seed_follows_the_reset_seed(make):
    env = make()
    env.reset(seed=3)
    first = env.config.seed
    env.reset(seed=3)
    assert env.config.seed == first
    seeds = set()
    for seed in range(6):
        env.reset(seed=seed)
        seeds.add(env.config.seed)
    assert len(seeds) > 3 and all(0 <= s < 10_000 for s in seeds)


def test_a_step_returns_the_typed_result_and_the_accounting(make):
    env = make(max_episode_steps=10)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(FETCH)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["tool"] == "fetch" and info["ok"] is True and info["error_class"] is None and info["cached"] is False
    assert info["result_type"] == "DatasetResult" and info["result"]["rows"] == 4 and "submission" not in info
    acc = info["accounting"]
    assert acc["tokens_trained"] == 0 and acc["tokens_used"] == 0 and acc["steps"] == 1
    assert acc["tokens_budget"] == env.token_budget and 0 <= acc["seconds"] < 60 and 0 <= acc["seconds_elapsed"] < 600
    assert '\n> fetch({"source": "tableinstruct", "limit": 4})' in obs["log"]
    assert latest_result(info).render() in obs["log"]
    assert metrics_dict(obs)["datasets"] == 1 and metrics_dict(obs)["last_action_ok"] == 1.0
    assert budget_dict(obs)["steps_left"] == 9
    saved = json.loads((env.workdir / "state.json").read_text())
    assert saved["datasets"] == ["tableinstruct"] and saved["budget"]["steps_taken"] == 1


def test_errors_never_raise_out_of_step(make, monkeypatch):
    env = make()
    env.reset(seed=0)
    obs, _, _, _, info = env.step("not json {")
    assert info["ok"] is False and info["error_class"] is None and info["tool"] is None
    assert "> invalid action" in obs["log"] and metrics_dict(obs)["last_action_ok"] == 0.0
    _, _, _, _, info = env.step({"tool": "fetch", "args": {"source": "nope"}})
    err = latest_result(info)
    assert info["tool"] == "fetch" and err.error_class == "DATA" and "usage: fetch(" in err.usage
    monkeypatch.setitem(tools.HANDLERS, "inspect", lambda state, args: 1 / 0)
    _, _, terminated, truncated, info = env.step({"tool": "inspect", "args": {}})
    err = latest_result(info)
    assert isinstance(err, ErrorResult) and err.error_class == "ENV" and err.error == "ZeroDivisionError: division by zero"
    assert not terminated and not truncated
    obs, _, _, _, info = env.step({"tool": "list_sources", "args": {}})
    assert info["ok"] and metrics_dict(obs)["last_action_ok"] == 1.0 and metrics_dict(obs)["steps_taken"] == 4


def test_step_before_reset_and_after_the_end_asks_for_a_reset(make):
    env = make()
    with pytest.raises(gym.error.ResetNeeded, match="call reset"):
        env.step(FETCH)
    with pytest.raises(gym.error.ResetNeeded, match="no episode yet"):
        env.config  # noqa: B018
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step({"tool": "submit", "args": {}})
    assert terminated and not truncated and info["submission"]["run"] == "base"
    with pytest.raises(gym.error.ResetNeeded, match="the episode is over"):
        env.step(FETCH)
    env.reset(seed=0)
    assert env.step(FETCH)[4]["ok"]


def test_submit_terminates_with_the_hidden_test_score_as_reward(make):
    env = make()
    env.reset(seed=0)
    worker = ScriptedWorker.instances[-1]
    worker.answers = {it.prompt: it.reference for it in env._settings.hidden_test_items}
    obs, reward, terminated, truncated, info = env.step({"tool": "submit", "args": {}})
    sub = SubmissionResult.model_validate(info["submission"])
    assert terminated and not truncated and sub.automatic is False
    assert reward == sub.hidden_test_score > 0 and info["result"] == info["submission"]
    assert "Submitted base" in obs["log"]


def test_a_failed_submit_does_not_end_the_episode(make):
    env = make()
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step({"tool": "submit", "args": {"run": "run7"}})
    assert (reward, terminated, truncated, info["ok"]) == (0.0, False, False, False)
    assert "submission" not in info


@pytest.mark.parametrize("limit", ["steps", "tokens", "seconds"])
def test_running_out_of_a_budget_truncates_and_submits_automatically(make, monkeypatch, limit):
    env = make(max_episode_steps=2 if limit == "steps" else 50, time_limit_s=0.5 if limit == "seconds" else None)
    env.reset(seed=0)
    worker = ScriptedWorker.instances[-1]
    worker.answers = {it.prompt: it.reference for it in env._settings.hidden_test_items}
    if limit == "tokens":
        env._state.budget.charge_tokens(env.token_budget)
    if limit == "seconds":
        time.sleep(0.6)
    if limit == "steps":
        obs, _, _, truncated, info = env.step({"tool": "list_sources", "args": {}})
        assert not truncated and "submission" not in info
    obs, reward, terminated, truncated, info = env.step({"tool": "list_sources", "args": {}})
    assert truncated and not terminated and info["ok"]
    sub = SubmissionResult.model_validate(info["submission"])
    assert sub.automatic and sub.run == "base" and reward == sub.hidden_test_score > 0
    reason = {"steps": "steps", "tokens": "training tokens", "seconds": "wall-clock time"}[limit]
    assert f"Budget exhausted ({reason}): submitting the best validated run." in obs["log"]
    assert sub.render() in obs["log"]


def test_a_failed_automatic_submission_still_ends_the_episode_without_reward(make, monkeypatch):
    env = make(max_episode_steps=1)
    env.reset(seed=0)
    monkeypatch.setattr(ScriptedWorker.instances[-1], "generate",
                        lambda *a, **k: GenerateResult(status="error", error="boom"))
    _, reward, terminated, truncated, info = env.step({"tool": "list_sources", "args": {}})
    assert truncated and reward == 0.0 and info["submission"]["error_class"] == "ENV"
    assert "boom" in info["submission"]["error"]
    with pytest.raises(gym.error.ResetNeeded):
        env.step(FETCH)


def test_setting_the_step_limit_mid_episode_keeps_the_budget_in_step(make):
    env = make(max_episode_steps=10)
    env.reset(seed=0)
    env.step(FETCH)
    env.max_episode_steps = 4
    assert env.max_episode_steps == 4 and env._options["max_episode_steps"] == 4
    obs, *_ = env.step(FETCH)
    assert budget_dict(obs)["steps_left"] == 2
    env.reset(seed=0)
    assert budget_dict(env._observation())["steps_left"] == 4
    with pytest.raises(ValueError, match="max_episode_steps must be positive"):
        env.set_max_episode_steps(0)
    assert env.max_episode_steps == 4


def test_views_are_copies(make):
    env = make()
    env.reset(seed=0)
    env.step(FETCH)
    env.step({"tool": "evaluate", "args": {"run": "base"}})
    env.runs.clear()
    env.evaluations.clear()
    env.lineage.clear()
    assert set(env.evaluations) == {"base@2", "base"} and list(env.lineage) == ["tableinstruct"]
    assert env.workspace.dataset("tableinstruct").num_rows == 4 and env.outcome_table is None


def test_each_reset_gets_a_new_folder_and_removes_the_last_one(make, tmp_path):
    env = make()
    _, first = env.reset(seed=0)
    _, second = env.reset(seed=0)
    assert Path(second["workdir"]).name == "episode-002" and not Path(first["workdir"]).exists()
    kept = make(keep_episodes=True)
    _, a = kept.reset(seed=0)
    _, b = kept.reset(seed=0)
    assert Path(a["workdir"]).exists() and Path(b["workdir"]).exists()
    assert Path(a["workdir"]).parent == Path(b["workdir"]).parent != Path(first["workdir"]).parent


def test_resume_continues_a_saved_episode_in_its_folder(make):
    env = make()
    env.reset(seed=0)
    env.step(FETCH)
    folder = env.workdir
    other = make()
    obs, info = other.reset(options={"resume": str(folder)})
    assert info["workdir"] == str(folder) and other.workdir == folder
    assert f"# Resumed from {folder} after step 1." in obs["log"]
    assert other.workspace.dataset("tableinstruct").num_rows == 4
    assert other.step({"tool": "inspect", "args": {}})[4]["ok"]
    other.reset(seed=0)
    assert folder.exists()  # a resumed folder is not this env's to remove


def test_close_removes_a_temporary_folder_and_keeps_a_chosen_one(make, tmp_path):
    chosen = make()
    chosen.reset(seed=0)
    folder = chosen.workdir
    chosen.close()
    assert folder.exists() and ScriptedWorker.instances[0].closed == 1
    with pytest.raises(gym.error.ResetNeeded):
        chosen.workdir  # noqa: B018
    temporary = make(workdir=None)
    temporary.reset(seed=0)
    folder = temporary.workdir
    temporary.close()
    assert not folder.parent.exists()


def test_render_ansi_shows_the_observation(make):
    env = make(render_mode="ansi")
    assert env.render() is None
    obs, _ = env.reset(seed=0)
    text = env.render()
    assert obs["log"][-200:] in text
    assert make().render() is None


def test_pickling_keeps_the_options_before_reset_and_refuses_mid_episode(make):
    env = make(task="TableBench", max_episode_steps=9, eval_batch_size=3)
    copy = pickle.loads(pickle.dumps(env))
    try:
        assert copy.max_episode_steps == 9 and copy._settings.eval_batch_size == 3 and copy.task.name == env.task.name
    finally:
        copy.close()
    env.reset(seed=0)
    with pytest.raises(TypeError, match="cannot be pickled or copied"):
        pickle.dumps(env)


def test_the_model_process_gets_the_memory_limit(make):
    make(worker_memory_gb=3.5)
    assert ScriptedWorker.instances[-1].memory_limit_gb == 3.5


@pytest.mark.parametrize(("options", "message"), [
    ({"log_window": 0}, "log_window must be at least 1"),
    ({"eval_batch_size": 0}, "eval_batch_size must be at least 1"),
    ({"eval_limit": 0}, "eval_limit must be at least 1"),
    ({"worker_memory_gb": 0}, "worker_memory_gb must be positive"),
    ({"mode": "fast"}, "mode must be 'live'"),
    ({"outcome_table": "t.json"}, "outcome_table is used in mode='tabular' only"),
    ({"render_mode": "human"}, r"render_mode must be one of \['ansi'\]"),
    ({"eval_precision": "fp16"}, r"eval_precision must be one of \('auto', 'bf16', 'fp32'\)"),
])
def test_bad_options_are_rejected_with_the_reason(options, message):
    values = {"log_window": 10, "eval_batch_size": 1, "eval_limit": None, "worker_memory_gb": None, "render_mode": None}
    check_env_options(**{**values, "log_window": 1, "eval_limit": 1, "worker_memory_gb": 0.1, "render_mode": "ansi"})
    with pytest.raises(ValueError, match=message):
        check_env_options(**{**values, **options})


def test_the_outcome_cache_option(tmp_path, monkeypatch, isolated_cache):
    monkeypatch.delenv("FTDOJO_OUTCOME_CACHE", raising=False)
    assert open_cache(False) is None
    assert isinstance(open_cache(None), OutcomeCache) and isinstance(open_cache(True), OutcomeCache)
    assert open_cache(True).path == isolated_cache / "outcomes.sqlite"
    assert open_cache(tmp_path / "mine.sqlite").path == tmp_path / "mine.sqlite"
    for off in ("0", "false", "no", "off"):
        monkeypatch.setenv("FTDOJO_OUTCOME_CACHE", off)
        assert open_cache(None) is None
    monkeypatch.setenv("FTDOJO_OUTCOME_CACHE", "1")
    assert open_cache(None) is not None


def test_the_observation_space_holds_every_observation(make):
    env = make(log_window=300)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and len(obs["log"]) == 300
    obs, *_ = env.step({"tool": "inspect", "args": {"name": "tableinstruct"}})
    assert env.observation_space.contains(obs)
    assert obs["metrics"].dtype == np.float32


def test_the_accounting_counts_what_each_step_trained_and_took(make, monkeypatch):
    from ftdojo_gym.results import EvaluationResult

    env = make(token_budget=1000)
    env.reset(seed=0)
    charges = iter([50, 30])

    def charging(state, args):
        state.budget.charge_tokens(next(charges))
        time.sleep(0.05)
        return EvaluationResult(run="base", score=0.5, subsets={}, n=2, cached=True)

    monkeypatch.setitem(tools.HANDLERS, "inspect", charging)
    *_, first = env.step({"tool": "inspect", "args": {}})
    *_, second = env.step({"tool": "inspect", "args": {}})
    assert (first["accounting"]["tokens_trained"], first["accounting"]["tokens_used"]) == (50, 50)
    assert (second["accounting"]["tokens_trained"], second["accounting"]["tokens_used"]) == (30, 80)
    assert second["accounting"]["steps"] == 2 and second["accounting"]["tokens_budget"] == 1000
    a, b = first["accounting"], second["accounting"]
    assert 0.05 <= b["seconds"] <= b["seconds_elapsed"] - a["seconds_elapsed"] + 0.002  # the step's own time
    assert b["seconds_elapsed"] >= 0.1
    assert first["cached"] is True and first["result_type"] == "EvaluationResult" and first["result"]["score"] == 0.5
    assert env.tokens_used == 80


def test_options_are_checked_by_the_constructor(make):
    with pytest.raises(ValueError, match="outcome_table is used in mode='tabular' only"):
        make(outcome_table="table.json")


def test_episodes_of_one_env_share_its_data_memo_and_a_resumed_one_counts_tokens(make):
    env = make()
    env.reset(seed=0)
    memo = env.workspace.memo
    assert memo is not None
    env.step(FETCH)
    folder = env.workdir
    other = make()
    other.reset(options={"resume": str(folder)})
    _, _, _, _, info = other.step({"tool": "filter", "args": {"dataset": "tableinstruct", "max_tokens": 100000}})
    assert info["ok"], info["result"]
    env.reset(seed=0)
    assert env.workspace.memo is memo


def test_an_unclosed_env_removes_its_temporary_folder_when_collected(make, task):
    import gc

    env = FTDojoEnv(task, base_model="tiny", eval_limit=2)  # (make() keeps a reference to close it)
    env.reset(seed=0)
    folder = env.workdir.parent
    assert folder.exists()
    env._worker = None  # the scripted worker holds no process
    del env
    gc.collect()
    assert not folder.exists()

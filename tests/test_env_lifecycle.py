"""The env's life and its typed results, on the tiny model: results as records, the step limit
from ``gym.make``, one folder per env, readable rendering, pickling, vector envs, option checks."""

from __future__ import annotations

import copy
import io
import math
import pickle
import warnings
from contextlib import redirect_stdout

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import ftdojo_gym  # noqa: F401  (registers the envs)
from ftdojo_gym.actions import TOOLS, tools_of_kind
from ftdojo_gym.env import FTDojoEnv
from ftdojo_gym.observations import budget_dict, latest_result, metrics_dict, show
from ftdojo_gym.progress import ProgressBar
from ftdojo_gym.results import (
    RESULT_TYPES,
    ConfigResult,
    DatasetResult,
    ErrorResult,
    EvaluationResult,
    RunResult,
    SourceCatalog,
    SubmissionResult,
    WorkspaceView,
)
from ftdojo_gym.tools import HANDLERS

QUICK = {"base_model": "tiny", "eval_limit": 2}
RECIPE = [
    {"tool": "fetch", "args": {"source": "tableinstruct", "limit": 16}},
    {"tool": "transform", "args": {"dataset": "tableinstruct", "prompt_template": "{instruction}\n{input}",
                                   "completion_template": "{output}", "output": "sft"}},
    {"tool": "set_config", "args": {"max_steps": 1, "batch_size": 2, "max_len": 128}},
    {"tool": "train", "args": {"dataset": "sft"}},
]


@pytest.fixture
def env(tiny_model, isolated_cache, tmp_path):
    e = gym.make("FTDojo/TableBench-v0", workdir=tmp_path / "ws", **QUICK)
    yield e
    e.close()


def test_every_tool_has_a_handler_a_kind_and_a_result_type():
    assert set(HANDLERS) == set(TOOLS)
    assert set(tools_of_kind("catalog", "data", "config", "train", "evaluate", "submit")) == set(TOOLS)
    covered = {tool for cls in RESULT_TYPES.values() for tool in cls.tools}
    assert covered == set(TOOLS)


def test_info_carries_a_typed_record_whose_text_is_what_the_log_shows(env):
    obs, info = env.reset(seed=0)
    assert latest_result(info) is None
    expected = [SourceCatalog, DatasetResult, DatasetResult, ConfigResult, RunResult, WorkspaceView]
    actions = [{"tool": "list_sources", "args": {}}, *RECIPE, {"tool": "inspect", "args": {}}]
    for action, kind in zip(actions, expected, strict=True):
        obs, _, _, _, info = env.step(action)
        result = latest_result(info)
        assert type(result) is kind, (action, info["result"])
        assert info["result_type"] == kind.__name__
        assert info["ok"] is result.ok is True
        assert result.render() in obs["log"] or result.render()[-200:] in obs["log"]
    run = latest_result(env.step({"tool": "inspect", "args": {}})[4]).runs[0]
    assert run.run_id == "run1" and run.ok and run.train_tokens > 0


def test_errors_are_typed_with_their_class_and_usage(env):
    env.reset(seed=0)
    _, _, _, _, info = env.step({"tool": "fetch", "args": {"source": "nope"}})
    err = latest_result(info)
    assert isinstance(err, ErrorResult) and not err.ok and err.error_class == "DATA" == info["error_class"]
    assert "usage: fetch(" in err.usage and "nope" in err.error
    _, _, _, _, info = env.step({"tool": "fetch", "args": {"sauce": "x"}})
    err = latest_result(info)
    assert isinstance(err, ErrorResult) and err.error_class is None and info["error_class"] is None
    assert err.render().startswith("ERROR: invalid arguments for fetch")


def test_gym_make_max_episode_steps_is_the_envs_own_limit(tiny_model, isolated_cache, tmp_path):
    env = gym.make("FTDojo/TableBench-v0", max_episode_steps=3, workdir=tmp_path, **QUICK)
    try:
        obs, _ = env.reset(seed=0)
        assert budget_dict(obs)["steps_left"] == 3
        obs, *_ = env.step({"tool": "inspect", "args": {}})
        assert budget_dict(obs)["steps_left"] == 2
        env.step({"tool": "inspect", "args": {}})
        obs, reward, terminated, truncated, info = env.step({"tool": "inspect", "args": {}})
        assert truncated and not terminated
        sub = SubmissionResult.model_validate(info["submission"])  # auto-submitted, not lost
        assert sub.automatic and sub.run == "base" and reward == sub.hidden_test_score
        assert budget_dict(obs)["steps_left"] == 0
    finally:
        env.close()


def test_auto_submission_scores_the_best_validated_run(env, monkeypatch):
    """Two runs; the grader rewards run2's outputs only on validation, so the best validated run is run2."""
    env.reset(seed=0)
    for action in RECIPE:
        env.step(action)
    env.step({"tool": "train", "args": {"dataset": "sft"}})
    task = env.unwrapped.task
    scores = iter([[0.0, 0.0], [1.0, 1.0]])
    monkeypatch.setattr(task, "grade", lambda items, outputs: next(scores, [0.5] * len(items)))
    _, _, _, _, info = env.step({"tool": "evaluate", "args": {"run": "run1"}})
    assert latest_result(info).score == 0.0
    obs, _, _, _, info = env.step({"tool": "evaluate", "args": {"run": "run2"}})
    assert latest_result(info).score == 1.0
    env.unwrapped.set_max_episode_steps(int(metrics_dict(obs)["steps_taken"]) + 1)
    _, _, _, truncated, info = env.step({"tool": "inspect", "args": {}})
    assert truncated and info["submission"]["run"] == "run2" and info["submission"]["automatic"]


def test_two_envs_with_one_workdir_never_share_files(tiny_model, isolated_cache, tmp_path):
    a = gym.make("FTDojo/TableBench-v0", workdir=tmp_path, **QUICK)
    b = gym.make("FTDojo/TableBench-v0", workdir=tmp_path, **QUICK)
    try:
        _, info_a = a.reset(seed=0)
        a.step(RECIPE[0])
        _, info_b = b.reset(seed=0)
        assert info_a["workdir"] != info_b["workdir"]
        assert (a.unwrapped.workdir / "datasets" / "tableinstruct.jsonl").exists()  # b's reset left it alone
        first = a.unwrapped.workdir
        a.reset(seed=1)
        assert not first.exists() and a.unwrapped.workdir.exists()  # the previous episode is cleaned
    finally:
        a.close()
        b.close()
    assert len(list(tmp_path.glob("ftdojo-*/episode-*"))) == 2  # a folder the user chose keeps its last episodes


def test_keep_episodes_keeps_previous_episode_folders(tiny_model, isolated_cache, tmp_path):
    env = gym.make("FTDojo/TableBench-v0", workdir=tmp_path, keep_episodes=True, **QUICK)
    try:
        env.reset(seed=0)
        first = env.unwrapped.workdir
        env.reset(seed=1)
        assert first.exists() and env.unwrapped.workdir != first
    finally:
        env.close()


def test_progress_bar_counts_through_tqdm_update(monkeypatch):
    import tqdm.auto

    updates: list[int] = []

    class Recorder(tqdm.auto.tqdm):
        def update(self, n=1):
            updates.append(n)
            return super().update(n)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    bar = ProgressBar("train", "step", enabled=True)
    with redirect_stdout(io.StringIO()):
        for done in (1, 1, 3, 4):
            bar.update(done, 4)
        bar.close()
    assert updates == [1, 2, 1]  # deltas, so the first rate is 1 step over its real duration


def test_render_ansi_and_show_are_readable(tiny_model, isolated_cache, tmp_path):
    env = gym.make("FTDojo/TableBench-v0", workdir=tmp_path, render_mode="ansi", **QUICK)
    try:
        obs, _ = env.reset(seed=0)
        text = env.render()
        assert text.startswith("Status: best val n/a") and "\n# FT-Dojo task TableBench" in text
        assert "\\n" not in text.splitlines()[2]  # real newlines, not an escaped dict
        buf = io.StringIO()
        with redirect_stdout(buf):
            show(obs)
        assert "tokens left 200000" in buf.getvalue() and "Tools (call as" in buf.getvalue()
    finally:
        env.close()


def test_check_env_gives_no_warning(tiny_model, isolated_cache):
    env = gym.make("FTDojo/TableBench-v0", **QUICK).unwrapped
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=False)
        assert [str(w.message) for w in caught] == []
        obs, _ = env.reset(seed=0)
        assert np.isfinite(obs["budget"]).all() and budget_dict(obs)["seconds_left"] == math.inf
    finally:
        env.close()


def test_pickling_before_reset_rebuilds_and_mid_episode_says_why(tiny_model, isolated_cache, tmp_path):
    env = FTDojoEnv("TableBench", workdir=tmp_path, **QUICK)
    clone = pickle.loads(pickle.dumps(env))
    assert isinstance(clone, FTDojoEnv) and clone.token_budget == env.token_budget
    clone.reset(seed=0)
    clone.close()
    env.reset(seed=0)
    with pytest.raises(TypeError, match="middle of an episode"):
        pickle.dumps(env)
    with pytest.raises(TypeError, match="middle of an episode"):
        copy.deepcopy(env)
    env.close()
    assert isinstance(copy.deepcopy(env), FTDojoEnv)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs_work(mode, tiny_model, isolated_cache, tmp_path):
    envs = gym.make_vec("FTDojo/TableBench-v0", num_envs=2, vectorization_mode=mode, workdir=str(tmp_path), **QUICK)
    try:
        obs, infos = envs.reset(seed=0)
        assert obs["metrics"].shape == (2, len(metrics_dict({"metrics": obs["metrics"][0]})))
        obs, rewards, term, trunc, infos = envs.step(({"tool": "inspect", "args": {}},) * 2)
        assert list(infos["ok"]) == [True, True]
        assert list(infos["result_type"]) == ["WorkspaceView", "WorkspaceView"]
    finally:
        envs.close()


@pytest.mark.parametrize("options, message", [
    ({"eval_limit": 0}, "eval_limit"), ({"eval_limit": -1}, "eval_limit"), ({"token_budget": -5}, "token_budget"),
    ({"time_limit_s": 0}, "time_limit_s"), ({"max_episode_steps": 0}, "max_episode_steps"),
    ({"log_window": 0}, "log_window"), ({"eval_batch_size": 0}, "eval_batch_size"),
    ({"render_mode": "human"}, "render_mode"),
])
def test_bad_constructor_options_fail_clearly(options, message, tiny_model):
    with pytest.raises(ValueError, match=message):
        FTDojoEnv("TableBench", **{**QUICK, **options})


def test_typed_results_round_trip_through_json(env):
    env.reset(seed=0)
    for action in RECIPE:
        _, _, _, _, info = env.step(action)
    _, _, _, _, info = env.step({"tool": "evaluate", "args": {}})
    ev = latest_result(info)
    assert isinstance(ev, EvaluationResult) and ev.n == 2 and 0.0 <= ev.score <= 1.0
    assert EvaluationResult.model_validate_json(ev.model_dump_json()) == ev


def test_a_wall_clock_budget_that_runs_out_still_scores_the_best_validated_run(tiny_model, isolated_cache, tmp_path):
    """Scoring the hidden test is the env's cost: it is not cut by the agent's clock (it once scored 0)."""
    env = gym.make("FTDojo/TableBench-v0", workdir=tmp_path, time_limit_s=20, **QUICK)
    try:
        env.reset(seed=0)
        for action in RECIPE:
            env.step(action)
        env.step({"tool": "evaluate", "args": {"run": "run1"}})
        env.unwrapped._state.budget.started -= 3600  # the clock has run out (without waiting an hour)
        worker = env.unwrapped._worker
        timeouts: list = []
        generate = worker.generate

        def recording_generate(*args, **kwargs):
            timeouts.append(kwargs.get("timeout"))
            return generate(*args, **kwargs)

        worker.generate = recording_generate
        _, reward, terminated, truncated, info = env.step({"tool": "inspect", "args": {}})
        assert timeouts and all(t is None for t in timeouts)  # the hidden test is not on the agent's clock
        assert truncated and not terminated
        sub = SubmissionResult.model_validate(info["submission"])
        assert sub.run == "run1" and sub.automatic and reward == sub.hidden_test_score
        assert 0.0 <= sub.base_hidden_test_score <= 1.0
    finally:
        env.close()


def test_temporary_folders_go_with_the_env_and_orphans_are_swept(tiny_model, isolated_cache, tmp_path):
    import gc
    import subprocess
    import sys

    from ftdojo_gym.folders import OWNER_FILE, sweep_orphaned_folders

    env = FTDojoEnv("TableBench", **QUICK)
    env.reset(seed=0)
    folder = env.workdir.parent
    del env
    gc.collect()
    assert not folder.exists()  # never closed, still cleaned
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / "ftdojo-orphan"
    orphan.mkdir()
    (orphan / OWNER_FILE).write_text(dead.stdout.strip())
    alive = tmp_path / "ftdojo-alive"
    alive.mkdir()
    (alive / OWNER_FILE).write_text(str(__import__("os").getpid()))
    assert sweep_orphaned_folders(tmp_path) == [orphan]
    assert alive.exists() and not orphan.exists()

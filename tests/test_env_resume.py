"""An episode survives the death of its env process: kill -9 mid-step, resume, finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import pytest

import ftdojo_gym  # noqa: F401
from ftdojo_gym.observations import budget_dict, latest_result

QUICK = {"base_model": "tiny", "eval_limit": 2}

EPISODE = textwrap.dedent("""
    import json, sys
    import gymnasium as gym, ftdojo_gym
    env = gym.make("FTDojo/TableBench-v0", base_model="tiny", eval_limit=2, workdir=sys.argv[1])
    obs, info = env.reset(seed=0)
    steps = [
        {"tool": "fetch", "args": {"source": "tableinstruct", "limit": 16}},
        {"tool": "transform", "args": {"dataset": "tableinstruct", "prompt_template": "{instruction}",
                                       "completion_template": "{output}", "output": "sft"}},
        {"tool": "set_config", "args": {"max_steps": 2, "batch_size": 2, "max_len": 128}},
        {"tool": "train", "args": {"dataset": "sft"}},
    ]
    for action in steps:
        obs, r, term, trunc, info = env.step(action)
        assert info["ok"], info
    print("READY", info["result"]["run_id"], json.dumps(str(env.unwrapped.workdir)), flush=True)
    env.step({"tool": "set_config", "args": {"max_steps": 100000}})
    env.step({"tool": "train", "args": {"dataset": "sft"}})  # killed in the middle of this step
""")


def test_an_episode_killed_mid_step_resumes_without_losing_finished_steps(tiny_model, isolated_cache, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", EPISODE, str(tmp_path / "ws")], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY run1"), line
        folder = Path(json.loads(line.split(" ", 2)[2]))
        deadline = time.monotonic() + 60
        while not (folder / "runs" / "run2").exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # the second run has started
        os.killpg(proc.pid, signal.SIGKILL)  # the env and its model process, mid-step
    finally:
        proc.wait(timeout=30)
    saved = json.loads((folder / "state.json").read_text())
    assert [r["run_id"] for r in saved["runs"]] == ["run1"]

    env = gym.make("FTDojo/TableBench-v0", workdir=tmp_path / "new", **QUICK)
    try:
        obs, info = env.reset(options={"resume": str(folder)})
        assert "Resumed from" in obs["log"] and "Run run1 finished" in obs["log"]
        assert budget_dict(obs)["steps_left"] == 200 - 5 and budget_dict(obs)["tokens_left"] < 200_000
        assert env.unwrapped.config.max_steps == 100_000  # the last finished step's config
        assert not (folder / "runs" / "run2").exists()  # the run in flight is gone
        _, _, _, _, info = env.step({"tool": "inspect", "args": {}})
        view = latest_result(info)
        assert view.datasets == {"tableinstruct": 16, "sft": 16} and [r.run_id for r in view.runs] == ["run1"]
        _, _, _, _, info = env.step({"tool": "evaluate", "args": {"run": "run1"}})
        assert info["ok"], info
        _, reward, terminated, _, info = env.step({"tool": "submit", "args": {}})
        assert terminated and info["submission"]["run"] == "run1"
    finally:
        env.close()


def test_resume_refuses_another_tasks_episode(tiny_model, isolated_cache, tmp_path):
    env = gym.make("FTDojo/TableBench-v0", workdir=tmp_path, **QUICK)
    _, info = env.reset(seed=0)
    env.close()
    other = gym.make("FTDojo/AIME-v0", workdir=tmp_path / "x", **QUICK)
    try:
        with pytest.raises(ValueError, match="not of this env"):
            other.reset(options={"resume": info["workdir"]})
        with pytest.raises(ValueError, match="no saved episode"):
            other.reset(options={"resume": str(tmp_path / "nowhere")})
    finally:
        other.close()

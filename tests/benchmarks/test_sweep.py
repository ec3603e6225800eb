"""The sweep (``benchmarks/sweep.py``): config validation, resume keys, the local pool with pinned
threads, kill -9 and resume with nothing lost or doubled, and the leaderboard."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftdojo_agents.cli import main as cli_main
from ftdojo_agents.scripted_server import OpenAITestServer, tool_call
from ftdojo_benchmarks import leaderboard
from ftdojo_benchmarks.sweep import (
    EpisodeSpec,
    ResultStore,
    SweepConfig,
    SweepError,
    episode_threads,
    load_config,
    plan,
    run_sweep,
)

REPO = Path(__file__).resolve().parents[2]
#: Episodes of a few seconds on the tiny model: a random agent that submits after two calls.
TINY = """
tasks = ["FTDojo/AIME-v0"]
seeds = [0, 1, 2]
agents = [{ name = "random", grounded = true, submit_after = 2 }]
[env]
base_model = "tiny"
eval_limit = 2
token_budget = 5000
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- config and keys
@pytest.mark.parametrize("text, message", [
    ('tasks = ["FTDojo/AIM-v0"]\nseeds = [0]\nagents = ["random"]', "closest: FTDojo/AIME-v0"),
    ('tasks = ["FTDojo/AIME-v0"]\nseeds = [0]\nagents = ["manul"]', "unknown agent 'manul'"),
    ('tasks = ["FTDojo/AIME-v0"]\nseeds = [0, 0]\nagents = ["random"]', "seeds: a seed is listed twice"),
    ('tasks = ["FTDojo/AIME-v0"]\nseeds = []\nagents = ["random"]', "seeds: List should have at least 1"),
    ('tasks = ["FTDojo/AIME-v0"]\nseeds = [0]\nagents = ["random"]\n[env]\nbase_modle = "tiny"',
     "unknown env option 'base_modle'"),
    ('tasks = ["FTDojo/AIME-v0"]\nseeds = [0]\nagents = [{name = "react", api_key = "sk-x"}]', "api_key_env"),
    ('tasks = ["FTDojo/AIME-v0"]\nseeds = [0]\nagents = ["random", "random"]', "distinct `label`s"),
    ('tasks = ["FTDojo/AIME-v0"]\nseeds = [0]\nagents = ["random"]\nparallel = 2', "parallel: Extra inputs"),
    ('tasks = ["FTDojo/AIME-v0"]\nseeds = [0]\nagents = ["random"]\n[run]\nparallel = 0', "run.parallel"),
    ('tasks = ["FTDojo/AIME-v0"\n', "is not valid TOML"),
])
def test_invalid_configs_are_rejected_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SweepError, match="invalid sweep config|not valid TOML") as err:
        load_config(_write(tmp_path, text))
    assert message in str(err.value)


def test_cli_sweep_reports_a_bad_config_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, 'tasks = ["FTDojo/AIME-v0"]\nseeds = [0]\nagents = ["manul"]')
    assert cli_main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "unknown agent 'manul'" in capsys.readouterr().err
    assert cli_main(["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "out")]) == 1


def test_keys_identify_agent_options_task_seed_budget_env_and_versions() -> None:
    base = {"tasks": ["FTDojo/AIME-v0", "FTDojo/FinanceIQ-v0"], "seeds": [0, 1],
            "agents": ["manual-sft", {"name": "random", "submit_after": 3}], "env": {"base_model": "tiny"}}
    specs = plan(SweepConfig.model_validate(base))
    keys = [s.key for s in specs]
    assert len(specs) == 8 and len(set(keys)) == 8
    assert keys == [s.key for s in plan(SweepConfig.model_validate(base))], "keys are stable"
    # the default budget is resolved into the key, so an explicit default gives the same key
    aime = next(s for s in specs if s.task == "FTDojo/AIME-v0")
    explicit = plan(SweepConfig.model_validate({**base, "env": {"base_model": "tiny",
                                                                "token_budget": aime.token_budget}}))
    assert explicit[0].key == specs[0].key
    for env in ({"base_model": "tiny", "eval_limit": 4}, {"base_model": "tiny", "token_budget": 1234}):
        assert not set(keys) & {s.key for s in plan(SweepConfig.model_validate({**base, "env": env}))}
    changed = [s.key for s in plan(SweepConfig.model_validate({**base, "agents": [
        "manual-sft", {"name": "random", "submit_after": 4}]}))]
    assert changed[:2] == keys[:2] and changed[2:4] != keys[2:4]  # only the random agent's keys change
    bumped = EpisodeSpec(**{**specs[0].to_json(), "versions": {**specs[0].versions, "torch": "0.0"}})
    assert bumped.key != specs[0].key
    assert "\"api_key\":" not in json.dumps([s.to_json() for s in specs])


def test_pinned_threads_reach_a_child_process_torch() -> None:
    """The env's model process inherits ``os.environ`` (``ModelWorker``): torch there sees the pin."""
    code = ("from ftdojo_benchmarks.sweep import pin_threads; pin_threads(1); import subprocess, sys; "
            "print(subprocess.run([sys.executable, '-c', 'import torch; print(torch.get_num_threads())'], "
            "capture_output=True, text=True, check=True).stdout.strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "1"


# --------------------------------------------------------------------------- running
def _result_keys(out: Path) -> list[str]:
    with open(out / "results.csv", newline="") as fh:
        return [r["key"] for r in csv.DictReader(fh)]


def test_local_pool_runs_llm_and_scripted_agents_then_skips_them(tmp_path: Path) -> None:
    """Two episodes at once, a scripted LLM agent with prices among them; the re-run skips both."""
    with OpenAITestServer(default=tool_call("submit", {})) as server:
        config = load_config(_write(tmp_path, f"""
tasks = ["FTDojo/AIME-v0"]
seeds = [0]
agents = [
  {{ name = "random", grounded = true, submit_after = 2 }},
  {{ name = "react", base_url = "{server.base_url}", model = "scripted", timeout = 30, price_input_per_1m = 1.0, price_output_per_1m = 2.0 }},
]
[env]
base_model = "tiny"
eval_limit = 2
token_budget = 5000
"""))
        out = tmp_path / "out"
        report = run_sweep(config, out, parallel=2, progress=False)
    assert (report.planned, report.done, report.failed, report.skipped) == (2, 2, 0, 0)
    assert report.episodes_per_hour > 0
    rows = ResultStore(out).rows()
    assert {r["agent"] for r in rows} == {"random", "react"}
    assert all(r["threads"] == episode_threads(2) for r in rows)
    react = next(r for r in rows if r["agent"] == "react")
    assert react["llm_total_tokens"] > 0 and react["llm_cost_usd"] > 0
    assert react["hidden_test_score"] is not None and react["base_hidden_test_score"] is not None
    for r in rows:
        lines = [json.loads(x) for x in (out / r["trajectory"]).read_text().splitlines()]
        assert lines[0]["type"] == "header" and lines[0]["sweep_key"] == r["key"]
        assert lines[-1]["type"] == "summary" and all("cached" in x for x in lines if x["type"] == "step")
        assert lines[0]["hardware"]["threads"] == r["threads"]
    md = (out / "leaderboard.md").read_text()
    assert "| OpenHands-like (ReAct) |" in md and "| Random |" in md and "| Base model |" in md
    assert (out / "plots" / "per_task.png").stat().st_size > 0
    assert (out / "plots" / "budget_curves.png").stat().st_size > 0
    again = run_sweep(config, out, progress=False)
    assert (again.skipped, again.done) == (2, 0)
    assert sorted(_result_keys(out)) == sorted(r["key"] for r in rows)


def test_sweep_killed_with_sigkill_resumes_with_no_episode_lost_or_doubled(tmp_path: Path) -> None:
    """``kill -9`` of the sweep mid-episode, then the same command: the final table has every planned
    key exactly once, like an uninterrupted run's; the killed episode's process died with the sweep."""
    config_path = _write(tmp_path, TINY)
    config = load_config(config_path)
    planned = [s.key for s in plan(config)]
    reference = tmp_path / "uninterrupted"
    run_sweep(config, reference, progress=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ftdojo_benchmarks.sweep", str(config_path), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = ResultStore(out)
    deadline = time.monotonic() + 300
    killed_in = None
    while time.monotonic() < deadline and proc.poll() is None:
        done = store.done_keys()
        started = {p.stem.rsplit("__", 1)[-1] for p in store.trajectories.glob("*.jsonl")}
        running = started - done
        if done and running:  # one episode finished, the next is under way: kill now
            killed_in = running.pop()
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.1)
    proc.wait(timeout=30)
    assert killed_in is not None, "the sweep finished before it could be killed mid-episode"
    time.sleep(3)  # an orphaned episode would go on and write its result now
    done_after_kill = store.done_keys()
    assert killed_in not in done_after_kill, "the episode process outlived the killed sweep"
    assert not (out / "results.csv").exists() or len(_result_keys(out)) < len(planned)
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{len(done_after_kill)} already done" in resumed.stderr
    keys = _result_keys(out)
    lost = set(planned) - set(keys)
    duplicated = len(keys) - len(set(keys))
    print(f"kill -9 and resume: episodes lost {len(lost)}, duplicated {duplicated}")
    assert (len(lost), duplicated) == (0, 0)
    assert sorted(keys) == sorted(_result_keys(reference))
    assert len(list(store.trajectories.glob("*.jsonl"))) == len(planned)
    resumed_traj = next(store.trajectories.glob(f"*__{killed_in}.jsonl")).read_text().splitlines()
    types = [json.loads(x)["type"] for x in resumed_traj]
    assert types.count("header") == 1 and types[-1] == "summary", "the interrupted trajectory was rewritten"


# --------------------------------------------------------------------------- leaderboard
def _row(agent: str, task: str, seed: int, val: float, test: float, base: float = 0.1, **extra) -> dict:
    return {"key": f"{agent}-{task}-{seed}", "agent": extra.pop("label", agent), "agent_name": agent, "task": task,
            "seed": seed, "validation_score": val, "hidden_test_score": test, "base_hidden_test_score": base,
            "base_validation_score": None, "tokens_used": 1000, "token_budget": 5000, "seconds": 10.0,
            "hardware": "CPU (1/2 threads)", "versions": json.dumps({"torch": "2"}), "cache_hits": 1,
            "cache_lookups": 2, "trajectory": "", **extra}


def test_leaderboard_has_the_papers_rows_intervals_wins_and_costs(tmp_path: Path) -> None:
    a, b = "FTDojo/AIME-v0", "FTDojo/FinanceIQ-v0"
    rows = []
    for seed in (0, 1, 2):
        rows += [_row("random", a, seed, 0.0, 0.0), _row("random", b, seed, 0.0, 0.05),
                 _row("manual-sft", a, seed, 0.3, 0.2 + 0.1 * seed), _row("manual-sft", b, seed, 0.4, 0.5),
                 _row("ft-agent", a, seed, 0.5, 0.6, llm_total_tokens=100, llm_cost_usd=0.01),
                 _row("ft-agent", b, seed, 0.2, 0.1, llm_total_tokens=100, llm_cost_usd=0.01),
                 _row("react", a, seed, 0.1, 0.1, label="my-react")]
    path = leaderboard.write_leaderboard(tmp_path, rows, tasks=[a, b])
    md = path.read_text()
    lines = [x for x in md.splitlines() if x.startswith("| ")]
    header, body = lines[0], lines[1:]
    assert header == ("| Agent | AIME val | AIME test | FinanceIQ val | FinanceIQ test | Mean val | Mean test "
                      "| Wins |")
    assert [x.split(" | ")[0][2:] for x in body[:5]] == ["Base model", "Manual SFT", "FT-Agent", "Random",
                                                         "my-react"]
    manual = body[1].split(" | ")
    assert manual[2] == "30.0 [20.0, 40.0]"  # AIME hidden test over 3 seeds
    assert manual[-1].strip(" |") == "1" and body[2].split(" | ")[-1].strip(" |") == "1"  # one win each
    assert body[4].split(" | ")[3:5] == ["–", "–"] and body[4].split(" | ")[6].endswith("*")  # my-react: AIME only
    assert "| FT-Agent | 6 | 1,000 | 600 | 0.0600 | 6/12 |" in md
    assert "CPU (1/2 threads)" in md
    back = leaderboard.read_csv(tmp_path / "results.csv")
    assert len(back) == len(rows) and {r["key"] for r in back} == {r["key"] for r in rows}
    assert list(back[0])[: len(leaderboard.COLUMNS)] == list(leaderboard.COLUMNS)


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean() -> None:
    m, lo, hi = leaderboard.bootstrap_ci([0.1, 0.2, 0.3, 0.4])
    assert lo <= m <= hi and (m, lo, hi) == leaderboard.bootstrap_ci([0.1, 0.2, 0.3, 0.4])
    assert leaderboard.bootstrap_ci([0.5]) == (0.5, 0.5, 0.5)


def test_budget_curve_reads_best_validation_against_training_tokens(tmp_path: Path) -> None:
    traj = tmp_path / "t.jsonl"
    steps = [(0, -1), (1000, -1), (1000, 0.25), (3000, 0.25), (3000, 0.5)]
    traj.write_text("\n".join([json.dumps({"type": "header"})] + [
        json.dumps({"type": "step", "accounting": {"tokens_used": t}, "metrics": {"best_val_score": b}})
        for t, b in steps] + ["not json", json.dumps({"type": "summary"})]))
    curve = leaderboard.budget_curve(traj)
    assert [p[0] for p in curve] == [0, 1000, 1000, 3000, 3000]
    assert [p[1] for p in curve][2:] == [0.25, 0.25, 0.5] and all(p[1] != p[1] for p in curve[:2])  # NaN first
    rows = [_row("manual-sft", "FTDojo/AIME-v0", 0, 0.5, 0.4, trajectory="t.jsonl")]
    paths = leaderboard.plot(tmp_path, rows, ["FTDojo/AIME-v0"])
    assert [p.name for p in paths] == ["per_task.png", "budget_curves.png"] and all(p.stat().st_size for p in paths)


def test_episode_threads_follow_the_cpus_the_sweep_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``taskset -c 0`` (one CPU of many) an episode gets one thread, not half the machine."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert episode_threads(1) == 1 and episode_threads(2) == 1 and episode_threads(1, server_threads=1) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert (episode_threads(1), episode_threads(2), episode_threads(2, server_threads=2)) == (8, 4, 3)


def test_the_scripted_smollm2_config_shares_its_episode_keys_with_the_full_one() -> None:
    """configs/sweep_smollm2_scripted.toml runs a part of configs/sweep_smollm2.toml under the same
    keys, so the two resume each other in one results folder (the 13 tasks x 2 scripted agents)."""
    root = Path(__file__).resolve().parents[2] / "configs"
    full = {s.key for s in plan(load_config(root / "sweep_smollm2.toml"))}
    scripted = plan(load_config(root / "sweep_smollm2_scripted.toml"))
    assert len(scripted) == 26 and {s.key for s in scripted} <= full

"""FaultInjection: faults written into the agent's actions at a fixed rate, surfacing as real failures."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

import ftdojo_gym  # noqa: F401  (registers the envs)
from ftdojo_gym.wrappers.faults import FAULTS, FaultInjection

TASK = "FTDojo/ChemCoT-Reaction-v0"
CONFIG = {"method": "lora", "learning_rate": 1e-3, "max_steps": 2, "batch_size": 2, "max_len": 256}


def make_env(tiny_model: str, tmp_path: Path, **kw) -> FaultInjection:
    base = gym.make(TASK, base_model=tiny_model, token_budget=200_000, eval_limit=4, workdir=tmp_path / "ws")
    return FaultInjection(base, **kw)


def experiment(env: FaultInjection, *, debug: bool) -> list[dict]:
    """The steps of one clean experiment; returns the infos of its train calls."""
    infos = []
    for tool, args in (("fetch", {"source": "chemcot_sft", "limit": 40}),
                       ("transform", {"dataset": "chemcot_sft", "prompt_template": "{instruction}\n{input}",
                                      "completion_template": "{output}", "output": "sft"}),
                       ("set_config", CONFIG)):
        _, _, _, _, info = env.step({"tool": tool, "args": args})
        assert info["ok"], info
    for is_debug in ([True] if debug else []) + [False]:
        _, _, _, _, info = env.step({"tool": "train", "args": {"dataset": "sft", "debug": is_debug}})
        infos.append(info)
    return infos


def test_the_fault_of_an_experiment_depends_only_on_seed_and_index():
    env = FaultInjection(gym.make(TASK, base_model="tiny"), rate=0.5, seed=3)
    first = [env.fault_for(i) for i in range(1, 41)]
    assert first == [env.fault_for(i) for i in range(1, 41)]
    assert first != [FaultInjection(env.env, rate=0.5, seed=4).fault_for(i) for i in range(1, 41)]
    hits = sum(k is not None for k in first)
    assert 8 <= hits <= 32 and {k for k in first if k} <= set(FAULTS)
    assert all(FaultInjection(env.env, rate=0.0).fault_for(i) is None for i in range(1, 30))
    assert all(FaultInjection(env.env, rate=1.0).fault_for(i) in FAULTS for i in range(1, 30))


@pytest.mark.parametrize("kw", [{"rate": 1.5}, {"rate": -0.1}, {"kinds": ["segfault"]}, {"kinds": []}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        FaultInjection(gym.make(TASK, base_model="tiny"), **kw)


@pytest.mark.parametrize(("kind", "field", "value", "error_class"), [
    ("max_len_too_short", "max_len", 16, "DATA"),
    ("blank_completions", None, None, "DATA"),
])
def test_a_fault_is_written_into_the_agents_action_and_fails_the_run_until_repaired(
        tiny_model, tmp_path, kind, field, value, error_class):
    env = make_env(tiny_model, tmp_path, rate=1.0, kinds=[kind], seed=0)
    env.reset(seed=0)
    debug_info, _full_info = experiment(env, debug=True)
    assert not debug_info["ok"] and debug_info["error_class"] == error_class
    run_dir = Path(debug_info["result"]["run_id"]).name
    config = json.loads((env.unwrapped.workdir / "runs" / run_dir / "config.json").read_text())
    if field:
        assert config[field] == value
    else:  # the completions the agent asked for were blanked
        rows = [json.loads(line) for line in (env.unwrapped.workdir / "runs" / run_dir / "train.jsonl").read_text().splitlines()]
        assert rows and all(not r["completion"].strip() for r in rows)
    [rec] = env.records
    assert (rec.kind, rec.experiment, rec.surfaced_in, rec.error_class) == (kind, 1, "debug", error_class)
    # The full run of the same broken experiment failed too.
    assert [(r["debug"], r["ok"]) for r in rec.runs] == [(True, False), (False, False)] and rec.reached_full_run
    # The agent's repair (the same actions again) passes through unchanged: the experiment succeeds.
    infos = experiment(env, debug=False)
    assert infos[-1]["ok"], infos[-1]
    assert len(env.records) == 1 and len(rec.runs) == 2  # the repaired runs are not under the fault
    # The next experiment draws its own fault (rate 1: another one) and it is written again.
    experiment(env, debug=False)
    assert [r.experiment for r in env.records] == [1, 2]
    assert env.records[1].surfaced_in == "full"
    # What was injected is not in what the agent receives.
    seen = json.dumps([debug_info, *infos], default=str).lower()
    assert kind not in seen and "inject" not in seen
    env.close()


def test_lr_fault_is_tracked_through_runs_that_finish_until_the_agent_resets_the_rate(tiny_model, tmp_path):
    env = make_env(tiny_model, tmp_path, rate=1.0, kinds=["lr_diverge"], seed=0)
    env.reset(seed=0)
    env.step({"tool": "fetch", "args": {"source": "chemcot_sft", "limit": 8}})
    env.step({"tool": "transform", "args": {"dataset": "chemcot_sft", "prompt_template": "{input}",
                                            "completion_template": "{output}", "output": "sft"}})
    _, _, _, _, info = env.step({"tool": "set_config", "args": CONFIG})
    assert info["result"]["config"]["learning_rate"] == 1.0
    assert info["result"]["config"]["max_len"] == CONFIG["max_len"]
    _, _, _, _, info = env.step({"tool": "train", "args": {"dataset": "sft", "debug": True}})
    [rec] = env.records
    # The tiny random model does not blow up: the run finishes, yet it trained under the fault.
    assert info["ok"] and [(r["debug"], r["ok"]) for r in rec.runs] == [(True, True)] and rec.surfaced_in is None
    env.step({"tool": "set_config", "args": {"learning_rate": 1e-3}})  # the agent's repair
    env.step({"tool": "train", "args": {"dataset": "sft", "debug": True}})
    _, _, _, _, info = env.step({"tool": "train", "args": {"dataset": "sft"}})
    assert info["ok"] and len(rec.runs) == 1 and rec.caught_by_debug_run and not rec.reached_full_run
    summary = env.fault_summary()[0]
    assert summary["caught_by_debug_run"] and summary["tokens_lost"] == rec.runs[0]["tokens"] > 0
    env.close()


def test_malformed_actions_pass_through_to_the_envs_error(tiny_model, tmp_path):
    env = make_env(tiny_model, tmp_path, rate=1.0, seed=0)
    env.reset(seed=0)
    _, _, _, _, info = env.step({"tool": "no_such_tool", "args": {}})
    assert not info["ok"] and env.experiment == 0 and env.records == []
    env.close()


def test_fail_fast_benchmark_runs_both_agents_and_writes_table_and_plot(tiny_model, tmp_path):
    from ftdojo_benchmarks import fail_fast

    out, table = tmp_path / "ff.json", tmp_path / "ff.md"
    argv = ["--base-model", "tiny", "--full-steps", "3", "--token-budget", "2500", "--seeds", "1", "--fault-rate",
            "1.0", "--faults", "max_len_too_short", "--eval-limit", "2", "--out", str(out), "--table", str(table)]
    assert fail_fast.main(argv) == 0
    results = json.loads(out.read_text())["results"]
    by_agent = {r["agent"]: r for r in results}
    assert set(by_agent) == {"ft-agent", "react"}
    ft, react = by_agent["ft-agent"], by_agent["react"]
    # Every experiment is broken once: FT-Agent catches it in a debug run, ReAct in a full run.
    assert ft["full_failed"] == 0 and ft["debug_failed"] >= 1 and ft["full_ok"] >= 1
    assert all(f["surfaced_in"] == "debug" for f in ft["faults_injected"] if f["surfaced_in"])
    assert react["debug_ok"] + react["debug_failed"] == 0 and react["full_failed"] >= 1 and react["full_ok"] >= 1
    assert all(f["surfaced_in"] == "full" for f in react["faults_injected"] if f["surfaced_in"])
    assert ft["policy_calls"]["repair"] >= 1
    for rec in (ft, react):
        assert 0 <= rec["full_effective"] <= rec["full_ok"]
        assert all(f["caught_by_debug_run"] == (f["kind"] and not f["reached_full_run"] and bool(f["runs"]))
                   for f in rec["faults_injected"])
    assert any(f["caught_by_debug_run"] for f in ft["faults_injected"])
    assert any(f["reached_full_run"] for f in react["faults_injected"])
    text = table.read_text()
    assert "effective full runs" in text and "Effective iterations, FT-Agent / ReAct" in text
    assert (tmp_path / "ff.png").stat().st_size > 1000
    # A second call resumes: nothing is rerun.
    assert fail_fast.main(argv) == 0
    assert json.loads(out.read_text())["results"] == results

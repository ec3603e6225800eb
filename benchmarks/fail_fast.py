"""Fail-fast figure: FT-Agent's debug-first loop against the ReAct baseline under injected faults.

The paper credits FT-Agent's fail-fast debug runs with 2.2x more effective
training iterations than an OpenHands-style agent. This script measures the
same quantities here, with real training:

* both agents run episodes of one task with the same token budget and the
  same faults: :class:`ftdojo_gym.wrappers.FaultInjection` corrupts a share
  ``--fault-rate`` of experiments with a config fault (a diverging learning
  rate, a ``max_len`` no prompt fits in) or a data fault (blank completions),
  the *i*-th experiment of either agent meeting the same fault;
* **effective full runs** in the budget: full runs that finished *and*
  trained (final loss below the first; a learning rate 1000x too high often
  finishes with an exploded loss and a useless model), next to all finished,
  failed and budget-cut runs, and the tokens and seconds each kind took;
* per fault, whether it cost a full run or was caught by a debug run;
* **a debug run's cost as a share of a full run** (mean tokens and mean
  seconds of the successful debug runs over those of the successful full runs).

The agents are the real :class:`agents.ft_agent.FTAgent` and
:class:`agents.react.ReActAgent`, talking HTTP to an OpenAI-compatible
endpoint. By default that endpoint is a *scripted oracle policy*
(:class:`OraclePolicy`, served by :mod:`agents.scripted_server` on
127.0.0.1): it makes the same decisions for both agents (the *i*-th
experiment's recipe; a repair that restores the intended recipe once a run
fails), so the figure isolates the loops themselves -- FT-Agent's executor
makes a debug run before every full run, the ReAct baseline trains directly --
from the quality of an LLM's decisions. With ``--base-url``/``--model`` a
real LLM drives both agents instead, under the same fault injection.

    python -m ftdojo_benchmarks.fail_fast                          # SmolLM2, ChemCoT-Reaction, 2 seeds (~40 min)
    python -m ftdojo_benchmarks.fail_fast --base-model tiny --full-steps 8 --token-budget 20000 --seeds 1
    python -m ftdojo_benchmarks.fail_fast --table-only             # re-render table and plot

Results are appended to ``benchmarks/results/fail_fast.json`` after every
episode (a rerun skips the episodes already there with the same settings);
the table goes to ``docs/benchmarks/fail_fast.md`` and the plot next to it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
from rich.console import Console

from ftdojo_agents.episode import StepRecord, run_episode
from ftdojo_agents.ft_agent import FTAgent, loss_explosion, run_losses
from ftdojo_agents.llm_client import LLMClient
from ftdojo_agents.react import ReActAgent
from ftdojo_agents.scripted_server import (
    OpenAITestServer,
    Scripted,
    last_user_text,
    system_text,
    text,
    tool_call,
)
from ftdojo_gym.data.workspace import atomic_write_text
from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.wrappers.faults import FAULTS, FaultInjection

AGENTS = ("ft-agent", "react")
DEFAULT_OUT = Path("benchmarks/results/fail_fast.json")
DEFAULT_TABLE = Path("docs/benchmarks/fail_fast.md")
#: Learning rates the oracle cycles through, one per experiment (all sane for LoRA on SmolLM2).
ORACLE_LRS = (1e-3, 5e-4, 2e-3)


# --------------------------------------------------------------------------- the scripted oracle policy
class OraclePolicy:
    """Scripted decisions for FT-Agent's prompts and for ReAct's tool calls, the same for both.

    Experiment *i* (1-based, counted per agent) uses :meth:`recipe` ``(i)``: the
    task's clean sources, length filter and dedupe, the expert template, a mix
    of ``batch_size * full_steps`` rows, and a LoRA config with ``max_steps=full_steps``
    and the *i*-th learning rate of :data:`ORACLE_LRS`. After a failure the
    repair is the intended recipe again (data steps and config), which undoes
    any injected fault: both agents repair perfectly, at the first attempt.
    """

    def __init__(self, clean_sources: list[str], template: dict[str, str], full_steps: int, batch_size: int = 8):
        self.sources, self.template = list(clean_sources), dict(template)
        self.full_steps, self.batch_size = full_steps, batch_size
        self.ft_experiment = 0
        self.react_experiment = 0
        self.react_queue: deque[dict[str, Any]] = deque()
        self.react_last: dict[str, Any] | None = None
        self.react_last_ok = True
        self.calls = {"plan": 0, "repair": 0, "evaluate": 0, "judge": 0, "react": 0}

    # -- the recipe
    def data_steps(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        for src in self.sources:
            steps += [
                {"tool": "fetch", "args": {"source": src}},
                {"tool": "filter", "args": {"dataset": src, "max_tokens": 512, "dedupe": True, "rules": ["non_empty"]}},
                {"tool": "transform", "args": {"dataset": src, "prompt_template": self.template["prompt"],
                                               "completion_template": self.template["completion"], "output": f"{src}_sft"}},
            ]
        steps.append({"tool": "mix", "args": {"datasets": [{"name": f"{s}_sft", "weight": 1.0} for s in self.sources],
                                              "n": self.full_steps * self.batch_size, "output": "train_mix", "seed": 0}})
        return steps

    def config(self, i: int) -> dict[str, Any]:
        return {"method": "lora", "learning_rate": ORACLE_LRS[(i - 1) % len(ORACLE_LRS)], "lr_scheduler": "linear",
                "warmup_ratio": 0.05, "max_steps": self.full_steps, "batch_size": self.batch_size, "max_len": 512,
                "lora_r": 16, "lora_alpha": 32, "seed": i}

    def recipe(self, i: int) -> dict[str, Any]:
        return {"hypothesis": f"experiment {i}: clean sources, expert template, lr {self.config(i)['learning_rate']}",
                "data_steps": self.data_steps(), "dataset": "train_mix", "config": self.config(i)}

    # -- the endpoint
    def __call__(self, body: dict[str, Any]) -> Scripted:
        if system_text(body).startswith("You are FT-Agent"):
            return self._ft_agent(last_user_text(body))
        return self._react(body)

    def _ft_agent(self, prompt: str) -> Scripted:
        if prompt.startswith("# Plan the next experiment"):
            self.calls["plan"] += 1
            if "## Your previous answer was not usable" not in prompt:
                self.ft_experiment += 1
            return text(json.dumps(self.recipe(self.ft_experiment)))
        if prompt.startswith("# Repair a failed experiment"):
            self.calls["repair"] += 1
            r = self.recipe(self.ft_experiment)
            return text(json.dumps({"diagnosis": "restore the intended recipe", "data_steps": r["data_steps"],
                                    "dataset": r["dataset"], "config": r["config"]}))
        if prompt.startswith("# Evaluate an experiment"):
            self.calls["evaluate"] += 1
            return text(json.dumps({"diagnosis": "scripted oracle: no diagnosis", "error_patterns": [], "next_ideas": []}))
        if prompt.startswith("# Judge an experiment"):
            self.calls["judge"] += 1
            return text(json.dumps({"accept": None, "reason": "scripted oracle: the numeric rule decides"}))
        return text("{}")

    def observe(self, record: StepRecord) -> None:
        """Called after each env step (``run_episode``'s ``on_step``): whether the last action succeeded."""
        self.react_last_ok = record.ok

    def _react_experiment(self, i: int) -> deque[dict[str, Any]]:
        """ReAct's actions for experiment ``i``: the data steps, the config, the full run (no debug run)."""
        return deque([*self.data_steps(), {"tool": "set_config", "args": self.config(i)},
                      {"tool": "train", "args": {"dataset": "train_mix"}}])

    def _react(self, body: dict[str, Any]) -> Scripted:
        self.calls["react"] += 1
        last = self.react_last
        if last is None:
            action = {"tool": "list_sources", "args": {}}
        else:
            failed = not self.react_last_ok  # the env's typed outcome of the last action (see observe)
            if failed and last["tool"] != "evaluate":  # repair: the intended recipe again, then the full run
                self.react_queue = self._react_experiment(self.react_experiment)
            elif last["tool"] == "train":
                self.react_queue = deque([{"tool": "evaluate", "args": {}}])
            if not self.react_queue:
                self.react_experiment += 1
                self.react_queue = self._react_experiment(self.react_experiment)
            action = self.react_queue.popleft()
        self.react_last = action
        return tool_call(action["tool"], action["args"])


# --------------------------------------------------------------------------- one episode
def settings_key(args: argparse.Namespace) -> str:
    fields = {k: getattr(args, k) for k in ("task", "base_model", "fault_rate", "faults", "full_steps", "batch_size", "token_budget",
                                            "eval_limit", "base_url", "model")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_one(args: argparse.Namespace, agent_name: str, seed: int, console: Console) -> dict[str, Any]:
    """One episode of ``agent_name`` under fault injection; returns its record."""
    workdir = tempfile.mkdtemp(prefix=f"ftdojo-failfast-{agent_name}-")
    base = gym.make(args.task, base_model=args.base_model, token_budget=args.token_budget, max_episode_steps=1000,
                    eval_limit=args.eval_limit, workdir=workdir, progress=args.progress)
    env = FaultInjection(base, rate=args.fault_rate, kinds=args.faults, seed=seed)
    task = env.unwrapped.task
    recipes = task_recipes(task)
    policy = OraclePolicy(list(recipes.clean_sources), dict(recipes.expert_template), args.full_steps, args.batch_size)
    server = None
    try:
        if args.base_url:
            llm = LLMClient(base_url=args.base_url, model=args.model, api_key=args.api_key)
        else:
            server = OpenAITestServer(default=policy, model="oracle-policy").start()
            llm = LLMClient(base_url=server.base_url, model="oracle-policy", api_key="none", timeout=30.0)
        if agent_name == "ft-agent":
            agent = FTAgent(llm, max_iterations=1000, evaluate_base=False)
        else:
            agent = ReActAgent(llm)
        t0 = time.monotonic()
        result = run_episode(env, agent, seed=seed, on_step=policy.observe)
        wall = time.monotonic() - t0
        val_scores = {rec.result["run"]: rec.result["score"] for rec in result.records
                      if rec.tool == "evaluate" and rec.ok}
        runs = [{**_with_losses(rec.result), "val_score": val_scores.get(rec.result["run_id"])}
                for rec in result.records if rec.tool == "train" and "run_id" in rec.result]
    finally:
        if server is not None:
            server.close()
        env.close()
        shutil.rmtree(workdir, ignore_errors=True)
    full = [r for r in runs if not r["debug"]]
    debug = [r for r in runs if r["debug"]]
    groups = {"full_effective": [r for r in full if r["effective"]],
              "full_ok": [r for r in full if r["status"] == "ok"],
              "full_failed": [r for r in full if r["status"] == "error"],
              "full_stopped_budget": [r for r in full if r["status"] == "stopped_budget"],
              "debug": debug}

    def totals(key: str) -> dict[str, float]:
        return {name: float(sum(r[key] for r in rs)) for name, rs in groups.items()}

    record = {
        "agent": agent_name, "seed": seed, "settings": settings_key(args), "task": args.task,
        "base_model": args.base_model, "fault_rate": args.fault_rate, "faults": list(args.faults),
        "full_steps": args.full_steps, "batch_size": args.batch_size, "token_budget": args.token_budget, "llm": args.model or "oracle-policy",
        **{name: len(groups[name]) for name in ("full_effective", "full_ok", "full_stopped_budget", "full_failed")},
        "debug_ok": sum(r["status"] != "error" for r in debug),
        "debug_failed": sum(r["status"] == "error" for r in debug),
        "debug_diverging": sum(r["exploded"] for r in debug),
        "tokens": totals("train_tokens"),
        "seconds": {**totals("seconds"), "episode": round(wall, 1)},
        "debug_share": _debug_share(runs),
        "faults_injected": env.fault_summary(),
        "runs": [{k: r[k] for k in ("run_id", "debug", "status", "error_class", "train_tokens", "seconds", "learning_rate",
                                    "first_loss", "final_loss", "effective", "exploded", "val_score")} for r in runs],
        "hidden_test_score": result.reward, "steps": result.steps, "policy_calls": dict(policy.calls),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    console.print(f"{agent_name} seed {seed}: {record['full_effective']} effective full runs ({record['full_ok']} "
                  f"finished), {record['full_failed']} failed, "
                  f"{record['debug_ok'] + record['debug_failed']} debug runs; {len(record['faults_injected'])} faults; "
                  f"{wall:.0f} s")
    return record


def _with_losses(run: dict[str, Any]) -> dict[str, Any]:
    """A run's train result plus its learning rate, first and final loss, and whether it was effective
    (finished, and the loss went down)."""
    losses = run_losses(run)
    first = losses[0] if losses else None
    final = run.get("final_loss")
    effective = (run["status"] == "ok" and first is not None and final is not None
                 and math.isfinite(final) and final < first)
    return {**run, "learning_rate": run["config"].get("learning_rate"), "first_loss": first, "effective": effective,
            "exploded": run["status"] == "ok" and loss_explosion(run) is not None}


def _debug_share(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    ok_full = [r for r in runs if not r["debug"] and r["status"] == "ok"]
    ok_debug = [r for r in runs if r["debug"] and r["status"] == "ok"]
    if not ok_full or not ok_debug:
        return {"train_tokens": None, "seconds": None}
    return {k: statistics.mean(r[k] for r in ok_debug) / max(1e-9, statistics.mean(r[k] for r in ok_full))
            for k in ("train_tokens", "seconds")}


# --------------------------------------------------------------------------- results
def load_results(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["results"] if path.exists() else []


def save_results(path: Path, results: list[dict[str, Any]]) -> None:
    atomic_write_text(path, json.dumps({"format": "ftdojo-fail-fast/1", "results": results}, indent=1, default=str))


def aggregate(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per agent: sums over the seeds of the newest settings, and the debug-share means."""
    out: dict[str, dict[str, Any]] = {}
    for agent in AGENTS:
        rs = [r for r in results if r["agent"] == agent]
        if not rs:
            continue
        shares_t = [r["debug_share"]["train_tokens"] for r in rs if r["debug_share"].get("train_tokens") is not None]
        shares_s = [r["debug_share"]["seconds"] for r in rs if r["debug_share"].get("seconds") is not None]
        faults = [f for r in rs for f in r["faults_injected"]]  # the per-kind rows are in render()
        out[agent] = {
            "episodes": len(rs), "full_effective": sum(r["full_effective"] for r in rs),
            "full_ok": sum(r["full_ok"] for r in rs), "full_failed": sum(r["full_failed"] for r in rs),
            "full_stopped_budget": sum(r["full_stopped_budget"] for r in rs),
            "debug_runs": sum(r["debug_ok"] + r["debug_failed"] for r in rs),
            "debug_failed": sum(r["debug_failed"] for r in rs),
            "diverging_debug_runs": sum(r["debug_diverging"] for r in rs),
            "tokens": {k: sum(r["tokens"][k] for r in rs) for k in rs[0]["tokens"]},
            "seconds": {k: sum(r["seconds"][k] for r in rs) for k in rs[0]["seconds"]},
            "debug_share_tokens": statistics.mean(shares_t) if shares_t else None,
            "debug_share_seconds": statistics.mean(shares_s) if shares_s else None,
            "faults": len(faults),
            "faults_caught_by_debug": sum(f["caught_by_debug_run"] for f in faults),
            "faults_reached_full": sum(f["reached_full_run"] for f in faults),
        }
    return out


def render(results: list[dict[str, Any]], table: Path) -> str:
    """The markdown table (and the plot beside it) from the results of the newest settings."""
    if not results:
        return "No results yet."
    newest = results[-1]["settings"]
    rs = [r for r in results if r["settings"] == newest]
    agg = aggregate(rs)
    head = rs[-1]
    lines = [
        "# Fail-fast: debug-first (FT-Agent) vs direct training (ReAct) under injected faults",
        "",
        f"Task `{head['task']}`, base model `{head['base_model']}`, decisions by `{head['llm']}`; "
        f"fault rate {head['fault_rate']} per experiment ({', '.join(head['faults'])}); full runs of "
        f"{head['full_steps']} steps x {head.get('batch_size', 8)} samples (a debug run: 4 steps); token budget {head['token_budget']:,} per episode; "
        f"seeds {sorted({r['seed'] for r in rs})}. Generated by `python -m ftdojo_benchmarks.fail_fast`.",
        "",
        "| agent | episodes | effective full runs | finished full runs | failed full runs | cut by budget | "
        "debug runs (failed / diverging) | faults injected | caught by a debug run | cost a full run | "
        "tokens: effective / other full / debug | training seconds: effective / other full / debug | episode seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for agent, a in agg.items():
        t, s = a["tokens"], a["seconds"]
        other_t = t["full_ok"] + t["full_failed"] + t["full_stopped_budget"] - t["full_effective"]
        other_s = s["full_ok"] + s["full_failed"] + s["full_stopped_budget"] - s["full_effective"]
        lines.append(
            f"| {agent} | {a['episodes']} | **{a['full_effective']}** | {a['full_ok']} | {a['full_failed']} | "
            f"{a['full_stopped_budget']} | {a['debug_runs']} ({a['debug_failed']} / {a['diverging_debug_runs']}) | "
            f"{a['faults']} | {a['faults_caught_by_debug']} | {a['faults_reached_full']} | "
            f"{t['full_effective']:,.0f} / {other_t:,.0f} / {t['debug']:,.0f} | "
            f"{s['full_effective']:.0f} / {other_s:.0f} / {s['debug']:.0f} | {s['episode']:.0f} |")
    lines.append("")
    if "ft-agent" in agg and "react" in agg:
        ft_n, re_n = agg["ft-agent"]["full_effective"], agg["react"]["full_effective"]
        ratio = f"{ft_n / re_n:.2f}x" if re_n else "n/a (no effective ReAct run)"
        lines.append(f"**Effective iterations, FT-Agent / ReAct: {ratio}** ({ft_n} vs {re_n} full runs that finished "
                     "and trained, in the same token budget; the paper reports 2.2x).")
    ft = agg.get("ft-agent", {})
    if ft.get("debug_share_tokens") is not None:
        lines.append(f"**A debug run costs {100 * ft['debug_share_tokens']:.1f} % of a full run in training tokens and "
                     f"{100 * ft['debug_share_seconds']:.1f} % in wall-clock seconds** (means over FT-Agent's successful runs).")
    lines += ["", "Where each injected fault surfaced (failed runs, tokens they trained):", "",
              "| agent | fault | experiments | caught by a debug run | cost a full run | runs under the fault "
              "(failed with an error) | tokens lost | seconds lost |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for agent in agg:
        faults = [f for r in rs if r["agent"] == agent for f in r["faults_injected"]]
        for kind in FAULTS:
            fs = [f for f in faults if f["kind"] == kind]
            if fs:
                n_runs = sum(len(f["runs"]) for f in fs)
                n_err = sum(not run["ok"] for f in fs for run in f["runs"])
                lines.append(f"| {agent} | {kind} | {len(fs)} | {sum(f['caught_by_debug_run'] for f in fs)} | "
                             f"{sum(f['reached_full_run'] for f in fs)} | {n_runs} ({n_err}) | "
                             f"{sum(f['tokens_lost'] for f in fs):,} | {sum(f['seconds_lost'] for f in fs):.1f} |")
    plot = _plot(agg, table.with_suffix(".png"))
    if plot is not None:
        lines += ["", f"![Budget use per agent]({plot.name})"]
    return "\n".join(lines) + "\n"


def _plot(agg: dict[str, dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    agents = list(agg)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    kinds = [("full_effective", "effective full runs", "tab:green"),
             ("full_useless", "finished full runs that did not train (exploded loss)", "tab:orange"),
             ("full_failed", "failed full runs", "tab:red"), ("full_stopped_budget", "full run cut by budget", "tab:gray"),
             ("debug", "debug runs", "tab:blue")]
    for ax, unit in ((ax1, "tokens"), (ax2, "seconds")):
        left = [0.0] * len(agents)
        for key, label, color in kinds:
            vals = [agg[a][unit]["full_ok"] - agg[a][unit]["full_effective"] if key == "full_useless"
                    else agg[a][unit][key] for a in agents]
            ax.barh(agents, vals, left=left, label=label, color=color)
            left = [x + v for x, v in zip(left, vals, strict=True)]
        ax.set_xlabel(f"training {unit} (all episodes)")
    for i, a in enumerate(agents):
        ax1.text(0, i, f" {agg[a]['full_effective']} effective", va="center", color="white", fontsize=9)
    fig.legend(*ax1.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("Budget use under injected faults")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="FTDojo/ChemCoT-Reaction-v0")
    p.add_argument("--base-model", default="smollm2-135m")
    p.add_argument("--agent", action="append", choices=AGENTS, help="repeatable; default: both")
    p.add_argument("--seeds", type=int, default=2, help="episodes per agent (fault seeds 0..N-1)")
    p.add_argument("--fault-rate", type=float, default=0.4)
    p.add_argument("--faults", nargs="+", default=list(FAULTS), choices=list(FAULTS))
    p.add_argument("--full-steps", type=int, default=100, help="optimizer steps of a full run")
    p.add_argument("--batch-size", type=int, default=2, help="samples per step (full and debug runs)")
    p.add_argument("--token-budget", type=int, default=150_000)
    p.add_argument("--eval-limit", type=int, default=10, help="validation items per evaluation (hidden test too)")
    p.add_argument("--base-url", help="a real OpenAI-compatible endpoint instead of the scripted oracle")
    p.add_argument("--model", help="model name at --base-url")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "none"))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    p.add_argument("--rerun", action="store_true", help="repeat episodes already in --out")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--progress", action="store_true", help="progress bars of training and evaluation")
    args = p.parse_args(argv)
    if args.base_url and not args.model:
        p.error("--base-url needs --model")
    console = Console()
    results = load_results(args.out)
    if not args.table_only:
        key = settings_key(args)
        for seed in range(args.seeds):
            for agent in args.agent or AGENTS:
                done = any(r["agent"] == agent and r["seed"] == seed and r["settings"] == key for r in results)
                if done and not args.rerun:
                    console.print(f"{agent} seed {seed}: done, skipped (--rerun to repeat)")
                    continue
                rec = run_one(args, agent, seed, console)
                results = [r for r in results if not (r["agent"] == agent and r["seed"] == seed and r["settings"] == key)]
                results.append(rec)
                save_results(args.out, results)
                atomic_write_text(args.table, render(results, args.table))
    atomic_write_text(args.table, render(results, args.table))
    console.print(args.table.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

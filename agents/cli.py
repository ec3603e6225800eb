"""``ftdojo``: run an agent on an FT-Dojo task and write its trajectory.

    ftdojo run --task FTDojo/TableBench-v0 --agent ft-agent \\
        --base-url http://127.0.0.1:8000/v1 --model smollm2 [--base-model tiny] [--out traj.jsonl]
    python -m ftdojo_agents.cli run ...          # the same without the console script
    ftdojo run --agent react --local-model smollm2-135m --base-model tiny   # no network: a local LLM
    ftdojo list                           # tasks and agents
    ftdojo sweep configs/sweep_tiny.toml --out runs/tiny [--parallel 2] [--backend ray]   # a benchmark sweep

The trajectory is JSONL, one object a line, flushed as it is written:
``{"type": "header", ...}`` (arguments without secrets, versions of the
package, task, libraries and LLM), then ``{"type": "step", ...}`` per env
step, then ``{"type": "summary", ...}``. With ``--episodes N`` the three
repeat per episode (FT-Agent's experiment tree carries over). Ctrl-C stops
cleanly: the env is closed, an ``interrupted`` summary is written, and every
line written before stays. Exit codes: 0 done, 1 error, 130 interrupted.

``--local-model NAME`` serves NAME (``smollm2-135m``, a HF folder) with
``transformers serve`` on 127.0.0.1 for the run (:mod:`agents.local_server`),
points the agent at it and stops it at the end; its log goes to
``<out>.server.log``. Models whose chat template has no tools get JSON-in-text
tool calls, and the model's own context window, unless the options say otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ftdojo_agents.base import make, names
from ftdojo_agents.episode import (
    EpisodeResult,
    JsonlWriter,
    StepRecord,
    llm_usage_of,
    llm_versions_of,
    run_episode,
)
from ftdojo_agents.llm_client import LLMError
from ftdojo_agents.local_server import LocalServerError, serve_local_model

#: Agents that talk to an LLM and take the ``--base-url``/``--model`` options.
LLM_AGENTS = frozenset({"ft-agent", "react", "openhands-like"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftdojo", description="Run agents on FT-Dojo fine-tuning tasks.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an agent for one or more episodes and write the trajectory")
    run.add_argument("--task", default="FTDojo/TableBench-v0", help="registered env id")
    run.add_argument("--agent", default="ft-agent", choices=names(), help="agent name")
    llm = run.add_argument_group("LLM (for ft-agent, react / openhands-like)")
    llm.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    llm.add_argument("--model", default=None, help="model name at the endpoint (default: $FTDOJO_LLM_MODEL)")
    llm.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY; local servers need none)")
    llm.add_argument("--context-window", type=int, default=None,
                     help="the LLM's context window in tokens (default: 32768, or the local model's)")
    llm.add_argument("--max-tokens", type=int, default=1024, help="completion tokens per LLM request")
    llm.add_argument("--temperature", type=float, default=0.2)
    llm.add_argument("--timeout", type=float, default=120.0, help="seconds per LLM request")
    llm.add_argument("--tool-mode", choices=("auto", "native", "text"), default="auto",
                     help="native function calling, JSON in text, or auto (native, text if refused)")
    llm.add_argument("--price-in", type=float, default=None, help="USD per 1M prompt tokens (for cost accounting)")
    llm.add_argument("--price-out", type=float, default=None, help="USD per 1M completion tokens")
    llm.add_argument("--local-model", default=None, metavar="NAME",
                     help="serve NAME (smollm2-135m or a HF folder) with `transformers serve` on 127.0.0.1 "
                          "for this run, with no network; replaces --base-url/--model")
    llm.add_argument("--local-threads", type=int, default=None, help="torch threads of the local server "
                     "(default: half the cores)")
    env = run.add_argument_group("environment")
    env.add_argument("--base-model", default=None, help="model to fine-tune (default: the task's, smollm2-135m)")
    env.add_argument("--seed", type=int, default=0)
    env.add_argument("--episodes", type=int, default=1)
    env.add_argument("--eval-limit", type=int, default=None, help="validation/test items (quick runs)")
    env.add_argument("--token-budget", type=int, default=None, help="training-token budget")
    env.add_argument("--time-limit", type=float, default=None, help="wall-clock seconds per episode")
    env.add_argument("--max-steps", type=int, default=None, help="env steps per episode")
    env.add_argument("--workdir", default=None, help="episode workspaces (default: a temporary folder)")
    out = run.add_argument_group("output")
    out.add_argument("--out", default="trajectory.jsonl", help="trajectory file (JSONL)")
    out.add_argument("--tree", default=None, help="FT-Agent's experiment tree (default: <out>.tree.json)")
    out.add_argument("--agent-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="extra agent argument, VALUE as JSON if it parses (repeatable), e.g. max_iterations=3")
    out.add_argument("--no-progress", action="store_true", help="plain output, no live progress display")
    sub.add_parser("list", help="list the registered tasks and agents")
    # The sweep lives in benchmarks/ (ftdojo_benchmarks); imported here, not at the top, to keep `run` light.
    from ftdojo_benchmarks.sweep import build_parser as sweep_arguments

    sweep_arguments(sub.add_parser("sweep", help="run a benchmark sweep (agents x tasks x seeds) from a TOML "
                                                 "config; re-running resumes it"))
    return parser


def _agent_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if args.agent in LLM_AGENTS:
        kwargs.update(base_url=args.base_url, model=args.model, api_key=args.api_key,
                      context_window=args.context_window or 32_768, max_tokens=args.max_tokens, temperature=args.temperature,
                      timeout=args.timeout, tool_mode=args.tool_mode, price_input_per_1m=args.price_in,
                      price_output_per_1m=args.price_out)
    if args.agent == "ft-agent":
        kwargs["tree_path"] = args.tree or str(Path(args.out).with_suffix(".tree.json"))
    for item in args.agent_arg:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--agent-arg expects KEY=VALUE, got {item!r}")
        try:
            kwargs[key] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[key] = raw
    return kwargs


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for key, value in (("base_model", args.base_model), ("eval_limit", args.eval_limit),
                       ("token_budget", args.token_budget), ("time_limit_s", args.time_limit),
                       ("max_episode_steps", args.max_steps), ("workdir", args.workdir)):
        if value is not None:
            kwargs[key] = value
    return kwargs


def _public_task_info(tinfo: dict[str, Any]) -> dict[str, Any]:
    """Task info as recorded: without the oracle fields meant for the scripted expert."""
    return {k: v for k, v in tinfo.items() if k not in ("clean_sources", "expert_template")}


def _public_args(args: argparse.Namespace) -> dict[str, Any]:
    """The run's arguments as recorded in the trajectory: never the API key."""
    return {k: v for k, v in vars(args).items() if k != "api_key"}


class _Display:
    """The live progress display (rich) or plain lines; both on stderr so stdout keeps the summary."""

    def __init__(self, console: Console, enabled: bool):
        self.console = console
        self.enabled = enabled
        self.progress: Progress | None = None
        self.task_id: Any = None

    def start(self, title: str, total: float | None) -> None:
        if not self.enabled:
            self.console.print(title)
            return
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                                 console=self.console, transient=False)
        self.progress.start()
        self.task_id = self.progress.add_task(title, total=total, status="starting")

    def step(self, rec: StepRecord) -> None:
        act = rec.action if isinstance(rec.action, dict) else {"tool": str(rec.action)[:40]}
        args = json.dumps(act.get("args", {}), ensure_ascii=False)
        ok = "[green]ok[/green]" if rec.ok else f"[red]{rec.error_class or 'invalid'}[/red]"
        best = rec.metrics.get("best_val_score", -1)
        usage = rec.llm_usage or {}
        llm = f" | LLM {usage.get('total_tokens', 0)} tok" if rec.llm_usage else ""
        if usage.get("cost_usd") is not None:
            llm += f" ${usage['cost_usd']:.4f}"
        status = (f"best val {'n/a' if best < 0 else f'{100 * best:.1f}'} | tokens left "
                  f"{int(rec.budget.get('tokens_left', 0))}{llm}")
        line = f"step {rec.step:>3} {act.get('tool')} {args[:100]} -> {ok} ({rec.seconds:.1f}s)"
        if rec.agent_error:
            line += f" [yellow]agent error: {rec.agent_error.splitlines()[0][:120]}[/yellow]"
        if self.progress is not None:
            self.progress.console.print(line, highlight=False)
            self.progress.update(self.task_id, advance=1, status=status)
        else:
            self.console.print(line + " | " + status, highlight=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _summary_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="FT-Dojo run")
    for col in ("episode", "steps", "submitted", "val", "hidden test", "base test", "tokens", "LLM tokens",
                "LLM cost", "seconds", "status"):
        table.add_column(col)

    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * float(v):.1f}"

    for r in rows:
        usage = r.get("llm_usage") or {}
        cost = usage.get("cost_usd")
        table.add_row(str(r.get("episode")), str(r["steps"]), str(r.get("submitted_run") or "-"),
                      pct(r.get("validation_score")), pct(r.get("hidden_test_score")),
                      pct(r.get("base_hidden_test_score")), str(r.get("tokens_used") or 0),
                      str(usage.get("total_tokens", "-")), "-" if cost is None else f"${cost:.4f}",
                      str(r.get("seconds")), "interrupted" if r.get("interrupted") else "done")
    return table


def cmd_run(args: argparse.Namespace, console: Console, err: Console) -> int:
    """``ftdojo run``: with ``--local-model``, inside a local LLM server started for the run."""
    if not args.local_model:
        return _run(args, console, err)
    if args.agent not in LLM_AGENTS:
        raise ValueError(f"--local-model is for the LLM agents ({', '.join(sorted(LLM_AGENTS))}), not {args.agent!r}")
    log_path = Path(args.out).with_suffix(".server.log")
    err.print(f"Starting `transformers serve` on {args.local_model} (log: {log_path}) ...")
    with serve_local_model(args.local_model, threads=args.local_threads, log_path=log_path) as server:
        err.print(f"Local LLM ready at {server.base_url} in {server.startup_seconds:.1f} s")
        args.base_url, args.model = server.base_url, server.model
        if args.tool_mode == "auto" and not server.supports_tools:
            args.tool_mode = "text"
        args.context_window = args.context_window or server.context_window
        return _run(args, console, err)


def _run(args: argparse.Namespace, console: Console, err: Console) -> int:
    import ftdojo_gym

    agent = make(args.agent, **_agent_kwargs(args))
    env = ftdojo_gym.make(args.task, **_env_kwargs(args))  # a mistyped id names the closest ids
    display = _Display(err, enabled=not args.no_progress)
    summaries: list[dict[str, Any]] = []
    writer = JsonlWriter(args.out)
    status = 0
    episode = 0
    records: list[StepRecord] = []
    started = time.monotonic()
    try:
        for episode in range(1, args.episodes + 1):
            records = []
            started = time.monotonic()

            def on_reset(tinfo: dict[str, Any], reset_info: dict[str, Any], episode: int = episode) -> None:
                versions = {"ftdojo-gym": ftdojo_gym.__version__, **tinfo.get("versions", {}),
                            **llm_versions_of(agent)}
                writer.write({"type": "header", "episode": episode, "time": time.time(), "args": _public_args(args),
                              "agent": args.agent, "task": args.task, "task_info": _public_task_info(tinfo),
                              "versions": versions})
                total = tinfo.get("budget", {}).get("steps_left")
                display.start(f"{args.agent} on {args.task} (episode {episode}/{args.episodes})",
                              total if isinstance(total, (int, float)) and total < 1e9 else None)

            def on_step(rec: StepRecord, episode: int = episode, records: list[StepRecord] = records) -> None:
                records.append(rec)
                writer.write({**rec.to_json(), "episode": episode})
                display.step(rec)

            result = run_episode(env, agent, seed=args.seed + episode - 1, on_step=on_step, on_reset=on_reset)
            display.stop()
            summary = {**result.summary(), "episode": episode, "llm_versions": llm_versions_of(agent)}
            writer.write(summary)
            summaries.append(summary)
    except KeyboardInterrupt:
        display.stop()
        status = 130
        partial = EpisodeResult(steps=len(records), interrupted=True, records=records,
                                seconds=time.monotonic() - started)
        partial.llm_usage = llm_usage_of(agent)
        summary = {**partial.summary(), "episode": episode, "llm_versions": llm_versions_of(agent)}
        try:
            writer.write(summary)
        except (OSError, ValueError):
            pass
        summaries.append(summary)
        err.print(f"[yellow]Interrupted: kept {len(records)} steps of episode {episode} in {args.out}[/yellow]")
    finally:
        writer.close()
        try:
            env.close()
        except Exception as exc:  # closing must not hide the run's own outcome
            err.print(f"[yellow]closing the env failed: {exc}[/yellow]")
    console.print(_summary_table(summaries))
    console.print(f"Trajectory: {args.out}")
    return status


def cmd_list(console: Console) -> int:
    import ftdojo_gym

    table = Table(title="Tasks")
    for col in ("env id", "domain", "metric"):
        table.add_column(col)
    for t in ftdojo_gym.list_tasks():
        table.add_row(t["env_id"], t["domain"], t["metric"])
    console.print(table)
    console.print("Agents: " + ", ".join(names()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ftdojo``; returns the exit code."""
    args = build_parser().parse_args(argv)
    console, err = Console(), Console(stderr=True)
    if args.command == "list":
        return cmd_list(console)
    if args.command == "sweep":
        from ftdojo_benchmarks.sweep import run_from_args

        return run_from_args(args)
    try:
        return cmd_run(args, console, err)
    except (ValueError, OSError, LLMError, LocalServerError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:  # before the episode loop (e.g. while the local server starts)
        err.print("[yellow]Interrupted[/yellow]")
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark sweep: agents x tasks x seeds, resumable, on a local process pool or on Ray.

    ftdojo sweep configs/sweep_tiny.toml --out runs/tiny                 # local pool (default)
    ftdojo sweep configs/sweep_tiny.toml --out runs/tiny --parallel 2
    ftdojo sweep configs/sweep_tiny.toml --out runs/tiny --backend ray [--address HOST:PORT]
    python -m ftdojo_benchmarks.sweep configs/sweep_tiny.toml --out runs/tiny   # the same
    python -m ftdojo_benchmarks.leaderboard runs/tiny                             # re-render

**Config** (TOML; :class:`SweepConfig` validates it and names the offending key)::

    tasks = ["FTDojo/AIME-v0", "FTDojo/FinanceIQ-v0"]     # registered env ids
    seeds = [0, 1]
    agents = [
      "manual-sft",                                        # a name from ftdojo_agents.names()
      { name = "random", grounded = true, submit_after = 8 },   # a name plus agent options
      { name = "react", local_model = "smollm2-135m", max_tokens = 256, tasks = ["FTDojo/AIME-v0"] },
    ]
    [[agents]]                  # or an array of tables, for long option lists (not mixed with agents = [...])
    name = "ft-agent"
    base_url = "http://127.0.0.1:8000/v1"
    model = "qwen"
    api_key_env = "OPENAI_API_KEY"             # the key itself never goes in the config
    price_input_per_1m = 0.15                  # USD per 1M prompt / completion tokens
    price_output_per_1m = 0.6
    [env]                       # gym.make options, the same for every episode
    base_model = "tiny"
    eval_limit = 4
    token_budget = 20000
    [run]                       # how to run (the command line overrides these)
    parallel = 1                # local pool: episodes at once
    cpus_per_episode = 1        # Ray: CPUs each episode asks for (and its torch threads)
    gpus_per_episode = 0        # Ray: GPUs each episode asks for
    server_threads = 1          # torch threads of a local LLM server (agents with local_model)

**One process per episode.** Each episode runs in a fresh process through
:func:`ftdojo_agents.episode.run_episode` (the loop of ``ftdojo run``) and
writes its JSONL trajectory to ``DIR/trajectories/``. The local pool runs
``parallel`` of them at once and pins each to ``cores // parallel`` threads
(``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``torch.set_num_threads``); the
env's model process inherits the pinned environment. Ray runs the same
episodes as tasks asking for ``cpus_per_episode`` CPUs (and
``gpus_per_episode`` GPUs), one worker process per task, results streamed
back to the driver as they finish.

**Resume.** An episode's key hashes (agent and options, task, seed, token
budget, env options, versions of the package, libraries and task). A finished
episode is one file ``DIR/results/<key>.json``, written atomically by whoever
finished it; a re-run skips those keys and re-runs every other planned
episode, interrupted or failed ones included (their partial trajectory is
overwritten). ``DIR/results.csv``, ``DIR/leaderboard.md`` and the plots
(:mod:`ftdojo_benchmarks.leaderboard`) are rebuilt from those files, so a
key is in the table once or not at all. If the sweep is killed, its episode
processes die with it (``PR_SET_PDEATHSIG``), so nothing writes behind a
resumed sweep's back.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import shutil
import socket
import sys
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from rich.console import Console

from ftdojo_gym.data.workspace import atomic_write_text
from ftdojo_gym.model_process.client import available_cores

#: Agent options that hold secrets or run-time endpoints: never part of a key or a record.
SECRET_OPTIONS = frozenset({"api_key"})
#: Agent options the sweep itself consumes (not passed to ``ftdojo_agents.make``).
SWEEP_AGENT_OPTIONS = frozenset({"name", "label", "local_model", "api_key_env", "tasks"})
#: Environment variables that size the thread pools of torch, OpenMP, MKL and OpenBLAS.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: Steps whose outcome the outcome cache can replay (their result carries ``cached``).
CACHEABLE_TOOLS = frozenset({"train", "evaluate"})


class SweepError(ValueError):
    """A config that cannot run, with the reason (the key and what is wrong)."""


# --------------------------------------------------------------------------- config
class AgentConfig(BaseModel):
    """One agent entry: a registered name, an optional display ``label`` and the agent's options.

    ``tasks`` limits the agent to some of the sweep's tasks (e.g. an
    expensive LLM agent on two tasks). ``local_model`` (LLM agents) serves that model with ``transformers serve``
    for the sweep and points the agent at it; ``api_key_env`` names the
    environment variable holding the API key (keys never go in the config,
    the results or the key hash). Any other field is passed to
    ``ftdojo_agents.make(name, **options)``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    label: str | None = None
    local_model: str | None = None
    api_key_env: str | None = None
    #: Run this agent on these of the sweep's tasks only (default: all of them).
    tasks: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _known_agent(cls, name: str) -> str:
        from ftdojo_agents.base import names

        if name not in names():
            raise ValueError(f"unknown agent {name!r}; known: {', '.join(names())}")
        return name

    @model_validator(mode="after")
    def _no_inline_secret(self) -> AgentConfig:
        if "api_key" in (self.model_extra or {}):
            raise ValueError("put the API key in an environment variable and name it with api_key_env, "
                             "not api_key: the config is copied into the results")
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The options passed to the agent (without the sweep's own fields)."""
        return dict(sorted((self.model_extra or {}).items()))

    @property
    def display(self) -> str:
        """The agent's name in results and the leaderboard: ``label``, else the registered name."""
        return self.label or self.name


class RunConfig(BaseModel):
    """How the sweep runs; the command line overrides each field."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "ray"] = "local"
    parallel: int = Field(1, ge=1)
    cpus_per_episode: float | None = Field(None, gt=0)
    gpus_per_episode: float = Field(0, ge=0)
    address: str | None = None
    server_threads: int = Field(1, ge=1)


class SweepConfig(BaseModel):
    """A sweep: ``agents`` x ``tasks`` x ``seeds``, each episode made with the ``env`` options."""

    model_config = ConfigDict(extra="forbid")

    agents: list[AgentConfig] = Field(min_length=1)
    tasks: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    env: dict[str, Any] = Field(default_factory=dict)
    run: RunConfig = Field(default_factory=RunConfig)

    @field_validator("agents", mode="before")
    @classmethod
    def _names_to_tables(cls, agents: Any) -> Any:
        if isinstance(agents, list):
            return [{"name": a} if isinstance(a, str) else a for a in agents]
        return agents

    @field_validator("tasks")
    @classmethod
    def _registered_tasks(cls, tasks: list[str]) -> list[str]:
        import gymnasium as gym

        import ftdojo_gym  # noqa: F401  (registers the ids)
        from ftdojo_gym.tasks import closest_ids

        for env_id in tasks:
            if env_id not in gym.registry:
                close = closest_ids(env_id.split("/", 1)[-1])
                hint = f"; closest: {', '.join(close)}" if close else ""
                raise ValueError(f"unknown env id {env_id!r}{hint}")
        if len(set(tasks)) != len(tasks):
            raise ValueError("a task is listed twice")
        return tasks

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("a seed is listed twice")
        return seeds

    @field_validator("env")
    @classmethod
    def _env_options(cls, env: dict[str, Any]) -> dict[str, Any]:
        from ftdojo_gym.env import FTDojoEnv

        params = inspect.signature(FTDojoEnv.__init__).parameters
        allowed = sorted(p for p in params if p not in ("self", "task"))
        for key in env:
            if key not in params or key in ("self", "task"):
                raise ValueError(f"unknown env option {key!r}; gym.make options: {', '.join(allowed)}")
        return dict(sorted(env.items()))

    @model_validator(mode="after")
    def _distinct_agents(self) -> SweepConfig:
        shown = [a.display for a in self.agents]
        twice = sorted({d for d in shown if shown.count(d) > 1})
        if twice:
            raise ValueError(f"agent {twice[0]!r} is listed twice: give the entries distinct `label`s")
        for agent in self.agents:
            unknown = sorted(set(agent.tasks or ()) - set(self.tasks))
            if unknown:
                raise ValueError(f"agent {agent.display!r}: tasks {unknown} are not in the sweep's tasks")
        return self


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep config; raises :class:`SweepError` naming the file and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"cannot read the sweep config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}")
        raise SweepError(f"invalid sweep config {path}:\n" + "\n".join(lines)) from exc


# --------------------------------------------------------------------------- episodes
@dataclass(frozen=True)
class EpisodeSpec:
    """One planned episode, everything that makes its result: see :meth:`key`."""

    agent: str
    agent_name: str
    agent_options: dict[str, Any]
    local_model: str | None
    api_key_env: str | None
    task: str
    seed: int
    env: dict[str, Any]
    token_budget: int
    versions: dict[str, str]

    @property
    def key(self) -> str:
        """A hash of (agent, options, task, seed, budget, env options, versions): the resume key."""
        ident = {"agent": self.agent, "agent_name": self.agent_name, "agent_options": self.agent_options,
                 "local_model": self.local_model, "task": self.task, "seed": self.seed,
                 "env": {k: v for k, v in self.env.items() if k != "token_budget"},  # resolved in token_budget
                 "token_budget": self.token_budget, "versions": self.versions}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def stem(self) -> str:
        """A readable, unique file name stem: ``<agent>__<task>__s<seed>__<key>``."""
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{self.agent}__{self.task}")
        return f"{safe}__s{self.seed}__{self.key}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpisodeSpec:
        return cls(**data)


def plan(config: SweepConfig) -> list[EpisodeSpec]:
    """The sweep's episodes in a fixed order (task, agent, seed); keys are distinct."""
    import gymnasium as gym

    from ftdojo_gym.tasks import make_task
    from ftdojo_gym.versions import library_versions

    libs = library_versions()
    data = config.env.get("data", "offline")
    specs = []
    for env_id in config.tasks:
        task = make_task(gym.spec(env_id).kwargs["task"], data=data)
        budget = int(config.env.get("token_budget") or task.default_token_budget)
        versions = {**libs, "task": f"{task.name}@{task.version}"}
        for agent in config.agents:
            if agent.tasks is not None and env_id not in agent.tasks:
                continue
            for seed in config.seeds:
                specs.append(EpisodeSpec(
                    agent=agent.display, agent_name=agent.name, agent_options=agent.options,
                    local_model=agent.local_model, api_key_env=agent.api_key_env, task=env_id, seed=seed,
                    env=dict(config.env), token_budget=budget, versions=versions))
    return specs


def episode_threads(parallel: int, server_threads: int = 0) -> int:
    """Each of ``parallel`` episodes' torch threads: the CPUs this sweep may use (its affinity
    mask under ``taskset`` or a cgroup cpuset, not the machine's count) less a local LLM
    server's, shared out; at least one."""
    return max(1, (available_cores() - server_threads) // parallel)


def pin_threads(n: int) -> None:
    """Give this process, and every child it starts from now on, ``n`` compute threads.

    The environment variables reach the env's model process (it inherits
    ``os.environ``); torch reads them when it is imported there. If torch is
    already imported here, its pool is resized too.
    """
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def hardware(threads: int) -> dict[str, Any]:
    """What an episode ran on: CPU model, cores, its thread share, GPU (if one is visible), host."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = None
    if shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES", "0") != "":
        import subprocess

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10)
            gpu = ", ".join(sorted(set(out.stdout.split("\n")) - {""})) or None
    return {"cpu": cpu, "cores": available_cores(), "threads": threads, "gpu": gpu, "host": socket.gethostname()}


def hardware_label(hw: dict[str, Any]) -> str:
    """``hardware()`` as one short string for tables."""
    text = f"{hw.get('cpu')} ({hw.get('threads')}/{hw.get('cores')} threads)"
    return f"{text}, {hw['gpu']}" if hw.get("gpu") else text


def _agent_kwargs(spec: EpisodeSpec, traj: Path, endpoints: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The options for ``ftdojo_agents.make``: the config's, plus the endpoint, key, tree and seed."""
    kwargs = dict(spec.agent_options)
    if spec.local_model is not None:
        for k, v in endpoints[spec.local_model].items():
            kwargs.setdefault(k, v)
    if spec.api_key_env is not None:
        kwargs["api_key"] = os.environ.get(spec.api_key_env) or None
    if spec.agent_name == "ft-agent":
        tree = traj.with_suffix(".tree.json")
        tree.unlink(missing_ok=True)  # a re-run of an interrupted episode starts a fresh tree
        kwargs.setdefault("tree_path", str(tree))
    if spec.agent_name == "random":  # the sweep's seed drives the agent's choices too
        kwargs.setdefault("seed", spec.seed)
    return kwargs


def play(spec: EpisodeSpec, trajectory: Path, *, threads: int, backend: str,
         endpoints: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run one episode (in this process) and return its result row; writes the trajectory.

    The row (:func:`ftdojo_benchmarks.leaderboard.COLUMNS`) holds the
    submission's scores, training tokens, LLM usage and cost, the outcome
    cache's hits, timing, hardware and versions. Raises whatever the env or
    agent construction raises; an agent's exception inside the episode is
    recorded by ``run_episode`` and does not end it.
    """
    import ftdojo_agents
    import ftdojo_gym
    from ftdojo_agents.episode import JsonlWriter, StepRecord, llm_versions_of, run_episode

    started = time.time()
    agent = ftdojo_agents.make(spec.agent_name, **_agent_kwargs(spec, trajectory, endpoints or {}))
    env = ftdojo_gym.make(spec.task, **spec.env)
    cache = {"hits": 0, "lookups": 0}
    base_val: list[float] = []
    hw = hardware(threads)
    try:
        with JsonlWriter(trajectory) as writer:
            def on_reset(tinfo: dict[str, Any], reset_info: dict[str, Any]) -> None:
                writer.write({"type": "header", "time": started, "sweep_key": spec.key, "agent": spec.agent,
                              "agent_name": spec.agent_name, "agent_options": spec.agent_options,
                              "task": spec.task, "seed": spec.seed, "env": spec.env, "hardware": hw,
                              "versions": {"ftdojo-gym": ftdojo_gym.__version__, **tinfo.get("versions", {}),
                                           **llm_versions_of(agent)}})

            def on_step(rec: StepRecord) -> None:
                if rec.tool in CACHEABLE_TOOLS and rec.ok:
                    cache["lookups"] += 1
                    cache["hits"] += bool(rec.result.get("cached"))
                if rec.tool == "evaluate" and rec.ok and rec.result.get("run") == "base":
                    base_val.append(float(rec.result["score"]))
                writer.write({**rec.to_json(), "cached": bool(rec.result.get("cached"))})

            result = run_episode(env, agent, seed=spec.seed, on_step=on_step, on_reset=on_reset)
            summary = result.summary()
            writer.write({**summary, "llm_versions": llm_versions_of(agent)})
    finally:
        try:
            env.close()
        except Exception as exc:  # a failing close must not lose a finished episode
            print(f"closing the env of {spec.stem} failed: {exc}", file=sys.stderr)
    usage = summary.get("llm_usage") or {}
    submission = result.submission or {}
    return {
        "key": spec.key, "agent": spec.agent, "agent_name": spec.agent_name, "task": spec.task,
        "seed": spec.seed, "token_budget": spec.token_budget,
        "validation_score": summary.get("validation_score"),
        "hidden_test_score": summary.get("hidden_test_score"),
        "base_hidden_test_score": summary.get("base_hidden_test_score"),
        "base_validation_score": base_val[-1] if base_val else None,
        "submitted_run": summary.get("submitted_run"), "tokens_used": summary.get("tokens_used"),
        "steps": result.steps, "agent_errors": result.agent_errors, "invalid_actions": result.invalid_actions,
        "llm_prompt_tokens": usage.get("prompt_tokens"), "llm_completion_tokens": usage.get("completion_tokens"),
        "llm_total_tokens": usage.get("total_tokens"), "llm_cost_usd": usage.get("cost_usd"),
        "cache_hits": cache["hits"], "cache_lookups": cache["lookups"],
        "seconds": round(time.time() - started, 2), "started": started, "finished": time.time(),
        "backend": backend, "hardware": hardware_label(hw), "host": hw["host"], "threads": threads,
        "trajectory": f"trajectories/{trajectory.name}",
        "versions": json.dumps(submission.get("versions") or spec.versions, sort_keys=True),
        "env": json.dumps(spec.env, sort_keys=True), "agent_options": json.dumps(spec.agent_options, sort_keys=True),
    }


# --------------------------------------------------------------------------- the results folder
class ResultStore:
    """``DIR/results/<key>.json`` per finished episode (atomic writes), failures in ``DIR/failed/``."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.results = self.out / "results"
        self.failed = self.out / "failed"
        self.trajectories = self.out / "trajectories"
        for folder in (self.results, self.failed, self.trajectories):
            folder.mkdir(parents=True, exist_ok=True)

    def trajectory(self, spec: EpisodeSpec) -> Path:
        return self.trajectories / f"{spec.stem}.jsonl"

    def done_keys(self) -> set[str]:
        return {p.stem for p in self.results.glob("*.json")}

    def put(self, row: dict[str, Any]) -> None:
        """Record a finished episode; clears an earlier failure of the same key."""
        atomic_write_text(self.results / f"{row['key']}.json", json.dumps(row, sort_keys=True))
        (self.failed / f"{row['key']}.json").unlink(missing_ok=True)

    def put_failure(self, spec: EpisodeSpec, error: str) -> None:
        atomic_write_text(self.failed / f"{spec.key}.json",
                          json.dumps({"key": spec.key, "spec": spec.to_json(), "error": error}, default=str))

    def rows(self) -> list[dict[str, Any]]:
        """Every finished episode's row, in key order (one per key by construction)."""
        rows = []
        for path in sorted(self.results.glob("*.json")):
            try:
                rows.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError):  # cannot happen with atomic writes; never fatal
                continue
        return rows


# --------------------------------------------------------------------------- events and progress
@dataclass
class SweepStats:
    """Counts while the sweep runs; ``on_event`` receives it after every change."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    started: float = field(default_factory=time.monotonic)
    episode_seconds: list[float] = field(default_factory=list)
    last: str = ""

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done - self.failed

    def episodes_per_hour(self) -> float:
        elapsed = time.monotonic() - self.started
        return 3600.0 * self.done / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self) -> float | None:
        if not self.done:
            return None
        return self.remaining * (time.monotonic() - self.started) / self.done


class ProgressDisplay:
    """A rich progress bar for the whole sweep (done, running, failed, ETA), or plain lines."""

    def __init__(self, console: Console, enabled: bool):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.progress = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[status]}"), console=console) if enabled else None
        self.task_id: Any = None

    def __enter__(self) -> ProgressDisplay:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, stats: SweepStats) -> None:
        eta = stats.eta_seconds()
        status = (f"running {stats.running} | failed {stats.failed} | skipped {stats.skipped} | "
                  f"{stats.episodes_per_hour():.1f} ep/h | ETA {'?' if eta is None else _duration(eta)}")
        if self.progress is None:
            self.console.print(f"[{stats.done + stats.skipped + stats.failed}/{stats.total}] {stats.last} | {status}",
                               highlight=False)
            return
        if self.task_id is None:
            self.task_id = self.progress.add_task("sweep", total=stats.total, status=status)
        if stats.last:
            self.progress.console.print(stats.last, highlight=False)
        self.progress.update(self.task_id, completed=stats.done + stats.skipped + stats.failed, status=status)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


# --------------------------------------------------------------------------- backends
def _die_with_parent() -> None:
    """SIGKILL this process when the sweep dies (Linux), so a killed sweep leaves no episode running."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _local_episode(spec_json: dict[str, Any], out: str, threads: int, endpoints: dict[str, dict[str, Any]]) -> None:
    """Body of one pool process: pin, play, record (a failure is recorded too, then exit 1)."""
    _die_with_parent()
    pin_threads(threads)
    spec = EpisodeSpec.from_json(spec_json)
    store = ResultStore(out)
    try:
        row = play(spec, store.trajectory(spec), threads=threads, backend="local", endpoints=endpoints)
    except BaseException as exc:  # recorded as a failure; the sweep goes on with the others
        store.put_failure(spec, "".join(traceback.format_exception(exc))[-4000:])
        raise SystemExit(1) from None
    store.put(row)


def run_local(specs: Sequence[EpisodeSpec], store: ResultStore, stats: SweepStats, *, parallel: int, threads: int,
              endpoints: dict[str, dict[str, Any]], on_event: Callable[[SweepStats], None]) -> None:
    """Run ``specs`` with at most ``parallel`` episode processes at once, each pinned to ``threads``.

    Every episode gets a fresh process (spawned: torch is not fork-safe), so
    a crash, an OOM kill or a leak costs that episode only.
    """
    ctx = multiprocessing.get_context("spawn")
    pending = list(specs)
    running: dict[Any, tuple[multiprocessing.process.BaseProcess, EpisodeSpec]] = {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                spec = pending.pop(0)
                proc = ctx.Process(target=_local_episode, args=(spec.to_json(), str(store.out), threads, endpoints),
                                   name=f"episode-{spec.key}", daemon=False)
                proc.start()
                running[proc.sentinel] = (proc, spec)
                stats.running, stats.last = len(running), f"started {spec.agent} on {spec.task} seed {spec.seed}"
                on_event(stats)
            for sentinel in multiprocessing.connection.wait(list(running)):
                proc, spec = running.pop(sentinel)
                proc.join()
                stats.running = len(running)
                _finished(spec, store, stats, exitcode=proc.exitcode)
                on_event(stats)
    finally:
        for proc, _ in running.values():  # interrupted: take the episodes down with us
            proc.kill()
            proc.join()


def _finished(spec: EpisodeSpec, store: ResultStore, stats: SweepStats, exitcode: int | None = 0) -> None:
    path = store.results / f"{spec.key}.json"
    if path.exists():  # written last, atomically: the episode finished even if its process died after
        row = json.loads(path.read_text(encoding="utf-8"))
        stats.done += 1
        stats.episode_seconds.append(float(row.get("seconds") or 0))
        test = row.get("hidden_test_score")
        stats.last = (f"done {spec.agent} on {spec.task} seed {spec.seed}: hidden test "
                      f"{'-' if test is None else f'{100 * test:.1f}'} in {row.get('seconds')} s")
    else:
        if not (store.failed / f"{spec.key}.json").exists():
            store.put_failure(spec, f"episode process exited with code {exitcode}")
        stats.failed += 1
        stats.last = f"[red]FAILED[/red] {spec.agent} on {spec.task} seed {spec.seed} (see {store.failed}/{spec.key}.json)"


def _ray_episode(spec_json: dict[str, Any], threads: int, backend: str) -> tuple[dict[str, Any], str]:
    """A Ray task: play one episode in this worker, return (row, trajectory text) to the driver.

    The trajectory is written to a temporary folder on the worker's node and
    shipped back, so the driver's ``DIR`` need not be on a shared filesystem.
    """
    import tempfile

    pin_threads(threads)
    spec = EpisodeSpec.from_json(spec_json)
    with tempfile.TemporaryDirectory(prefix="ftdojo-sweep-") as tmp:
        traj = Path(tmp) / f"{spec.stem}.jsonl"
        row = play(spec, traj, threads=threads, backend=backend)
        return row, traj.read_text(encoding="utf-8")


def run_ray(specs: Sequence[EpisodeSpec], store: ResultStore, stats: SweepStats, *, address: str | None,
            cpus: float, gpus: float, on_event: Callable[[SweepStats], None]) -> None:
    """Run ``specs`` as Ray tasks (``num_cpus=cpus``, ``num_gpus=gpus``), collecting results as they finish.

    Connects to ``address`` (``"auto"``, ``HOST:PORT``, ``ray://HOST:10001``),
    or starts a local Ray instance when it is None; a Ray already initialised
    in this process (e.g. by a test) is used as it is. Each task runs in a
    fresh worker process (``max_calls=1``) and is not retried: a failed
    episode is recorded and re-run by the next sweep.
    """
    try:
        import ray
    except ImportError as exc:
        raise SweepError("--backend ray needs Ray: pip install 'ftdojo-gym[dist]'") from exc

    owns = not ray.is_initialized()
    if owns:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    threads = max(1, int(cpus))
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_calls=1, max_retries=0)(_ray_episode)
    refs = {task.remote(spec.to_json(), threads, "ray"): spec for spec in specs}
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
    try:
        while refs:
            stats.running = min(len(refs), slots)
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=5.0)
            for ref in ready:
                spec = refs.pop(ref)
                try:
                    row, text = ray.get(ref)
                except Exception as exc:  # a task error or a lost worker: recorded, re-run next time
                    store.put_failure(spec, f"{type(exc).__name__}: {exc}"[-4000:])
                    _finished(spec, store, stats, exitcode=1)
                else:
                    atomic_write_text(store.trajectory(spec), text)
                    store.put(row)
                    _finished(spec, store, stats)
                stats.running = min(len(refs), slots)
                on_event(stats)
    finally:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if owns:
            ray.shutdown()


@contextlib.contextmanager
def local_llm_servers(specs: Sequence[EpisodeSpec], out: Path, threads: int) -> Iterator[dict[str, dict[str, Any]]]:
    """Serve each ``local_model`` the pending episodes need (one server each); yield their agent options."""
    models = sorted({s.local_model for s in specs if s.local_model})
    if not models:
        yield {}
        return
    from ftdojo_agents.local_server import serve_local_model

    with contextlib.ExitStack() as stack:
        endpoints = {}
        for model in models:
            safe = "".join(c if c.isalnum() else "-" for c in model)
            server = stack.enter_context(serve_local_model(model, threads=threads,
                                                           log_path=out / f"server-{safe}.log"))
            endpoints[model] = server.llm_kwargs()
        yield endpoints


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepReport:
    """What a sweep did: counts, wall time, aggregate throughput and the outcome cache's hit rate."""

    planned: int
    skipped: int
    done: int
    failed: int
    seconds: float
    episodes_per_hour: float
    cache_hits: int
    cache_lookups: int
    backend: str

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.cache_lookups if self.cache_lookups else None


def run_sweep(config: SweepConfig, out: str | Path, *, backend: str | None = None, parallel: int | None = None,
              address: str | None = None, console: Console | None = None, progress: bool = True,
              leaderboard: bool = True) -> SweepReport:
    """Run every planned episode whose key has no result in ``out`` yet; rebuild the leaderboard.

    Returns the :class:`SweepReport` (also written to ``DIR/sweep_report.json``).
    """
    console = console or Console(stderr=True)
    out = Path(out)
    store = ResultStore(out)
    run = config.run
    backend = backend or run.backend
    parallel = parallel or run.parallel
    specs = plan(config)
    atomic_write_text(out / "sweep.json", json.dumps({"config": config.model_dump(mode="json"),
                                                       "keys": [s.key for s in specs]}, indent=1))
    done = store.done_keys()
    todo = [s for s in specs if s.key not in done]
    stats = SweepStats(total=len(specs), skipped=len(specs) - len(todo), last=f"{len(todo)} to run")
    servers = run.server_threads if any(s.local_model for s in todo) else 0
    threads = episode_threads(parallel, servers)
    console.print(f"Sweep: {len(specs)} episodes planned, {stats.skipped} already done, {len(todo)} to run "
                  f"({backend}" + (f", {parallel} at once, {threads} threads each" if backend == "local" else "")
                  + f"); results in {out}")
    with ProgressDisplay(console, enabled=progress) as display:
        display.update(stats)
        if backend == "local":
            with local_llm_servers(todo, out, run.server_threads) as endpoints:
                run_local(todo, store, stats, parallel=parallel, threads=threads, endpoints=endpoints,
                          on_event=display.update)
        elif backend == "ray":
            if any(s.local_model for s in todo):
                raise SweepError("local_model agents run on the local backend; on Ray give them a base_url")
            run_ray(todo, store, stats, address=address or run.address, cpus=run.cpus_per_episode or 1,
                    gpus=run.gpus_per_episode, on_event=display.update)
        else:
            raise SweepError(f"unknown backend {backend!r} (local or ray)")
    rows = [r for r in store.rows() if r["key"] in {s.key for s in specs}]
    ran = [r for r in rows if r["key"] in {s.key for s in todo}]
    report = SweepReport(planned=len(specs), skipped=stats.skipped, done=stats.done, failed=stats.failed,
                         seconds=round(time.monotonic() - stats.started, 2),
                         episodes_per_hour=round(stats.episodes_per_hour(), 2),
                         cache_hits=sum(int(r.get("cache_hits") or 0) for r in ran),
                         cache_lookups=sum(int(r.get("cache_lookups") or 0) for r in ran), backend=backend)
    atomic_write_text(out / "sweep_report.json",
                      json.dumps({**asdict(report), "cache_hit_rate": report.cache_hit_rate}, indent=1))
    if leaderboard:
        from ftdojo_benchmarks.leaderboard import write_leaderboard

        write_leaderboard(out, rows, tasks=config.tasks, report=report)
    rate = report.cache_hit_rate
    console.print(f"Sweep finished: {report.done} done, {report.failed} failed, {report.skipped} skipped in "
                  f"{_duration(report.seconds)}; {report.episodes_per_hour:.1f} episodes/hour; outcome cache "
                  f"hit rate {'n/a' if rate is None else f'{100 * rate:.0f} %'} "
                  f"({report.cache_hits}/{report.cache_lookups} train/evaluate steps)")
    if leaderboard:
        console.print(f"Leaderboard: {out / 'leaderboard.md'}")
    return report


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The sweep's arguments (``ftdojo sweep`` adds them to its subparser)."""
    parser = parser or argparse.ArgumentParser(prog="python -m ftdojo_benchmarks.sweep",
                                               description="Run a benchmark sweep of agents x tasks x seeds.")
    parser.add_argument("config", nargs="?", help="sweep config (TOML)")
    parser.add_argument("--out", required=True, help="results folder (re-running resumes it)")
    parser.add_argument("--backend", choices=("local", "ray"), default=None, help="default: the config's, else local")
    parser.add_argument("--parallel", type=int, default=None, help="local: episodes at once (default: config, 1)")
    parser.add_argument("--address", default=None, help="ray: cluster address (default: start a local Ray)")
    parser.add_argument("--no-progress", action="store_true", help="plain lines instead of a live display")
    parser.add_argument("--leaderboard-only", action="store_true", help="only rebuild DIR's leaderboard")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 when every episode is done, 1 when some failed or the config is invalid."""
    args = build_parser().parse_args(argv)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``ftdojo sweep`` / ``python -m ftdojo_benchmarks.sweep`` from parsed arguments; returns the exit code."""
    console = Console(stderr=True, soft_wrap=True)
    try:
        if args.leaderboard_only:
            from ftdojo_benchmarks.leaderboard import main as leaderboard_main

            return leaderboard_main([args.out])
        if not args.config:
            raise SweepError("a sweep config is required (or --leaderboard-only)")
        if args.parallel is not None and args.parallel < 1:
            raise SweepError("--parallel must be at least 1")
        config = load_config(args.config)
        report = run_sweep(config, args.out, backend=args.backend, parallel=args.parallel, address=args.address,
                           console=console, progress=not args.no_progress and console.is_terminal)
    except (SweepError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: finished episodes are kept; run the same command to resume[/yellow]")
        return 130
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

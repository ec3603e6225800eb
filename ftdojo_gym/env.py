"""FTDojoEnv: autonomous LLM fine-tuning as a Gymnasium environment.

The data flows one way: tool call -> schema validation (:mod:`ftdojo_gym.actions`)
-> tool handler (:mod:`ftdojo_gym.tools`: data, training or evaluation) -> typed
result (:mod:`ftdojo_gym.results`) -> log window and metrics
(:mod:`ftdojo_gym.observations`) -> observation. This module keeps the
episode's life: construction, ``reset``, ``step``, truncation and ``close``.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import gymnasium as gym

from ftdojo_gym.actions import TOOLS, ToolCallSpace, usage
from ftdojo_gym.budget import Budget
from ftdojo_gym.data.workspace import DataMemo, DataWorkspace
from ftdojo_gym.episode import EpisodeSettings, EpisodeState, load_state, save_state
from ftdojo_gym.folders import make_env_folder
from ftdojo_gym.grading.sandbox import sandbox_unavailable
from ftdojo_gym.model_process.client import ModelWorker
from ftdojo_gym.model_process.protocol import DEFAULT_EVAL_BATCH
from ftdojo_gym.model_process.resident import PRECISIONS, resolve_precision
from ftdojo_gym.models import (
    DEFAULT_MODEL,
    load_token_counter,
    model_fingerprint,
    resolve_model,
)
from ftdojo_gym.observations import (
    EpisodeLog,
    format_observation,
    observation_space,
)
from ftdojo_gym.outcome_cache import open_cache
from ftdojo_gym.outcome_table import OutcomeTable
from ftdojo_gym.results import (
    EvaluationResult,
    RunRecord,
    SubmissionResult,
)
from ftdojo_gym.rules import MAX_TRAIN_SAMPLES
from ftdojo_gym.tasks import make_task
from ftdojo_gym.tasks.base import Task
from ftdojo_gym.tools import run_tool
from ftdojo_gym.tools.evaluation import submit_run
from ftdojo_gym.training_config import TrainConfig


class FTDojoEnv(gym.Env):
    """An FT-Dojo task: fine-tune a base LLM end to end within a compute budget.

    **Actions** are tool calls ``{"tool": name, "args": {...}}`` (also as a JSON
    string or an OpenAI tool call); see :func:`ftdojo_gym.tool_schemas` for the
    tools and their arguments. Invalid actions return an error observation with
    the tool's usage and cost one step.

    **Observations** are a dict: ``log`` (the newest ``log_window`` characters of
    the episode log), ``metrics`` (float32, fields
    :data:`~ftdojo_gym.observations.METRIC_FIELDS`, -1 when unknown) and
    ``budget`` (float32, fields :data:`~ftdojo_gym.observations.BUDGET_FIELDS`);
    :mod:`ftdojo_gym.observations` has the decoders.

    **Reward** is 0 except at the end, where it is the hidden-test score of
    the submitted run in ``[0, 1]``; ``info["submission"]`` (a
    :class:`~ftdojo_gym.results.SubmissionResult`) also holds the base model's
    hidden-test score. ``submit`` terminates; running out of tokens, seconds or
    steps truncates and submits the best validated run. ``gym.make(id,
    max_episode_steps=N)`` sets this env's own step limit.

    **info** holds ``tool``, ``ok``, ``error_class`` (CONFIG, OOM, DATA, ENV or
    None for a malformed action), ``result`` (the typed result as a dict),
    ``result_type`` (its class name; :func:`ftdojo_gym.observations.latest_result`
    rebuilds it), ``cached`` (the result was replayed from the outcome cache,
    :mod:`ftdojo_gym.outcome_cache`; ``outcome_cache=False`` turns it off) and ``accounting`` (tokens trained this step and in total,
    seconds, steps).

    **Modes**: ``mode="live"`` (default) trains and generates for real, replaying
    repeated runs from the outcome cache; ``mode="tabular"`` serves train,
    evaluate and submit from a shipped table of real outcomes over a recipe grid
    (:mod:`ftdojo_gym.outcome_table`, ``outcome_table=`` for another file): a run
    outside the table is a CONFIG error naming the nearest recipes.

    **Resume**: the episode's state is saved after every step; after the
    process died, a new env with the same options continues it with
    ``env.reset(options={"resume": <episode folder>})`` (the step in flight is lost).

    **Model process**: training and generation run in one persistent child
    process per env that keeps the base model loaded for the whole episode.
    ``worker_threads`` is its compute thread count (default None: the cores
    this process may run on, ``os.sched_getaffinity``, or ``OMP_NUM_THREADS``
    when set); give each env on a shared machine its own share, e.g.
    ``worker_threads=1`` for two envs on two cores (oversubscribed cores made a
    training step ~15x slower). ``worker_memory_gb`` caps its address space.

    **Evaluation numerics**: ``eval_precision="auto"`` (default) generates in bf16
    where the hardware has fast bf16 (a GPU; a CPU with ``avx512_bf16`` or AMX whose
    bf16 matrix products a one-time timing finds faster than fp32, where training
    runs under bf16 autocast too, see :mod:`ftdojo_gym.model_process.cpu_bf16`) and
    in fp32 elsewhere;
    ``"bf16"`` or ``"fp32"`` forces one. bf16 is the precision SmolLM2 is published
    in and 2-3x faster on such a CPU; a few greedy outputs differ from fp32 where
    two tokens are nearly tied (measured on fine-tuned SmolLM2-135M: 90-100 of 100
    outputs identical, scores within a point). The resolved precision is part of
    the outcome-cache keys and of ``versions`` in every submission. In tabular mode
    it is the table's (``fp32`` for the shipped tables).

    **Read-only views** for wrappers and benchmarks: :attr:`task`,
    :attr:`config`, :attr:`runs`, :attr:`evaluations`, :attr:`workspace`, :attr:`lineage`,
    :attr:`workdir`, :attr:`tokens_used` (through wrappers:
    ``env.get_wrapper_attr("runs")``).

    Each env instance works in its own folder (``ftdojo-*`` under ``workdir``
    when given, kept after ``close`` for inspection; else a temporary folder,
    removed by ``close``); a new episode removes the previous episode's folder
    unless ``keep_episodes=True``. The hidden test split is generated for and
    graded inside this process; it is never written to the workspace, the log
    or ``info``.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        task: str | Task = "TableBench",
        *,
        base_model: str = DEFAULT_MODEL,
        data: str = "offline",
        data_seed: int = 0,
        token_budget: int | None = None,
        time_limit_s: float | None = None,
        max_episode_steps: int = 200,
        log_window: int = 8000,
        workdir: str | Path | None = None,
        keep_episodes: bool = False,
        eval_batch_size: int = DEFAULT_EVAL_BATCH,
        eval_limit: int | None = None,
        eval_precision: str = "auto",
        worker_memory_gb: float | None = None,
        worker_threads: int | None = None,
        outcome_cache: bool | str | Path | None = None,
        mode: str = "live",
        outcome_table: str | Path | None = None,
        progress: bool = False,
        render_mode: str | None = None,
    ):
        check_env_options(log_window=log_window, eval_batch_size=eval_batch_size, eval_limit=eval_limit,
                       worker_memory_gb=worker_memory_gb, render_mode=render_mode, mode=mode,
                       outcome_table=outcome_table, eval_precision=eval_precision)
        self._options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.task: Task = make_task(task, data=data) if isinstance(task, str) else task
        self.base_model_name = base_model
        self.base_model = str(resolve_model(base_model))
        self.token_budget = int(token_budget or self.task.default_token_budget)
        self.time_limit_s = time_limit_s
        self._max_episode_steps = max_episode_steps
        Budget(self.token_budget, time_limit_s, max_episode_steps)  # validates the limits now, not at reset
        self.log_window = log_window
        self.render_mode = render_mode
        self._root = Path(workdir) if workdir is not None else None
        self._keep_episodes = keep_episodes
        self._token_counter = load_token_counter(self.base_model)
        validation, hidden_test = self.task.split(self.task.eval_items(data_seed), eval_limit)
        self._settings = EpisodeSettings(
            task=self.task, base_model=self.base_model, base_model_name=base_model, data_seed=data_seed,
            eval_batch_size=eval_batch_size, progress=progress, validation_items=validation,
            hidden_test_items=hidden_test, base_model_fingerprint=model_fingerprint(self.base_model),
            outcome_cache=open_cache(outcome_cache) if mode == "live" else None,
            eval_precision=resolve_precision(eval_precision),
        )
        if mode == "tabular":  # real outcomes from a shipped table; no model process is ever started
            table = OutcomeTable.load(outcome_table) if outcome_table else OutcomeTable.shipped(self.task.name)
            table.check_for(self.task, data_seed, len(validation), self._settings.base_model_fingerprint)
            self._settings.outcome_table = table
            self._settings.eval_precision = table.eval_precision
        if self.task.executes_model_output and (why := sandbox_unavailable()):
            warnings.warn(f"{self.task.name} grades model-written code, and the sandbox it runs in is unavailable "
                          f"({why}): that code will not run and those items score 0. Install bubblewrap.",
                          RuntimeWarning, stacklevel=2)
        self._sources: dict[str, Any] | None = None
        self._data_memo = DataMemo()  # data results by lineage, for the env's life (same sources, same rows)
        self._worker = ModelWorker(memory_limit_gb=worker_memory_gb, threads=worker_threads)
        self._instance_dir: Path | None = None
        self._episode = 0
        self._state: EpisodeState | None = None
        self._done = False
        self.action_space = ToolCallSpace()
        self.observation_space = observation_space(log_window)

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._episode += 1
        previous = self._state.workdir if self._state is not None else None
        if previous is not None and not self._keep_episodes and previous.parent == self._instance_dir:
            shutil.rmtree(previous, ignore_errors=True)
        if self._sources is None:
            self._sources = self.task.sources(self._settings.data_seed)
        self._done = False
        s = self._settings
        resume = (options or {}).get("resume")
        if resume is not None:  # an episode saved by an env whose process died: go on where it stopped
            path = Path(resume)
            self._state = load_state(path, s, DataWorkspace(self._sources, self._token_counter, path, self._data_memo),
                                     EpisodeLog(path / "episode.log", self.log_window), self._worker)
            self._state.log.write(f"\n# Resumed from {path} after step {self._state.budget.steps_taken}.")
            return self._observation(), self._reset_info(path)
        workdir = self._episode_dir()
        config = TrainConfig(seed=int(self.np_random.integers(2**31 - 1)) % 10_000)
        self._state = EpisodeState(
            settings=s, workdir=workdir,
            data=DataWorkspace(self._sources, self._token_counter, workdir, self._data_memo), config=config,
            budget=Budget(self.token_budget, self.time_limit_s, self._max_episode_steps),
            log=EpisodeLog(workdir / "episode.log", self.log_window), worker=self._worker,
        )
        self._state.log.write(
            f"# FT-Dojo task {self.task.name} (v{self.task.version}, domain {self.task.domain}, metric {self.task.metric})\n"
            f"Base model: {self.base_model_name}. Budget: {self._state.budget.describe()}. "
            f"Each run uses at most {MAX_TRAIN_SAMPLES:,} samples.\n"
            f"Validation split: {len(s.validation_items)} items (visible through evaluate); "
            f"hidden test split: {len(s.hidden_test_items)} items (scored on submit).\n"
            + usage()
        )
        save_state(self._state)
        return self._observation(), self._reset_info(workdir)

    def step(self, action: Any):
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._done:
            raise gym.error.ResetNeeded("the episode is over; call reset()")
        state = self._state
        t0 = time.monotonic()
        tokens_before = state.budget.tokens_used
        state.budget.take_step()
        tool, result = run_tool(state, action)
        state.last_ok = result.ok
        state.log.write(result.render())
        reward = 0.0
        terminated = tool == "submit" and isinstance(result, SubmissionResult)
        truncated = False
        submission = result if terminated else None
        if not terminated and (reason := state.budget.exhausted()):
            truncated = True
            state.log.write(f"\nBudget exhausted ({reason}): submitting the best validated run.")
            submission = submit_run(state, None, automatic=True)
            state.log.write(submission.render())
        if isinstance(submission, SubmissionResult):
            reward = float(submission.hidden_test_score)
        self._done = terminated or truncated
        info = state.step_info(tool, result, tokens_before, time.monotonic() - t0)
        if self._done:
            info["submission"] = submission.model_dump(mode="json") if submission is not None else None
        save_state(state)
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode == "ansi" and self._state is not None:
            return format_observation(self._observation(), max_chars=None)
        return None

    def close(self):
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
        if self._instance_dir is not None and self._root is None:  # a folder the user chose keeps its files
            shutil.rmtree(self._instance_dir, ignore_errors=True)
        self._instance_dir = None
        self._state = None
        super().close()

    @property
    def max_episode_steps(self) -> int:
        """The step limit (of this episode and the next ones); setting it keeps the budget in step."""
        return self._max_episode_steps

    @max_episode_steps.setter
    def max_episode_steps(self, steps: int) -> None:
        self.set_max_episode_steps(steps)

    def set_max_episode_steps(self, steps: int) -> None:
        """Set the step limit of this episode and the next (``gym.make(id, max_episode_steps=N)`` calls this)."""
        Budget(self.token_budget, self.time_limit_s, steps)  # validates
        self._max_episode_steps = int(steps)
        self._options["max_episode_steps"] = int(steps)
        if self._state is not None:
            self._state.budget.steps = int(steps)

    # ------------------------------------------------------- read-only views
    @property
    def config(self) -> TrainConfig:
        """The training config the next ``train`` call uses."""
        return self._require_state().config

    @property
    def runs(self) -> dict[str, RunRecord]:
        """This episode's runs by id (copies)."""
        return {k: r.model_copy() for k, r in self._require_state().runs.items()}

    @property
    def evaluations(self) -> dict[str, EvaluationResult]:
        """This episode's validation results by ``"<run>@<items>"`` (and ``"base"``)."""
        return dict(self._require_state().evaluations)

    @property
    def workspace(self) -> DataWorkspace:
        """The episode's data workspace (sources and datasets); tools are the way to change it."""
        return self._require_state().data

    @property
    def lineage(self) -> dict[str, list[Any]]:
        """How each dataset of the episode was made (its data operations from the sources)."""
        return json.loads(json.dumps(self._require_state().lineage))

    @property
    def workdir(self) -> Path:
        return self._require_state().workdir

    @property
    def tokens_used(self) -> int:
        return self._require_state().budget.tokens_used

    @property
    def outcome_table(self) -> OutcomeTable | None:
        """The outcome table that serves tabular mode (None in live mode)."""
        return self._settings.outcome_table

    # -------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        if self._state is not None:
            raise TypeError(
                "an FTDojoEnv in the middle of an episode holds a model process and a workspace on disk, so it "
                "cannot be pickled or copied; create one env per process with gym.make(...) (vector envs do), "
                "or pickle it before reset() or after close()")
        return {"options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["options"])  # a fresh env with the same options; the model process starts lazily

    # -------------------------------------------------------------- helpers
    def _reset_info(self, workdir: Path) -> dict[str, Any]:
        task = self.task
        return {"task": task.name, "task_version": task.version, "domain": task.domain, "metric": task.metric,
                "tools": list(TOOLS), "workdir": str(workdir), "versions": self._settings.versions()}

    def _require_state(self) -> EpisodeState:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() first: the env has no episode yet")
        return self._state

    def _episode_dir(self) -> Path:
        if self._instance_dir is None:
            self._instance_dir = make_env_folder(self._root)
            if self._root is None:  # a temporary folder goes with the env, closed or not
                weakref.finalize(self, shutil.rmtree, self._instance_dir, True)
        workdir = self._instance_dir / f"episode-{self._episode:03d}"
        workdir.mkdir(parents=True)
        return workdir

    def _observation(self) -> dict[str, Any]:
        assert self._state is not None
        return self._state.observation()


def check_env_options(*, log_window: int, eval_batch_size: int, eval_limit: int | None, worker_memory_gb: float | None,
                      render_mode: str | None, mode: str = "live", outcome_table: str | Path | None = None,
                      eval_precision: str = "auto") -> None:
    """Reject constructor options that would make a broken env, with a message that says which."""
    if log_window < 1:
        raise ValueError(f"log_window must be at least 1 character, got {log_window}")
    if eval_batch_size < 1:
        raise ValueError(f"eval_batch_size must be at least 1, got {eval_batch_size}")
    if eval_limit is not None and eval_limit < 1:
        raise ValueError(f"eval_limit must be at least 1 item per split (or None for the task's), got {eval_limit}")
    if worker_memory_gb is not None and worker_memory_gb <= 0:
        raise ValueError(f"worker_memory_gb must be positive, got {worker_memory_gb}")
    if mode not in ("live", "tabular"):
        raise ValueError(f"mode must be 'live' (real training) or 'tabular' (a shipped outcome table), got {mode!r}")
    if outcome_table is not None and mode != "tabular":
        raise ValueError("outcome_table is used in mode='tabular' only")
    if eval_precision not in PRECISIONS:
        raise ValueError(f"eval_precision must be one of {PRECISIONS}, got {eval_precision!r}")
    if render_mode is not None and render_mode not in FTDojoEnv.metadata["render_modes"]:
        raise ValueError(f"render_mode must be one of {FTDojoEnv.metadata['render_modes']} or None, got {render_mode!r}")

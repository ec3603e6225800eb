"""FTDojoEnv: autonomous LLM fine-tuning as a Gymnasium environment.

The data flows one way: tool call -> schema validation (:mod:`ftdojo_gym.actions`)
-> workspace operation (data, train or eval) -> result record -> log window and
metrics -> observation.
"""

from __future__ import annotations

import json
import shutil
import string
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ftdojo_gym import versions
from ftdojo_gym.actions import TOOLS, Action, ActionError, ToolCallSpace, parse_action, usage
from ftdojo_gym.data.workspace import DataError, DataWorkspace, atomic_write_text
from ftdojo_gym.models import (
    DEFAULT_MODEL,
    cache_dir,
    load_token_counter,
    model_fingerprint,
    resolve_model,
)
from ftdojo_gym.tasks import make_task
from ftdojo_gym.tasks.base import EvalItem, Task
from ftdojo_gym.train.client import GenerateResult, TrainingWorker, TrainRequest, TrainResult
from ftdojo_gym.train.config import TrainConfig

#: Characters the ``log`` observation may hold; anything else is escaped as ``\\uXXXX``.
LOG_CHARSET = frozenset(string.printable)

#: Fields of the ``metrics`` observation vector, in order. Unknown values are -1.
METRIC_FIELDS: tuple[str, ...] = (
    "best_val_score",  # best validation score of any evaluated run, in [0, 1]
    "last_val_score",  # score of the latest evaluation
    "base_val_score",  # the base model's validation score, once evaluated
    "last_train_loss",  # final training loss of the latest run
    "budget_tokens_left_frac",  # share of the token budget left, in [0, 1]
    "steps_taken",  # env steps so far
    "train_runs_ok",  # runs that finished (including debug runs)
    "train_runs_failed",  # runs that failed with an error class
    "evaluations",  # evaluate calls that produced a score
    "datasets",  # datasets in the workspace
    "last_action_ok",  # 1 if the latest action succeeded, else 0
)

#: Fields of the ``budget`` observation vector.
BUDGET_FIELDS: tuple[str, ...] = ("tokens_left", "seconds_left", "steps_left")

ERROR_CLASSES = ("CONFIG", "OOM", "DATA", "ENV")


def escape_log(text: str) -> str:
    """Escape characters outside :data:`LOG_CHARSET` so the log fits its Text space."""
    if all(c in LOG_CHARSET for c in text):
        return text
    return "".join(c if c in LOG_CHARSET else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass
class ToolResult:
    """What one tool call produced: text for the log, structured data for ``info``."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    error_class: str | None = None


@dataclass
class RunRecord:
    run_id: str
    dataset: str
    config: dict[str, Any]
    debug: bool
    status: str
    error_class: str | None
    train_tokens: int
    seconds: float
    final_loss: float | None
    model_dir: str | None
    samples: int
    val_score: float | None = None


class FTDojoEnv(gym.Env):
    """An FT-Dojo task: fine-tune a base LLM end to end within a compute budget.

    **Actions** are tool calls ``{"tool": name, "args": {...}}`` (also as a JSON
    string or an OpenAI tool call); see :func:`ftdojo_gym.tool_schemas` for the
    tools and their arguments. Invalid actions return an error observation with
    the tool's usage and cost one step.

    **Observations** are a dict: ``log`` (the newest ``log_window`` characters of
    the episode log), ``metrics`` (float32, fields :data:`METRIC_FIELDS`, -1 when
    unknown) and ``budget`` (float32, fields :data:`BUDGET_FIELDS`).

    **Reward** is 0 except on submission, where it is the hidden-test score of
    the submitted run in ``[0, 1]``; ``info["submission"]`` also holds the base
    model's hidden-test score. ``submit`` terminates; running out of tokens,
    seconds or steps truncates and submits the best validated run.

    **info** holds ``tool``, ``ok``, ``result`` (the structured result of the
    call), ``error_class`` (CONFIG, OOM, DATA, ENV or None) and ``accounting``
    (tokens trained this step and in total, seconds, budget used).

    The hidden test split is generated, generated-for and graded inside this
    process; it is never written to the workspace, the log or ``info``.
    """

    metadata = {"render_modes": ["ansi"]}

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
        eval_batch_size: int = 16,
        eval_limit: int | None = None,
        worker_memory_gb: float | None = None,
        progress: bool = False,
        render_mode: str | None = None,
    ):
        self.task: Task = make_task(task, data=data) if isinstance(task, str) else task
        self.base_model_name = base_model
        self.base_model = str(resolve_model(base_model))
        self.data_seed = data_seed
        self.token_budget = int(token_budget or self.task.default_token_budget)
        self.time_limit_s = time_limit_s
        self.max_episode_steps = max_episode_steps
        self.log_window = log_window
        self.eval_batch_size = eval_batch_size
        self.render_mode = render_mode
        self.progress = progress
        self._root = Path(workdir) if workdir is not None else None
        self._tmp_root: str | None = None
        self._token_counter = load_token_counter(self.base_model)
        self._sources = None
        items = self.task.eval_items(data_seed)
        k = min(100, len(items) // 2)
        if eval_limit is not None:  # smaller splits for quick runs; same items, a prefix/suffix
            k = min(k, eval_limit)
        self._val_items: list[EvalItem] = items[:k]
        self.__test_items: list[EvalItem] = items[len(items) - k:]
        self._worker = TrainingWorker(memory_limit_gb=worker_memory_gb)
        self._episode = 0
        self.action_space = ToolCallSpace()
        self.observation_space = spaces.Dict(
            {
                "log": spaces.Text(max_length=log_window, min_length=0, charset="".join(sorted(LOG_CHARSET))),
                "metrics": spaces.Box(-1.0, np.inf, shape=(len(METRIC_FIELDS),), dtype=np.float32),
                "budget": spaces.Box(0.0, np.inf, shape=(len(BUDGET_FIELDS),), dtype=np.float32),
            }
        )
        self._state_ready = False

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._episode += 1
        if self._root is None:
            self._tmp_root = self._tmp_root or tempfile.mkdtemp(prefix="ftdojo-")
            root = Path(self._tmp_root)
        else:
            root = self._root
        self.workdir = root / f"episode-{self._episode:03d}"
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        if self._sources is None:
            self._sources = self.task.sources(self.data_seed)
        self.data = DataWorkspace(self._sources, self._token_counter, self.workdir)
        seed_value = int(self.np_random.integers(2**31 - 1))
        self.config = TrainConfig(seed=seed_value % 10_000)
        self.runs: dict[str, RunRecord] = {}
        self.evaluations: dict[str, dict[str, Any]] = {}
        self._log_lines: list[str] = []
        self._log_chars = 0
        self.tokens_used = 0
        self.steps = 0
        self._started = time.monotonic()
        self._done = False
        self._last_ok = True
        self._last_loss: float | None = None
        self._last_val: float | None = None
        self._state_ready = True
        self._log(
            f"# FT-Dojo task {self.task.name} (v{self.task.version}, domain {self.task.domain}, metric {self.task.metric})\n"
            f"Base model: {self.base_model_name}. Budget: {self.token_budget} training tokens"
            + (f", {self.time_limit_s:g} s" if self.time_limit_s else "")
            + f", {self.max_episode_steps} steps. Each run uses at most 2,000 samples.\n"
            f"Validation split: {len(self._val_items)} items (visible through evaluate); "
            f"hidden test split: {len(self.__test_items)} items (scored on submit).\n"
            + usage()
        )
        info = {"task": self.task.name, "tools": list(TOOLS), "workdir": str(self.workdir), "versions": self._versions()}
        return self._observation(), info

    def step(self, action: Any):
        if not self._state_ready:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._done:
            raise gym.error.ResetNeeded("the episode is over; call reset()")
        t0 = time.monotonic()
        tokens_before = self.tokens_used
        self.steps += 1
        tool: str | None = None
        try:
            parsed = parse_action(action)
            tool = parsed.tool
            self._log(f"\n> {tool}({json.dumps(parsed.args.model_dump(exclude_defaults=True), ensure_ascii=False)[:500]})")
            result = self._dispatch(parsed)
        except ActionError as exc:
            tool = exc.tool
            self._log("\n> invalid action")
            result = ToolResult(f"ERROR: {exc}\n{usage(exc.tool)}", {"error": str(exc), "usage": usage(exc.tool)}, ok=False)
        except DataError as exc:
            result = ToolResult(f"ERROR (DATA): {exc}\n{usage(tool)}", {"error": str(exc)}, ok=False, error_class="DATA")
        except Exception as exc:  # a bug or an unexpected library error must not end the episode
            result = ToolResult(f"ERROR (ENV): {type(exc).__name__}: {str(exc)[:1000]}", {"error": repr(exc)[:1000]}, ok=False, error_class="ENV")
        self._last_ok = result.ok
        self._log(result.text)
        reward = 0.0
        terminated = tool == "submit" and result.ok
        truncated = False
        if terminated:
            reward = float(result.data["hidden_test_score"])
        else:
            reason = self._exhausted()
            if reason:
                truncated = True
                self._log(f"\nBudget exhausted ({reason}): submitting the best validated run.")
                sub = self._submit(None)
                self._log(sub.text)
                reward = float(sub.data.get("hidden_test_score", 0.0))
                result.data = {**result.data, "auto_submission": sub.data}
        self._done = terminated or truncated
        info = {
            "tool": tool,
            "ok": result.ok,
            "error_class": result.error_class,
            "result": result.data,
            "accounting": {
                "tokens_trained": self.tokens_used - tokens_before,
                "tokens_used": self.tokens_used,
                "tokens_budget": self.token_budget,
                "seconds": round(time.monotonic() - t0, 3),
                "seconds_elapsed": round(time.monotonic() - self._started, 3),
                "steps": self.steps,
            },
        }
        if self._done:
            info["submission"] = result.data if terminated else result.data["auto_submission"]
        return self._observation(), reward, terminated, truncated, info

    def render(self):
        if self.render_mode == "ansi":
            return self._window()
        return None

    def close(self):
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
        if self._tmp_root:
            shutil.rmtree(self._tmp_root, ignore_errors=True)
            self._tmp_root = None
        super().close()

    # -------------------------------------------------------------- helpers
    def _versions(self) -> dict[str, str]:
        return versions.collect(task=f"{self.task.name}@{self.task.version}", base_model=self.base_model_name)

    def _log(self, text: str) -> None:
        text = escape_log(text)
        self._log_lines.append(text)
        with open(self.workdir / "episode.log", "a", encoding="utf-8") as fh:
            fh.write(text + "\n")

    def _window(self) -> str:
        out: list[str] = []
        size = 0
        for line in reversed(self._log_lines):
            out.append(line)
            size += len(line) + 1
            if size >= self.log_window:
                break
        return "\n".join(reversed(out))[-self.log_window:]

    def _budget(self) -> np.ndarray:
        seconds_left = np.inf
        if self.time_limit_s is not None:
            seconds_left = max(0.0, self.time_limit_s - (time.monotonic() - self._started)) if self.steps else self.time_limit_s
        return np.array(
            [max(0, self.token_budget - self.tokens_used), seconds_left, max(0, self.max_episode_steps - self.steps)],
            dtype=np.float32,
        )

    def _observation(self) -> dict[str, Any]:
        vals = [r.val_score for r in self.runs.values() if r.val_score is not None]
        base = self.evaluations.get("base")
        metrics = [
            max(vals) if vals else -1.0,
            -1.0 if self._last_val is None else self._last_val,
            base["score"] if base else -1.0,
            -1.0 if self._last_loss is None else self._last_loss,
            max(0.0, 1.0 - self.tokens_used / self.token_budget),
            self.steps,
            sum(r.status != "error" for r in self.runs.values()),
            sum(r.status == "error" for r in self.runs.values()),
            len(self.evaluations),
            len(self.data.datasets),
            1.0 if self._last_ok else 0.0,
        ]
        return {"log": self._window(), "metrics": np.array(metrics, dtype=np.float32), "budget": self._budget()}

    def _exhausted(self) -> str | None:
        if self.tokens_used >= self.token_budget:
            return "training tokens"
        if self.time_limit_s is not None and time.monotonic() - self._started >= self.time_limit_s:
            return "wall-clock time"
        if self.steps >= self.max_episode_steps:
            return "steps"
        return None

    def _seconds_left(self) -> float | None:
        if self.time_limit_s is None:
            return None
        return max(1.0, self.time_limit_s - (time.monotonic() - self._started))

    # ----------------------------------------------------------- dispatch
    def _dispatch(self, action: Action) -> ToolResult:
        handler = getattr(self, f"_tool_{action.tool}")
        return handler(action.args)

    def _tool_list_sources(self, args) -> ToolResult:
        descriptions = self.task.source_descriptions()
        entries = [dict(self.data.describe(name, ds), description=descriptions.get(name, "")) for name, ds in self.data.sources.items()]
        lines = ["Sources (read-only; fetch one to work on it):"]
        for e in entries:
            sample = json.dumps(e["first_sample"], ensure_ascii=False)[:600]
            lines.append(
                f"- {e['name']}: {e['rows']} rows, fields {e['fields']}, tokens p50 {e['tokens_p50']} / p99 {e['tokens_p99']}. "
                f"{e['description']}\n  first sample: {sample}"
            )
        return ToolResult("\n".join(lines), {"sources": entries})

    def _tool_inspect(self, args) -> ToolResult:
        if args.name is None:
            ds_lines = [f"- {n}: {len(d)} rows, fields {list(d.features)}" for n, d in self.data.datasets.items()]
            run_lines = [
                f"- {r.run_id}: {'debug ' if r.debug else ''}{r.status}{' ' + r.error_class if r.error_class else ''}, "
                f"dataset {r.dataset}, {r.train_tokens} tokens, loss {r.final_loss}, val {r.val_score}"
                for r in self.runs.values()
            ]
            text = "Datasets:\n" + ("\n".join(ds_lines) or "  none") + "\nRuns:\n" + ("\n".join(run_lines) or "  none")
            text += "\nConfig: " + json.dumps(self.config.model_dump())
            return ToolResult(text, {"datasets": {n: len(d) for n, d in self.data.datasets.items()},
                                     "runs": [asdict(r) for r in self.runs.values()], "config": self.config.model_dump()})
        ds = self.data.get(args.name)
        end = min(len(ds), args.offset + args.n)
        rows = [ds[i] for i in range(min(args.offset, len(ds)), end)]
        text = f"{args.name}: {len(ds)} rows, fields {list(ds.features)}\n" + "\n".join(
            f"[{args.offset + i}] " + json.dumps(r, ensure_ascii=False)[:1500] for i, r in enumerate(rows)
        )
        return ToolResult(text, {"name": args.name, "rows": rows, "total": len(ds)})

    def _tool_fetch(self, args) -> ToolResult:
        ds = self.data.fetch(args.source, args.output, args.limit, args.offset, args.shuffle, args.seed)
        name = args.output or args.source
        return ToolResult(f"Fetched {len(ds)} rows of {args.source} into dataset {name!r}.", {"dataset": name, "rows": len(ds)})

    def _tool_filter(self, args) -> ToolResult:
        before = len(self.data.dataset(args.dataset))
        ds, dropped = self.data.filter(
            args.dataset, args.output, min_tokens=args.min_tokens, max_tokens=args.max_tokens, regex=args.regex,
            regex_field=args.regex_field, field=args.field, op=args.op, value=args.value, rules=args.rules,
            dedupe=args.dedupe, dedupe_fields=args.dedupe_fields,
        )
        name = args.output or args.dataset
        return ToolResult(f"Filtered {args.dataset}: kept {len(ds)} of {before} rows (dropped {dropped}) -> {name!r}.",
                          {"dataset": name, "rows": len(ds), "dropped": dropped})

    def _tool_transform(self, args) -> ToolResult:
        ds = self.data.transform(args.dataset, args.prompt_template, args.completion_template, args.output)
        name = args.output or f"{args.dataset}_sft"
        first = ds[0]
        return ToolResult(
            f"Transformed {args.dataset} into {len(ds)} prompt/completion rows -> {name!r}.\n"
            f"  first prompt: {first['prompt'][:400]!r}\n  first completion: {first['completion'][:200]!r}",
            {"dataset": name, "rows": len(ds)},
        )

    def _tool_mix(self, args) -> ToolResult:
        ds = self.data.mix([(c.name, c.weight) for c in args.datasets], args.n, args.output, args.seed)
        return ToolResult(f"Mixed {len(args.datasets)} datasets into {len(ds)} rows -> {args.output!r}.", {"dataset": args.output, "rows": len(ds)})

    def _tool_set_config(self, args) -> ToolResult:
        update = {k: v for k, v in args.model_dump().items() if v is not None}
        try:
            self.config = TrainConfig.model_validate({**self.config.model_dump(), **update})
        except Exception as exc:
            return ToolResult(f"ERROR (CONFIG): {exc}\n{usage('set_config')}", {"error": str(exc)}, ok=False, error_class="CONFIG")
        return ToolResult("Config: " + json.dumps(self.config.model_dump()), {"config": self.config.model_dump()})

    def _tool_train(self, args) -> ToolResult:
        rows = self.data.training_rows(args.dataset, args.max_samples)
        run_id = f"{'debug' if args.debug else 'run'}{len(self.runs) + 1}"
        run_dir = self.workdir / "runs" / run_id
        data_path = run_dir / "train.jsonl"
        atomic_write_text(data_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        atomic_write_text(run_dir / "config.json", json.dumps(self.config.model_dump(), indent=2))
        self._log(f"Training {run_id} on {len(rows)} samples of {args.dataset!r}{' (debug)' if args.debug else ''}...")
        request = TrainRequest(
            base_model=self.base_model, data_path=str(data_path), output_dir=str(run_dir / "model"),
            config=self.config.model_dump(), debug=args.debug,
            max_tokens=max(1, self.token_budget - self.tokens_used), max_samples=len(rows),
        )

        bar = _ProgressBar(f"train {run_id}", "step", enabled=self.progress)

        def on_event(event: dict) -> None:
            if event.get("event") == "log" and event.get("loss") is not None:
                self._log(f"  step {event.get('step')}: loss {event['loss']:.4f}, lr {event.get('learning_rate', 0):.2e}")
                bar.update(event.get("step"), event.get("max_steps"), loss=f"{event['loss']:.3f}")

        try:
            res: TrainResult = self._worker.train(request, on_event=on_event, timeout=self._seconds_left())
        finally:
            bar.close()
        self.tokens_used += int(res.train_tokens)
        record = RunRecord(run_id, args.dataset, self.config.model_dump(), args.debug, res.status, res.error_class,
                           int(res.train_tokens), round(res.seconds, 2), res.final_loss,
                           res.model_dir if res.status != "error" else None, len(rows))
        self.runs[run_id] = record
        data = {**asdict(record), "loss_head": res.loss_head, "loss_tail": res.loss_tail, "warnings": res.warnings[:10],
                "versions": self._versions()}
        if res.status == "error":
            data.update(error=res.error, traceback=res.traceback[:4000])
        atomic_write_text(run_dir / "result.json", json.dumps(data, indent=2, default=str))
        if res.final_loss is not None:
            self._last_loss = float(res.final_loss)
        if res.status == "error":
            text = (f"Run {run_id} FAILED ({res.error_class}): {res.error}\n"
                    f"Loss head {res.loss_head}, tail {res.loss_tail}\nTraceback (first):\n{res.traceback[:4000]}")
            return ToolResult(text, data, ok=False, error_class=res.error_class)
        stopped = " (stopped: token budget reached)" if res.status == "stopped_budget" else ""
        warn = ("\nWarnings: " + " | ".join(w[:200] for w in res.warnings[:5])) if res.warnings else ""
        text = (f"Run {run_id} finished{stopped}: {res.steps} steps, {res.train_tokens} tokens, final loss {res.final_loss}, "
                f"loss head {_fmt_losses(res.loss_head)} tail {_fmt_losses(res.loss_tail)}. "
                f"Budget left: {max(0, self.token_budget - self.tokens_used)} tokens.{warn}")
        return ToolResult(text, data)

    def _model_for(self, run: str | None) -> tuple[str, str, str | None]:
        """(run id, model path, adapter path) of a run, 'base', or the latest successful run."""
        if run is None:
            done = [r for r in self.runs.values() if r.status != "error"]
            if not done:
                raise DataError("no successful run yet; train one, or evaluate run='base'")
            run = done[-1].run_id
        if run == "base":
            return "base", self.base_model, None
        rec = self.runs.get(run)
        if rec is None:
            raise DataError(f"no run named {run[:80]!r}; runs: {sorted(self.runs) or 'none'} (or 'base')")
        if rec.model_dir is None:
            raise DataError(f"run {run} failed ({rec.error_class}); it has no model to evaluate")
        if (Path(rec.model_dir) / "adapter_config.json").exists():
            return run, self.base_model, rec.model_dir
        return run, rec.model_dir, None

    def _generate(self, items: list[EvalItem], model: str, adapter: str | None, label: str) -> GenerateResult:
        bar = _ProgressBar(label, "prompt", enabled=self.progress)
        try:
            return self._worker.generate(
                model, adapter, [it.prompt for it in items], [self.task.max_new_tokens_for(it) for it in items],
                batch_size=self.eval_batch_size, timeout=self._seconds_left(),
                on_progress=lambda done, total: bar.update(done, total),
            )
        finally:
            bar.close()

    def _score(self, items: list[EvalItem], outputs: list[str]) -> tuple[float, dict[str, float], list[float]]:
        scores = self.task.grade(items, outputs)
        by_subset: dict[str, list[int]] = {}
        for i, it in enumerate(items[: len(scores)]):
            by_subset.setdefault(it.subset, []).append(i)

        def aggregate(idx: list[int]) -> float:  # the task's split metric (mean, or e.g. macro-F1)
            return float(self.task.aggregate([items[i] for i in idx], [scores[i] for i in idx], [outputs[i] for i in idx]))

        total = aggregate(list(range(len(scores)))) if scores else 0.0
        return total, {k: aggregate(v) for k, v in by_subset.items()}, scores

    def _tool_evaluate(self, args) -> ToolResult:
        run_id, model, adapter = self._model_for(args.run)
        items = self._val_items[: args.limit] if args.limit else self._val_items
        key = f"{run_id}@{len(items)}"
        cached = self._cached_base("validation") if run_id == "base" and len(items) == len(self._val_items) else None
        if key in self.evaluations:
            ev = self.evaluations[key]
        else:
            gen = None if cached else self._generate(items, model, adapter, f"evaluate {run_id}")
            if gen is not None and gen.status != "ok":
                return ToolResult(f"Evaluation of {run_id} FAILED ({gen.error_class}): {gen.error}\n{gen.traceback[:4000]}",
                                  {"run": run_id, "error": gen.error}, ok=False, error_class=gen.error_class)
            outputs = cached["outputs"] if cached else gen.outputs
            score, subsets, per_item = self._score(items, outputs)
            wrong = sorted((s, i) for i, s in enumerate(per_item) if s < 1.0)[:10]
            ev = {
                "run": run_id, "score": score, "subsets": subsets, "n": len(items),
                "wrong_answers": [
                    {"id": items[i].id, "subset": items[i].subset, "prompt": items[i].prompt[-400:],
                     "reference": items[i].reference[:400], "output": outputs[i][:400], "score": round(s, 3)}
                    for s, i in wrong
                ],
                "seconds": cached["seconds"] if cached else round(gen.seconds, 2),
            }
            if run_id == "base" and not cached and len(items) == len(self._val_items):
                self._store_base("validation", {"score": score, "subsets": subsets, "outputs": outputs, "seconds": ev["seconds"]})
            self.evaluations[key] = ev
        if run_id == "base" and len(items) == len(self._val_items):
            self.evaluations["base"] = ev
        if run_id in self.runs and len(items) == len(self._val_items):
            self.runs[run_id].val_score = ev["score"]
        self._last_val = ev["score"]
        lines = [f"Validation score of {run_id}: {100 * ev['score']:.1f} on {ev['n']} items ("
                 + ", ".join(f"{k} {100 * v:.1f}" for k, v in ev["subsets"].items()) + ")"]
        for w in ev["wrong_answers"]:
            lines.append(f"  wrong [{w['subset']}] {w['id']}: expected {w['reference'][:120]!r}, got {w['output'][:200]!r}")
        return ToolResult("\n".join(lines), ev)

    # -- base-model scores depend only on (model, task version, data seed): cache them
    def _base_cache_path(self, split: str) -> Path:
        key = f"{model_fingerprint(self.base_model)}-{self.task.name}-v{self.task.version}-s{self.data_seed}-n{len(self._val_items)}"
        return cache_dir() / "base_scores" / f"{key}-{split}.json"

    def _cached_base(self, split: str) -> dict[str, Any] | None:
        path = self._base_cache_path(split)
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def _store_base(self, split: str, value: dict[str, Any]) -> None:
        if split == "hidden_test":
            value = {k: v for k, v in value.items() if k != "outputs"}
        atomic_write_text(self._base_cache_path(split), json.dumps(value))

    def _hidden_test_score(self, run_id: str, model: str, adapter: str | None) -> dict[str, Any]:
        if run_id == "base":
            cached = self._cached_base("hidden_test")
            if cached:
                return cached
        gen = self._generate(self.__test_items, model, adapter, f"hidden test {run_id}")
        if gen.status != "ok":
            raise RuntimeError(f"hidden-test generation failed ({gen.error_class}): {gen.error}")
        score, subsets, _ = self._score(self.__test_items, gen.outputs)
        result = {"score": score, "subsets": subsets, "seconds": round(gen.seconds, 2)}
        if run_id == "base":
            self._store_base("hidden_test", result)
        return result

    def _tool_submit(self, args) -> ToolResult:
        return self._submit(args.run)

    def _submit(self, run: str | None) -> ToolResult:
        if run is None:
            validated = [r for r in self.runs.values() if r.val_score is not None and r.model_dir]
            run = max(validated, key=lambda r: r.val_score).run_id if validated else "base"
        try:
            run_id, model, adapter = self._model_for(run)
        except DataError as exc:
            return ToolResult(f"ERROR (DATA): {exc}", {"error": str(exc)}, ok=False, error_class="DATA")
        try:
            test = self._hidden_test_score(run_id, model, adapter)
            base = self._hidden_test_score("base", self.base_model, None)
        except RuntimeError as exc:
            return ToolResult(f"ERROR (ENV): {exc}", {"error": str(exc)}, ok=False, error_class="ENV")
        val = self.runs[run_id].val_score if run_id in self.runs else (self.evaluations.get("base") or {}).get("score")
        data = {
            "run": run_id, "hidden_test_score": test["score"], "hidden_test_subsets": test["subsets"],
            "base_hidden_test_score": base["score"], "validation_score": val, "tokens_used": self.tokens_used,
            "versions": self._versions(),
        }
        atomic_write_text(self.workdir / "submission.json", json.dumps(data, indent=2))
        text = (f"Submitted {run_id}: hidden-test score {100 * test['score']:.1f} "
                f"(base model {100 * base['score']:.1f}). Episode over.")
        return ToolResult(text, data)


class _ProgressBar:
    """A tqdm bar on stderr, created on the first update (totals come from the worker)."""

    def __init__(self, desc: str, unit: str, enabled: bool):
        self.desc, self.unit, self.enabled = desc, unit, enabled
        self._bar = None

    def update(self, done: int | None, total: int | None, **postfix: Any) -> None:
        if not self.enabled or done is None:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False)
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.n = int(done)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _fmt_losses(points: list) -> str:
    out = []
    for p in points:
        loss = p[1] if isinstance(p, (list, tuple)) else p.get("loss") if isinstance(p, dict) else p
        out.append(f"{loss:.3f}" if isinstance(loss, (int, float)) else str(loss))
    return "[" + ", ".join(out) + "]"

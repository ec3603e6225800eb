"""Evaluation tools: ``evaluate`` (the visible validation split) and ``submit`` (the hidden test split).

The hidden test items live in :class:`~ftdojo_gym.episode.EpisodeSettings` and
are read only by :func:`submit_run`: generated for and graded in the env
process, and reduced to scores before anything leaves this module. Generating
and grading them is the env's own cost: it is not limited by the agent's
wall-clock budget, so a budget that runs out never costs a finished episode
its score.

The base model's scores depend only on (model, task version, data seed, split
size), so they are cached on disk (:class:`BaseScoreCache`); the cache holds
validation outputs (visible to the agent anyway) and hidden-test scores only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftdojo_gym.actions import EvaluateArgs, SubmitArgs
from ftdojo_gym.data.workspace import atomic_write_text
from ftdojo_gym.episode import EpisodeState
from ftdojo_gym.errors import DataError, ErrorClass
from ftdojo_gym.models import cache_dir, model_fingerprint
from ftdojo_gym.outcome_cache import OutcomeCache, split_key
from ftdojo_gym.progress import ProgressBar
from ftdojo_gym.results import ErrorResult, EvaluationResult, SubmissionResult, WrongAnswer
from ftdojo_gym.tasks.base import EvalItem
from ftdojo_gym.tasks.fingerprint import grader_fingerprint

BASE = "base"


class SubmissionError(RuntimeError):
    """The hidden test split could not be generated for (the model process failed)."""


def model_for(state: EpisodeState, run: str | None) -> tuple[str, str, str | None]:
    """``(run id, model path, adapter path)`` of a run, ``"base"``, or the latest successful run."""
    if run is None:
        done = state.successful_runs()
        if not done:
            raise DataError("no successful run yet; train one, or evaluate run='base'")
        run = done[-1].run_id
    if run == BASE:
        return BASE, state.settings.base_model, None
    rec = state.runs.get(run)
    if rec is None:
        raise DataError(f"no run named {run[:80]!r}; runs: {sorted(state.runs) or 'none'} (or 'base')")
    if rec.model_dir is None:
        raise DataError(f"run {run} failed ({rec.error_class}); it has no model to evaluate")
    if (Path(rec.model_dir) / "adapter_config.json").exists():
        return run, state.settings.base_model, rec.model_dir
    return run, rec.model_dir, None


def score_outputs(state: EpisodeState, items: list[EvalItem], outputs: list[str]
                  ) -> tuple[float, dict[str, float], list[float]]:
    """The task's split metric over ``items``, per subset, and the per-item scores."""
    task = state.task
    scores = task.grade(items, outputs)
    by_subset: dict[str, list[int]] = {}
    for i, it in enumerate(items[: len(scores)]):
        by_subset.setdefault(it.subset, []).append(i)

    def aggregate(idx: list[int]) -> float:  # the task's split metric (mean, or e.g. macro-F1)
        return float(task.aggregate([items[i] for i in idx], [scores[i] for i in idx], [outputs[i] for i in idx]))

    total = aggregate(list(range(len(scores)))) if scores else 0.0
    subsets = {k: aggregate(v) for k, v in by_subset.items()}
    # Secondary metrics ("DataAnalysis/Mix") ride along with the subsets, never in the score.
    subsets.update(task.extra_scores(items[: len(scores)], list(scores), outputs[: len(scores)]))
    return total, subsets, list(scores)


def _generate(state: EpisodeState, items: list[EvalItem], model: str, adapter: str | None, label: str,
              timeout: float | None):
    bar = ProgressBar(label, "prompt", enabled=state.settings.progress)
    task = state.task
    try:
        return state.worker.generate(
            model, adapter, [it.prompt for it in items], [task.max_new_tokens_for(it) for it in items],
            batch_size=state.settings.eval_batch_size, timeout=timeout,
            on_progress=lambda done, total: bar.update(done, total), precision=state.settings.eval_precision,
        )
    finally:
        bar.close()


class BaseScoreCache:
    """Base-model results on disk, keyed by model fingerprint, task version, data seed, split size
    and generation precision."""

    def __init__(self, state: EpisodeState) -> None:
        s = state.settings
        key = (f"{model_fingerprint(s.base_model)}-{s.task.name}-v{s.task.version}-s{s.data_seed}"
               f"-n{len(s.validation_items)}-{s.eval_precision}")
        self.folder = cache_dir() / "base_scores"
        self.key = key

    def _path(self, split: str) -> Path:
        return self.folder / f"{self.key}-{split}.json"

    def get(self, split: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(split).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, split: str, value: dict[str, Any]) -> None:
        if split == "hidden_test":  # scores only: hidden-test outputs never touch the disk
            value = {k: v for k, v in value.items() if k != "outputs"}
        atomic_write_text(self._path(split), json.dumps(value))


def evaluate(state: EpisodeState, args: EvaluateArgs) -> EvaluationResult | ErrorResult:
    run_id, model, adapter = model_for(state, args.run)
    split = state.settings.validation_items
    items = split[: args.limit] if args.limit else split
    whole = len(items) == len(split)
    if state.settings.outcome_table is not None:
        return _evaluate_from_table(state, run_id, whole)
    key = f"{run_id}@{len(items)}"
    if key in state.evaluations:
        ev = state.evaluations[key]
    else:
        cache = BaseScoreCache(state) if run_id == BASE and whole else None
        cached = cache.get("validation") if cache else None
        # (its own names: ``key`` is where the episode keeps this evaluation)
        outcomes, run_key, split_id = _outcome_slot(state, run_id, "validation", items)
        if cached is None and outcomes is not None:
            cached = outcomes.get_evaluation(run_key, split_id)
        if cached:
            outputs, seconds = cached["outputs"], cached["seconds"]
        else:
            gen = _generate(state, items, model, adapter, f"evaluate {run_id}", state.budget.timeout_for_agent_work())
            if gen.status != "ok":
                return ErrorResult(error=f"evaluation of {run_id} failed: {gen.error}\n{gen.traceback[:4000]}",
                                   error_class=gen.error_class or ErrorClass.ENV, run=run_id)
            outputs, seconds = gen.outputs, round(gen.seconds, 2)
            if outcomes is not None:
                outcomes.put_evaluation(run_key, split_id, {"outputs": outputs, "seconds": seconds})
        score, subsets, per_item = score_outputs(state, items, outputs)
        wrong = sorted((s, i) for i, s in enumerate(per_item) if s < 1.0)[:10]
        ev = EvaluationResult(
            run=run_id, score=score, subsets=subsets, n=len(items), seconds=seconds,
            cached=bool(cached) and run_id != BASE,
            wrong_answers=[
                WrongAnswer(id=items[i].id, subset=items[i].subset, prompt=items[i].prompt[-400:],
                            reference=items[i].reference[:400], output=outputs[i][:400], score=round(s, 3))
                for s, i in wrong
            ],
        )
        if cache is not None and not cached:
            cache.put("validation", {"score": score, "subsets": subsets, "outputs": outputs, "seconds": seconds})
        state.evaluations[key] = ev
    if whole:
        if run_id == BASE:
            state.evaluations[BASE] = ev
        elif run_id in state.runs:
            state.runs[run_id].val_score = ev.score
    state.last_val = ev.score
    return ev


def _hidden_test_score(state: EpisodeState, run_id: str, model: str, adapter: str | None) -> dict[str, Any]:
    cache = BaseScoreCache(state) if run_id == BASE else None
    if cache is not None and (cached := cache.get("hidden_test")):
        return cached
    items = state.settings.hidden_test_items
    outcomes, key, split = _outcome_slot(state, run_id, "hidden_test", items)
    if outcomes is not None and (cached := outcomes.get_evaluation(key, split)):
        return cached
    gen = _generate(state, items, model, adapter, f"hidden test {run_id}", timeout=None)
    if gen.status != "ok":
        raise SubmissionError(f"hidden-test generation failed ({gen.error_class}): {gen.error}")
    score, subsets, _ = score_outputs(state, items, gen.outputs)
    result = {"score": score, "subsets": subsets, "seconds": round(gen.seconds, 2)}
    if cache is not None:
        cache.put("hidden_test", result)
    if outcomes is not None:  # scores only: hidden-test outputs are never stored
        outcomes.put_evaluation(key, split, result)
    return result


def _outcome_slot(state: EpisodeState, run_id: str, split_name: str, items: list[EvalItem]
                  ) -> tuple[OutcomeCache | None, str, str]:
    """Where the outcome cache keeps this run's results on these items: (cache or None, run key, split key)."""
    cache = state.settings.outcome_cache
    record = state.runs.get(run_id)
    if cache is None or record is None or record.cache_key is None:
        return None, "", ""
    task = state.task
    # The grading code is part of the key: a grader fix never serves a stale score; so is
    # the generation precision (bf16 and fp32 outputs differ now and then).
    split = split_key(f"{split_name}@{task.name}@{task.version}@{grader_fingerprint(task)}"
                      f"@{state.settings.eval_precision}", items, [task.max_new_tokens_for(it) for it in items])
    return cache, record.cache_key, split


def submit_run(state: EpisodeState, run: str | None, automatic: bool = False) -> SubmissionResult | ErrorResult:
    """Score ``run`` (default: the best validated run, else the base model) on the hidden test split."""
    if run is None:
        best = state.best_validated_run()
        run = best.run_id if best else BASE
    try:
        run_id, model, adapter = model_for(state, run)
    except DataError as exc:
        return ErrorResult(error=str(exc), error_class=ErrorClass.DATA, run=run)
    try:
        if state.settings.outcome_table is not None:
            test, base = _table_scores(state, run_id, "hidden_test"), _table_scores(state, BASE, "hidden_test")
        else:
            test = _hidden_test_score(state, run_id, model, adapter)
            base = _hidden_test_score(state, BASE, state.settings.base_model, None)
    except SubmissionError as exc:
        return ErrorResult(error=str(exc), error_class=ErrorClass.ENV, run=run_id)
    if run_id in state.runs:
        val = state.runs[run_id].val_score
    else:
        val = state.evaluations[BASE].score if BASE in state.evaluations else None
    result = SubmissionResult(
        run=run_id, hidden_test_score=test["score"], hidden_test_subsets=test["subsets"],
        base_hidden_test_score=base["score"], validation_score=val, tokens_used=state.budget.tokens_used,
        automatic=automatic, versions=state.settings.versions(),
    )
    atomic_write_text(state.workdir / "submission.json", result.model_dump_json(indent=2))
    return result


def submit(state: EpisodeState, args: SubmitArgs) -> SubmissionResult | ErrorResult:
    return submit_run(state, args.run)


def _table_scores(state: EpisodeState, run_id: str, split: str) -> dict[str, Any]:
    """A split's scores of a run (or the base model) from the outcome table (tabular mode)."""
    table = state.settings.outcome_table
    assert table is not None
    if run_id == BASE:
        return table.manifest["base"][split]
    entry = table.get(state.runs[run_id].cache_key or "")
    if entry is None:  # cannot happen: tabular runs are created from table entries
        raise SubmissionError(f"run {run_id} is not in the outcome table")
    return getattr(entry, split)


def _evaluate_from_table(state: EpisodeState, run_id: str, whole: bool) -> EvaluationResult | ErrorResult:
    if not whole:
        return ErrorResult(error="tabular mode scores the whole validation split only (no limit)",
                           error_class=ErrorClass.CONFIG, run=run_id)
    scores = _table_scores(state, run_id, "validation")
    ev = EvaluationResult(run=run_id, score=scores["score"], subsets=scores["subsets"],
                          n=len(state.settings.validation_items), cached=True)
    state.evaluations[f"{run_id}@{ev.n}"] = ev
    if run_id == BASE:
        state.evaluations[BASE] = ev
    else:
        state.runs[run_id].val_score = ev.score
    state.last_val = ev.score
    return ev

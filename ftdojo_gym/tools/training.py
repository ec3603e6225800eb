"""Training tools: ``set_config`` and ``train`` (a run in the model process)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pydantic import ValidationError

from ftdojo_gym.actions import SetConfigArgs, TrainArgs, usage
from ftdojo_gym.data.workspace import atomic_write_text
from ftdojo_gym.episode import EpisodeState
from ftdojo_gym.errors import ErrorClass
from ftdojo_gym.model_process.protocol import TrainRequest, TrainResult
from ftdojo_gym.outcome_cache import OutcomeCache, restore_adapter, run_key
from ftdojo_gym.outcome_table import TABLE_MODEL_PREFIX, OutcomeTable
from ftdojo_gym.progress import ProgressBar
from ftdojo_gym.recipe_grid import describe
from ftdojo_gym.results import ConfigResult, ErrorResult, RunResult
from ftdojo_gym.training_config import TrainConfig


def set_config(state: EpisodeState, args: SetConfigArgs) -> ConfigResult | ErrorResult:
    update = {k: v for k, v in args.model_dump().items() if v is not None}
    try:
        state.config = TrainConfig.model_validate({**state.config.model_dump(), **update})
    except ValidationError as exc:  # e.g. a combination the single fields allow but the config does not
        return ErrorResult(error=str(exc), error_class=ErrorClass.CONFIG, usage=usage("set_config"))
    return ConfigResult(config=state.config.model_dump())


def train(state: EpisodeState, args: TrainArgs) -> RunResult | ErrorResult:
    """Train one run on ``args.dataset`` with the current config; tokens trained are charged to the budget."""
    rows = state.data.training_rows(args.dataset, args.max_samples)
    run_id = f"{'debug' if args.debug else 'run'}{len(state.runs) + 1}"
    run_dir = state.workdir / "runs" / run_id
    data_path = run_dir / "train.jsonl"
    atomic_write_text(data_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    config = state.config.model_dump()
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2))
    state.log.write(f"Training {run_id} on {len(rows)} samples of {args.dataset!r}{' (debug)' if args.debug else ''}...")
    request = TrainRequest(
        base_model=state.settings.base_model, data_path=str(data_path), output_dir=str(run_dir / "model"),
        config=config, debug=args.debug, max_tokens=max(1, state.budget.tokens_left), max_samples=len(rows),
    )
    if state.settings.outcome_table is not None:
        return _train_from_table(state, state.settings.outcome_table, run_id, args, rows, config)
    cache, key = state.settings.outcome_cache, None
    if cache is not None and state.config.method == "lora":  # full weights are too big to keep
        s = state.settings
        key = run_key(rows=rows, config=config, debug=args.debug, base_model=s.base_model_fingerprint,
                      task=s.task.name, task_version=s.task.version, data_seed=s.data_seed)
    res = _replay(cache, key, request, run_dir) if key else None
    cached = res is not None
    if res is None:
        res = _train(state, run_id, request)
        if key and res.status != "error" and res.model_dir:
            cache.put_run(key, {**dataclasses.asdict(res), "model_dir": None, "max_tokens": request.max_tokens},
                          Path(res.model_dir))
    state.budget.charge_tokens(res.train_tokens)  # a replay costs what the original run cost
    failed = res.status == "error"
    result = RunResult(
        run_id=run_id, dataset=args.dataset, config=config, debug=args.debug, status=res.status,
        error_class=res.error_class, train_tokens=int(res.train_tokens), seconds=round(res.seconds, 2),
        final_loss=res.final_loss, model_dir=None if failed else res.model_dir, samples=len(rows),
        steps=res.steps, loss_head=res.loss_head, loss_tail=res.loss_tail, warnings=res.warnings[:10],
        error=res.error if failed else "", traceback=res.traceback[:4000] if failed else "",
        tokens_left=state.budget.tokens_left, cached=cached, cache_key=key if not failed else None,
        versions=state.settings.versions(),
    )
    state.runs[run_id] = result.record()
    atomic_write_text(run_dir / "result.json", result.model_dump_json(indent=2))
    if res.final_loss is not None:
        state.last_loss = float(res.final_loss)
    return result


def _train(state: EpisodeState, run_id: str, request: TrainRequest) -> TrainResult:
    """Train for real in the model process, logging each step."""
    bar = ProgressBar(f"train {run_id}", "step", enabled=state.settings.progress)

    def on_event(event: dict) -> None:
        if event.get("event") == "log" and event.get("loss") is not None:
            state.log.write(f"  step {event.get('step')}: loss {event['loss']:.4f}, lr {event.get('learning_rate', 0):.2e}")
            bar.update(event.get("step"), event.get("max_steps"), loss=f"{event['loss']:.3f}")

    try:
        return state.worker.train(request, on_event=on_event, timeout=state.budget.timeout_for_agent_work())
    finally:
        bar.close()


def _replay(cache: OutcomeCache, key: str, request: TrainRequest, run_dir: Path) -> TrainResult | None:
    """The cached outcome of this run, its adapter restored into the run folder, or None.

    A finished run replays when it fits in the tokens left; a run the budget cut
    short replays only under the same cap (it would have trained further)."""
    hit = cache.get_run(key)
    if hit is None or not hit.adapter:
        return None
    fields = dict(hit.result)
    cap = fields.pop("max_tokens", None)
    if fields.get("status") == "stopped_budget" and cap != request.max_tokens:
        return None
    if fields.get("status") == "ok" and request.max_tokens is not None and fields["train_tokens"] > request.max_tokens:
        return None
    try:
        result = TrainResult(**fields)
    except TypeError:  # written by another version of the result type
        return None
    model_dir = restore_adapter(hit.adapter, Path(request.output_dir))
    return dataclasses.replace(result, model_dir=str(model_dir), seconds=result.seconds)


def _train_from_table(state: EpisodeState, table: OutcomeTable, run_id: str, args: TrainArgs,
                      rows: list[dict[str, str]], config: dict) -> RunResult | ErrorResult:
    """Tabular mode: the run's real outcome from the shipped table, or an error naming the nearest entries."""
    s = state.settings
    key = run_key(rows=rows, config=config, debug=args.debug, base_model=s.base_model_fingerprint,
                  task=s.task.name, task_version=s.task.version, data_seed=s.data_seed, libraries=False)
    entry = table.get(key)
    if entry is None:
        near = "\n".join(f"  - {describe(e.recipe)}" for e in table.nearest(state.lineage.get(args.dataset, []), config))
        return ErrorResult(
            error=(f"tabular mode: this run is not in the outcome table ({len(table)} recipes of the grid "
                   f"{table.manifest['grid']}; debug runs are never in it). Nearest recipes:\n{near}"),
            error_class=ErrorClass.CONFIG, usage=usage("train"))
    t = entry.train
    if t["train_tokens"] > state.budget.tokens_left:
        return ErrorResult(error=f"tabular mode: this run trained {t['train_tokens']} tokens and only "
                                 f"{state.budget.tokens_left} are left; the table has no shorter run of it",
                           error_class=ErrorClass.CONFIG, usage=usage("train"))
    state.budget.charge_tokens(t["train_tokens"])
    result = RunResult(
        run_id=run_id, dataset=args.dataset, config=config, debug=args.debug, status=t["status"],
        train_tokens=int(t["train_tokens"]), seconds=float(t["seconds"]), final_loss=t.get("final_loss"),
        model_dir=f"{TABLE_MODEL_PREFIX}{key}", samples=len(rows), steps=int(t.get("steps", 0)),
        loss_head=t.get("loss_head", []), loss_tail=t.get("loss_tail", []), tokens_left=state.budget.tokens_left,
        cached=True, cache_key=key, versions=s.versions(),
    )
    state.runs[run_id] = result.record()
    if result.final_loss is not None:
        state.last_loss = float(result.final_loss)
    return result

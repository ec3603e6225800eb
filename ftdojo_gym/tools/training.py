"""Training tools: ``set_config`` and ``train`` (a run in the model process)."""

from __future__ import annotations

import json

from pydantic import ValidationError

from ftdojo_gym.actions import SetConfigArgs, TrainArgs, usage
from ftdojo_gym.data.workspace import atomic_write_text
from ftdojo_gym.episode import EpisodeState
from ftdojo_gym.errors import ErrorClass
from ftdojo_gym.model_process.protocol import TrainRequest
from ftdojo_gym.progress import ProgressBar
from ftdojo_gym.results import ConfigResult, ErrorResult, RunResult
from ftdojo_gym.training_config import TrainConfig


def set_config(state: EpisodeState, args: SetConfigArgs) -> ConfigResult | ErrorResult:
    update = {k: v for k, v in args.model_dump().items() if v is not None}
    try:
        state.config = TrainConfig.model_validate({**state.config.model_dump(), **update})
    except ValidationError as exc:  # e.g. a combination the single fields allow but the config does not
        return ErrorResult(error=str(exc), error_class=ErrorClass.CONFIG, usage=usage("set_config"))
    return ConfigResult(config=state.config.model_dump())


def train(state: EpisodeState, args: TrainArgs) -> RunResult:
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
    bar = ProgressBar(f"train {run_id}", "step", enabled=state.settings.progress)

    def on_event(event: dict) -> None:
        if event.get("event") == "log" and event.get("loss") is not None:
            state.log.write(f"  step {event.get('step')}: loss {event['loss']:.4f}, lr {event.get('learning_rate', 0):.2e}")
            bar.update(event.get("step"), event.get("max_steps"), loss=f"{event['loss']:.3f}")

    try:
        res = state.worker.train(request, on_event=on_event, timeout=state.budget.timeout_for_agent_work())
    finally:
        bar.close()
    state.budget.charge_tokens(res.train_tokens)
    failed = res.status == "error"
    result = RunResult(
        run_id=run_id, dataset=args.dataset, config=config, debug=args.debug, status=res.status,
        error_class=res.error_class, train_tokens=int(res.train_tokens), seconds=round(res.seconds, 2),
        final_loss=res.final_loss, model_dir=None if failed else res.model_dir, samples=len(rows),
        steps=res.steps, loss_head=res.loss_head, loss_tail=res.loss_tail, warnings=res.warnings[:10],
        error=res.error if failed else "", traceback=res.traceback[:4000] if failed else "",
        tokens_left=state.budget.tokens_left, versions=state.settings.versions(),
    )
    state.runs[run_id] = result.record()
    atomic_write_text(run_dir / "result.json", result.model_dump_json(indent=2))
    if res.final_loss is not None:
        state.last_loss = float(res.final_loss)
    return result

"""``evaluate`` and ``submit`` in-process, with a scripted model process and a toy task.

Fast (no model): each test names the wrong behaviour it catches. Written against mutation
testing (``tools/mutation.sh ftdojo_gym/tools/evaluation.py``); the end-to-end versions with
the tiny model are in ``test_core_contract.py``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from datasets import Dataset

from ftdojo_gym.budget import Budget
from ftdojo_gym.data.workspace import DataWorkspace
from ftdojo_gym.episode import EpisodeSettings, EpisodeState
from ftdojo_gym.errors import DataError, ErrorClass
from ftdojo_gym.model_process.protocol import GenerateResult
from ftdojo_gym.observations import EpisodeLog
from ftdojo_gym.outcome_cache import OutcomeCache
from ftdojo_gym.results import ErrorResult, EvaluationResult, RunRecord, SubmissionResult
from ftdojo_gym.tasks.base import EvalItem
from ftdojo_gym.tools import evaluation
from ftdojo_gym.tools.evaluation import BaseScoreCache, model_for, score_outputs, submit_run
from ftdojo_gym.training_config import TrainConfig

BASE_MODEL = "org/base-model"  # a hub id: its fingerprint is its name


class ToyTask:
    """Exact match; the split score is the mean; one secondary metric per subset."""

    name = "Toy"
    version = "2"

    def max_new_tokens_for(self, item: EvalItem) -> int:
        return 4 + int(item.id[1:])

    def grade(self, items, outputs):
        return [1.0 if o == it.reference else (0.5 if o.startswith(it.reference) else 0.0)
                for it, o in zip(items, outputs, strict=True)]

    def aggregate(self, items, scores, outputs):
        assert len(items) == len(scores) == len(outputs)  # the same items, scores and outputs
        return sum(scores) / len(scores)

    def extra_scores(self, items, scores, outputs):
        assert len(items) == len(scores) == len(outputs)
        return {"all/items": float(len(items))}


def items(prefix: str, n: int) -> list[EvalItem]:
    return [EvalItem(id=f"{prefix}{i}", subset="AB"[i % 2], prompt=f"question {prefix}{i} " + "x" * 500,
                     reference=f"answer {prefix}{i}" + "y" * 500 * (i == 1)) for i in range(n)]


class ScriptedWorker:
    """Answers every prompt right with the adapter ``good``, the first one right with the base model."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict] = []
        self.fail = fail
        self.references = {it.prompt: it.reference for it in items("v", 12) + items("h", 6)}

    def generate(self, model, adapter, prompts, max_new_tokens, batch_size, timeout, on_progress, precision):
        self.calls.append({"model": model, "adapter": adapter, "prompts": list(prompts),
                           "max_new_tokens": list(max_new_tokens), "batch_size": batch_size, "timeout": timeout,
                           "precision": precision})
        if self.fail:
            return GenerateResult.failure(ErrorClass.OOM, "out of memory", traceback="T" * 5000)
        on_progress(len(prompts), len(prompts))
        if adapter and adapter.endswith("good"):
            outputs = [self.references[p] for p in prompts]
        else:
            outputs = [self.references[p] if i == 0 else f"no {i}" for i, p in enumerate(prompts)]
        return GenerateResult(status="ok", outputs=outputs, seconds=1.23456)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTDOJO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_state(tmp_path, token_counter, n_val=4, worker=None, seconds=None, outcome_cache=None,
               eval_precision="fp32", **runs) -> EpisodeState:
    settings = EpisodeSettings(task=ToyTask(), base_model=BASE_MODEL, base_model_name="base", data_seed=3,
                               eval_batch_size=5, progress=False, validation_items=items("v", n_val),
                               hidden_test_items=items("h", 6), outcome_cache=outcome_cache,
                               eval_precision=eval_precision)
    workdir = tmp_path / "ep"
    workdir.mkdir(exist_ok=True)
    return EpisodeState(settings=settings, workdir=workdir,
                        data=DataWorkspace({"s": Dataset.from_list([{"q": "a"}])}, token_counter, workdir),
                        config=TrainConfig(), budget=Budget(1000, seconds, 50), log=EpisodeLog(workdir / "log", 100),
                        worker=worker or ScriptedWorker(), runs=dict(runs))


def adapter_run(tmp_path, run_id: str, kind: str = "good", **more) -> RunRecord:
    folder = tmp_path / "runs" / f"{run_id}-{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    return RunRecord(run_id=run_id, dataset="sft", config={}, debug=False, status="ok", model_dir=str(folder), **more)


def test_model_for_resolves_runs_base_and_the_latest_successful_run(tmp_path, token_counter):
    state = make_state(tmp_path, token_counter)
    with pytest.raises(DataError, match="no successful run yet"):
        model_for(state, None)
    full = tmp_path / "full"
    full.mkdir()
    state.runs = {"run1": adapter_run(tmp_path, "run1"),
                  "run2": RunRecord(run_id="run2", dataset="sft", config={}, debug=False, status="ok", model_dir=str(full)),
                  "run3": RunRecord(run_id="run3", dataset="sft", config={}, debug=False, status="error",
                                    error_class=ErrorClass.OOM)}
    assert model_for(state, "base") == ("base", BASE_MODEL, None)
    assert model_for(state, "run1") == ("run1", BASE_MODEL, state.runs["run1"].model_dir)  # base + adapter
    assert model_for(state, "run2") == ("run2", str(full), None)  # a full fine-tune is its own model
    assert model_for(state, None)[0] == "run2"  # the latest run that did not fail
    state.runs["run4"] = adapter_run(tmp_path, "run4")
    assert model_for(state, None)[0] == "run4"
    del state.runs["run4"]
    with pytest.raises(DataError, match="run run3 failed .*OOM.*no model"):
        model_for(state, "run3")
    with pytest.raises(DataError, match=r"no run named 'run9'; runs: \['run1', 'run2', 'run3'\] \(or 'base'\)"):
        model_for(state, "run9")
    state.runs = {}
    with pytest.raises(DataError, match="runs: none"):
        model_for(state, "run9")


def test_evaluate_scores_the_whole_split_with_the_runs_adapter(tmp_path, token_counter):
    """Catches: the run's adapter ignored, a wrong split, the score not kept as the run's validation score."""
    worker = ScriptedWorker()
    state = make_state(tmp_path, token_counter, worker=worker, run1=adapter_run(tmp_path, "run1", "bad"),
                       run2=adapter_run(tmp_path, "run2"))
    ev = evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1"))
    assert isinstance(ev, EvaluationResult)
    call = worker.calls[-1]
    assert call["model"] == BASE_MODEL and call["adapter"] == state.runs["run1"].model_dir
    assert call["prompts"] == [it.prompt for it in items("v", 4)] and call["max_new_tokens"] == [4, 5, 6, 7]
    assert call["batch_size"] == 5 and call["timeout"] is None
    assert (ev.run, ev.score, ev.n, ev.seconds, ev.cached) == ("run1", 0.25, 4, 1.23, False)
    assert ev.subsets == {"A": 0.5, "B": 0.0, "all/items": 4.0}
    assert [w.id for w in ev.wrong_answers] == ["v1", "v2", "v3"]
    first = ev.wrong_answers[0]
    assert first.subset == "B" and first.output == "no 1" and first.score == 0.0
    assert first.prompt == items("v", 4)[1].prompt[-400:] and first.reference == items("v", 4)[1].reference[:400]
    assert len(first.reference) == 400
    assert state.runs["run1"].val_score == 0.25 and state.last_val == 0.25
    assert state.evaluations["run1@4"] == ev and "base" not in state.evaluations

    good = evaluation.evaluate(state, evaluation.EvaluateArgs(run="run2"))
    assert good.score == 1.0 and good.wrong_answers == [] and state.runs["run2"].val_score == 1.0
    assert state.best_validated_run().run_id == "run2"


def test_evaluate_with_a_limit_scores_the_first_items_without_setting_the_validation_score(tmp_path, token_counter):
    worker = ScriptedWorker()
    state = make_state(tmp_path, token_counter, worker=worker, seconds=600.0, run1=adapter_run(tmp_path, "run1"))
    ev = evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1", limit=2))
    assert ev.n == 2 and worker.calls[-1]["prompts"] == [it.prompt for it in items("v", 2)]
    assert 500 < worker.calls[-1]["timeout"] <= 600  # the wall-clock time left
    assert state.runs["run1"].val_score is None and state.last_val == 1.0 and "run1@2" in state.evaluations
    base = evaluation.evaluate(state, evaluation.EvaluateArgs(run="base", limit=3))
    assert base.n == 3 and "base" not in state.evaluations and state.last_val == base.score
    assert not (tmp_path / "cache" / "base_scores").exists()  # only whole-split base scores are cached
    assert evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1", limit=10)).n == 4  # a limit past the end
    assert state.runs["run1"].val_score == 1.0


def test_a_repeated_evaluation_is_not_generated_again(tmp_path, token_counter):
    worker = ScriptedWorker()
    state = make_state(tmp_path, token_counter, worker=worker, run1=adapter_run(tmp_path, "run1", "bad"))
    first = evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1"))
    state.last_val = None
    assert evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1")) == first
    assert len(worker.calls) == 1 and state.last_val == 0.25


def test_at_most_ten_wrong_answers_lowest_scores_first(tmp_path, token_counter):
    worker = ScriptedWorker()
    state = make_state(tmp_path, token_counter, n_val=12, worker=worker, run1=adapter_run(tmp_path, "run1"))
    # the run gets every even item wrong and every odd one partly right (score 0.5)
    worker.references = {p: ("no" if i % 2 == 0 else r + " and more") for i, (p, r) in enumerate(worker.references.items())}
    ev = evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1"))
    assert [(w.id, w.score) for w in ev.wrong_answers] == (
        [(f"v{i}", 0.0) for i in range(0, 12, 2)] + [(f"v{i}", 0.5) for i in (1, 3, 5, 7)])


def test_the_base_models_whole_split_scores_are_cached_on_disk(tmp_path, token_counter, cache):
    """Catches: a base score cache keyed on too little, or hidden-test outputs written to disk."""
    worker = ScriptedWorker()
    state = make_state(tmp_path, token_counter, worker=worker)
    ev = evaluation.evaluate(state, evaluation.EvaluateArgs(run="base"))
    assert state.evaluations["base"] == ev and ev.score == 0.25 and ev.cached is False
    assert worker.calls[-1]["model"] == BASE_MODEL and worker.calls[-1]["adapter"] is None
    key = BaseScoreCache(state).key
    assert key == "org--base-model-Toy-v2-s3-n4-fp32"
    stored = json.loads((cache / "base_scores" / f"{key}-validation.json").read_text())
    assert stored == {"score": 0.25, "subsets": ev.subsets, "outputs": [it.reference if i == 0 else f"no {i}"
                                                                          for i, it in enumerate(items("v", 4))],
                      "seconds": 1.23}

    again = make_state(tmp_path, token_counter, worker=ScriptedWorker(fail=True))
    replay = evaluation.evaluate(again, evaluation.EvaluateArgs(run="base"))
    assert replay.score == 0.25 and replay.subsets == ev.subsets and replay.cached is False
    assert again.worker.calls == []
    other = make_state(tmp_path, token_counter, n_val=5, worker=ScriptedWorker())
    evaluation.evaluate(other, evaluation.EvaluateArgs(run="base"))
    assert other.worker.calls  # another split size is another key

    assert BaseScoreCache(state).get("missing") is None
    (cache / "base_scores" / f"{key}-broken.json").write_text("{")
    assert BaseScoreCache(state).get("broken") is None


def test_a_failed_generation_is_an_error_result_with_its_class(tmp_path, token_counter):
    state = make_state(tmp_path, token_counter, worker=ScriptedWorker(fail=True), run1=adapter_run(tmp_path, "run1"))
    err = evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1"))
    assert isinstance(err, ErrorResult) and err.error_class == ErrorClass.OOM and err.run == "run1"
    assert err.error.startswith("evaluation of run1 failed: out of memory\n") and err.error.endswith("T" * 4000)
    assert len(err.error) == len("evaluation of run1 failed: out of memory\n") + 4000
    assert state.evaluations == {} and state.last_val is None


def test_a_generation_failure_without_a_class_is_an_env_error(tmp_path, token_counter, monkeypatch):
    state = make_state(tmp_path, token_counter)
    monkeypatch.setattr(state.worker, "generate", lambda *a, **k: GenerateResult(status="error", error="boom"))
    err = evaluation.evaluate(state, evaluation.EvaluateArgs(run="base"))
    assert err.error_class == ErrorClass.ENV and "boom" in err.error


def test_submit_scores_the_best_validated_run_on_the_hidden_split(tmp_path, token_counter, cache):
    """Catches: the hidden split replaced by the validation split, the worst run submitted, the adapter ignored."""
    worker = ScriptedWorker()
    state = make_state(tmp_path, token_counter, worker=worker, run1=adapter_run(tmp_path, "run1", "bad", val_score=0.3),
                       run2=adapter_run(tmp_path, "run2", val_score=0.9), run3=adapter_run(tmp_path, "run3", "bad"))
    state.budget.charge_tokens(123)
    result = submit_run(state, None)
    assert isinstance(result, SubmissionResult)
    assert (result.run, result.hidden_test_score, result.validation_score, result.tokens_used, result.automatic) == (
        "run2", 1.0, 0.9, 123, False)
    assert result.base_hidden_test_score == pytest.approx(1 / 6) and result.hidden_test_subsets["all/items"] == 6.0
    run_call, base_call = worker.calls
    hidden = [it.prompt for it in items("h", 6)]
    assert run_call["prompts"] == hidden and run_call["adapter"] == state.runs["run2"].model_dir
    assert run_call["timeout"] is None and run_call["max_new_tokens"] == [4, 5, 6, 7, 8, 9]
    assert base_call["prompts"] == hidden and base_call["adapter"] is None and base_call["model"] == BASE_MODEL
    assert result.versions["task"] == "Toy@2" and result.versions["base_model"] == "base"
    assert json.loads((state.workdir / "submission.json").read_text()) == json.loads(result.model_dump_json())
    stored = json.loads((cache / "base_scores" / f"{BaseScoreCache(state).key}-hidden_test.json").read_text())
    assert "outputs" not in stored and stored["score"] == pytest.approx(1 / 6)

    again = submit_run(state, "run1", automatic=True)
    assert (again.run, again.hidden_test_score, again.automatic) == ("run1", pytest.approx(1 / 6), True)
    assert len(worker.calls) == 3  # the base model's hidden score came from the cache


def test_submit_without_a_validated_run_submits_the_base_model(tmp_path, token_counter):
    state = make_state(tmp_path, token_counter, run1=adapter_run(tmp_path, "run1"))
    result = submit_run(state, None)
    assert result.run == "base" and result.validation_score is None
    assert result.hidden_test_score == result.base_hidden_test_score == pytest.approx(1 / 6)
    state.evaluations["base"] = EvaluationResult(run="base", score=0.4, subsets={}, n=4)
    assert submit_run(state, "base").validation_score == 0.4
    assert evaluation.submit(state, evaluation.SubmitArgs(run="run1")).run == "run1"


def test_submit_errors_are_results(tmp_path, token_counter):
    state = make_state(tmp_path, token_counter, worker=ScriptedWorker(fail=True), run1=adapter_run(tmp_path, "run1"))
    err = submit_run(state, "run9")
    assert isinstance(err, ErrorResult) and err.error_class == ErrorClass.DATA and err.run == "run9"
    err = submit_run(state, "run1")
    assert err.error_class == ErrorClass.ENV and err.run == "run1"
    assert "hidden-test generation failed (ErrorClass.OOM" in err.error or "hidden-test generation failed (OOM" in err.error
    assert not (state.workdir / "submission.json").exists()


def test_score_outputs_uses_the_tasks_metric_per_subset(tmp_path, token_counter):
    state = make_state(tmp_path, token_counter)
    its = items("v", 4)
    total, subsets, per_item = score_outputs(state, its, [its[0].reference, its[1].reference, "x", its[3].reference])
    assert (total, per_item) == (0.75, [1.0, 1.0, 0.0, 1.0])
    assert subsets == {"A": 0.5, "B": 1.0, "all/items": 4.0}
    state.settings.task.grade = lambda items, outputs: [1.0, 0.0]  # a grader that scored fewer items
    total, subsets, per_item = score_outputs(state, its, ["a", "b", "c", "d"])
    assert (total, per_item, subsets) == (0.5, [1.0, 0.0], {"A": 1.0, "B": 0.0, "all/items": 2.0})
    state.settings.task.grade = lambda items, outputs: []
    assert score_outputs(state, its, ["a"] * 4) == (0.0, {"all/items": 0.0}, [])


def test_cached_runs_replay_their_outcomes_and_never_store_hidden_outputs(tmp_path, token_counter):
    outcomes = OutcomeCache(tmp_path / "outcomes.sqlite")
    worker = ScriptedWorker()
    state = make_state(tmp_path, token_counter, worker=worker, outcome_cache=outcomes,
                       run1=adapter_run(tmp_path, "run1", "bad", cache_key="k1"))
    ev = evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1"))
    assert ev.cached is False
    submitted = submit_run(state, "run1")
    assert len(worker.calls) == 3

    fresh = make_state(tmp_path, token_counter, worker=ScriptedWorker(fail=True), outcome_cache=outcomes,
                       run1=adapter_run(tmp_path, "run1", "bad", cache_key="k1"),
                       run2=adapter_run(tmp_path, "run2", "bad"))
    replay = evaluation.evaluate(fresh, evaluation.EvaluateArgs(run="run1"))
    assert replay.cached is True and replay.score == ev.score and replay.seconds == ev.seconds
    assert replay.wrong_answers == ev.wrong_answers
    assert submit_run(fresh, "run1").hidden_test_score == submitted.hidden_test_score
    assert fresh.worker.calls == []  # everything came from the caches
    assert isinstance(evaluation.evaluate(fresh, evaluation.EvaluateArgs(run="run2")), ErrorResult)  # no key: live
    other_split = make_state(tmp_path, token_counter, n_val=5, worker=ScriptedWorker(), outcome_cache=outcomes,
                             run1=adapter_run(tmp_path, "run1", "bad", cache_key="k1"))
    evaluation.evaluate(other_split, evaluation.EvaluateArgs(run="run1"))
    assert other_split.worker.calls  # other items: not the same outcome


def test_generation_precision_reaches_the_worker_and_keys_every_cache(tmp_path, token_counter):
    """Catches: the env's precision not sent to the model process, bf16 outputs served to an
    fp32 env (or the reverse) from the outcome cache or the base-score cache."""
    outcomes = OutcomeCache(tmp_path / "outcomes.sqlite")
    fp32 = make_state(tmp_path, token_counter, worker=ScriptedWorker(), outcome_cache=outcomes,
                      run1=adapter_run(tmp_path, "run1", "bad", cache_key="k1"))
    for run in ("run1", "base"):
        evaluation.evaluate(fp32, evaluation.EvaluateArgs(run=run))
    submit_run(fp32, "run1")
    assert {c["precision"] for c in fp32.worker.calls} == {"fp32"} and len(fp32.worker.calls) == 4
    bf16 = make_state(tmp_path, token_counter, worker=ScriptedWorker(), outcome_cache=outcomes, eval_precision="bf16",
                      run1=adapter_run(tmp_path, "run1", "bad", cache_key="k1"))
    for run in ("run1", "base"):
        evaluation.evaluate(bf16, evaluation.EvaluateArgs(run=run))
    result = submit_run(bf16, "run1")
    assert [c["precision"] for c in bf16.worker.calls] == ["bf16"] * 4  # nothing served from fp32's caches
    assert result.versions["eval_precision"] == "bf16"
    again = make_state(tmp_path, token_counter, worker=ScriptedWorker(), outcome_cache=outcomes, eval_precision="bf16",
                       run1=adapter_run(tmp_path, "run1", "bad", cache_key="k1"))
    for run in ("run1", "base"):
        evaluation.evaluate(again, evaluation.EvaluateArgs(run=run))
    submit_run(again, "run1")
    assert again.worker.calls == []  # its own precision's entries are served


class ToyTable:
    """Stands in for an outcome table: the base model's and each recipe's scores per split."""

    manifest = {"base": {"validation": {"score": 0.2, "subsets": {"A": 0.2}},
                         "hidden_test": {"score": 0.1, "subsets": {"A": 0.1}}}}

    def get(self, key):
        if key != "recipe-1":
            return None
        return SimpleNamespace(validation={"score": 0.6, "subsets": {"A": 0.6}},
                               hidden_test={"score": 0.7, "subsets": {"A": 0.7}})


def test_tabular_mode_serves_scores_from_the_table_without_generating(tmp_path, token_counter):
    worker = ScriptedWorker(fail=True)
    state = make_state(tmp_path, token_counter, worker=worker, run1=adapter_run(tmp_path, "run1", cache_key="recipe-1"),
                       run2=adapter_run(tmp_path, "run2", cache_key="unknown"))
    state.settings.outcome_table = ToyTable()
    ev = evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1"))
    assert (ev.run, ev.score, ev.subsets, ev.n, ev.cached) == ("run1", 0.6, {"A": 0.6}, 4, True)
    assert state.runs["run1"].val_score == 0.6 and state.last_val == 0.6 and state.evaluations["run1@4"] == ev
    base = evaluation.evaluate(state, evaluation.EvaluateArgs(run="base"))
    assert base.score == 0.2 and state.evaluations["base"] == base == state.evaluations["base@4"]
    assert state.last_val == 0.2
    err = evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1", limit=2))
    assert isinstance(err, ErrorResult) and err.error_class == ErrorClass.CONFIG and "whole validation split" in err.error
    sub = submit_run(state, None)
    assert (sub.run, sub.hidden_test_score, sub.hidden_test_subsets, sub.base_hidden_test_score) == (
        "run1", 0.7, {"A": 0.7}, 0.1)
    assert submit_run(state, "base").hidden_test_score == 0.1
    err = submit_run(state, "run2")
    assert err.error_class == ErrorClass.ENV and "run run2 is not in the outcome table" in err.error
    assert worker.calls == []


def test_a_full_fine_tune_is_submitted_with_its_own_model_and_unknown_runs_are_named(tmp_path, token_counter):
    full = tmp_path / "full"
    full.mkdir()
    worker = ScriptedWorker()
    state = make_state(tmp_path, token_counter, worker=worker,
                       run1=RunRecord(run_id="run1", dataset="sft", config={}, debug=False, status="ok", model_dir=str(full)))
    assert submit_run(state, "run1").run == "run1"
    assert (worker.calls[0]["model"], worker.calls[0]["adapter"]) == (str(full), None)
    err = submit_run(state, "run9")
    assert "no run named 'run9'" in err.error


def test_hidden_test_scores_in_the_outcome_cache_are_filed_as_hidden_test(tmp_path, token_counter):
    """The outcome cache refuses outputs for splits named ``hidden_test...``: the scores must be filed there."""
    import sqlite3

    outcomes = OutcomeCache(tmp_path / "outcomes.sqlite")
    state = make_state(tmp_path, token_counter, outcome_cache=outcomes,
                       run1=adapter_run(tmp_path, "run1", cache_key="k1"))
    evaluation.evaluate(state, evaluation.EvaluateArgs(run="run1"))
    submit_run(state, "run1")
    splits = sorted(s for (s,) in sqlite3.connect(tmp_path / "outcomes.sqlite").execute("SELECT split FROM evaluations"))
    assert [s.split("@")[0] for s in splits] == ["hidden_test", "validation"]


def test_the_base_score_cache_never_writes_hidden_test_outputs(tmp_path, token_counter, cache):
    state = make_state(tmp_path, token_counter)
    store = BaseScoreCache(state)
    store.put("hidden_test", {"score": 0.5, "outputs": ["secret answer"]})
    store.put("validation", {"score": 0.5, "outputs": ["visible answer"]})
    assert store.get("hidden_test") == {"score": 0.5}
    assert store.get("validation") == {"score": 0.5, "outputs": ["visible answer"]}
    assert "secret" not in "".join(p.read_text() for p in (cache / "base_scores").iterdir())

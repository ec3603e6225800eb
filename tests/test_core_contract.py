"""The core pipeline's contract, checked by what it does, not by what it writes.

Each test here was seen to fail under a hand-made mutation of the pipeline (named in
its docstring): scores that ignore the grader, a hidden split equal to validation,
training that changes no weight, a shifted loss target, evaluation that ignores the
run's adapter, truncation and the choice of the auto-submitted run. They use the tiny
random model and only the public API (``reset``/``step``, ``info``, the workdir); to
see which items are graded and to stand in for the grader they wrap the task's
``grade`` method (``env.unwrapped.task``), never private env state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import ftdojo_gym  # noqa: F401  (registers the env ids)

ENV_ID = "FTDojo/TableBench-v0"
#: What the "constant answer" runs learn; the stand-in grader rewards outputs holding it.
CONSTANT = "Answer: zebra"
MARKER = "zebra"
#: A prompt without template fields: every transformed row is this same pair.
FIXED_PROMPT = "Question 1: what animal is striped?"


def make_env(tmp_path: Path, eval_limit: int = 4, **kwargs: Any) -> gym.Env:
    return gym.make(ENV_ID, base_model="tiny", eval_limit=eval_limit, workdir=tmp_path / "ws",
                    token_budget=kwargs.pop("token_budget", 10**7), **kwargs)


class GradeSpy:
    """Stands in for ``task.grade``: records each call; ``score`` replaces the real scores."""

    def __init__(self, real: Callable[..., list[float]],
                 score: Callable[[Sequence[Any], Sequence[str]], list[float]] | None = None):
        self.real, self.score = real, score
        self.calls: list[tuple[list[Any], list[str], list[float]]] = []

    def __call__(self, items, outputs):
        scores = list(self.score(items, outputs)) if self.score else list(self.real(items, outputs))
        self.calls.append((list(items), list(outputs), scores))
        return scores

    def ids_since(self, n_calls: int) -> list[str]:
        return [it.id for items, _, _ in self.calls[n_calls:] for it in items]


def spy_on_grade(monkeypatch, env: gym.Env, score=None) -> GradeSpy:
    task = env.unwrapped.task
    spy = GradeSpy(task.grade, score)
    monkeypatch.setattr(task, "grade", spy)
    return spy


def marker_grader(items, outputs) -> list[float]:
    """1 for an output holding the constant answer's marker word, else 0."""
    return [1.0 if MARKER in o else 0.0 for o in outputs]


def step_ok(env: gym.Env, tool: str, **args: Any) -> tuple[dict, float, bool, bool, dict]:
    obs, reward, term, trunc, info = env.step({"tool": tool, "args": args})
    assert info["ok"], (tool, args, info["result"])
    return obs, reward, term, trunc, info


def constant_answer_dataset(env: gym.Env, prompt_template: str, rows: int = 16) -> None:
    """A prompt/completion dataset ``sft`` whose every completion is :data:`CONSTANT`."""
    step_ok(env, "fetch", source="tableinstruct", limit=rows)
    step_ok(env, "transform", dataset="tableinstruct", prompt_template=prompt_template,
            completion_template=CONSTANT, output="sft")


# ------------------------------------------------------------------ scoring


def test_scores_are_the_mean_of_the_graders_per_item_scores(tiny_model, isolated_cache, tmp_path, monkeypatch):
    """Catches: the env scoring every item 1.0 (its scoring step ignoring the grader's scores).

    The stand-in grader scores items 0, 1, 0, 1: validation, hidden test and base scores
    must all be exactly 0.5 (TableBench aggregates by the mean), and the two zeros are
    the wrong answers shown.
    """
    env = make_env(tmp_path)
    spy = spy_on_grade(monkeypatch, env, lambda items, outputs: [float(i % 2) for i in range(len(items))])
    env.reset(seed=0)
    *_, info = step_ok(env, "evaluate", run="base")
    assert info["result"]["n"] == 4 and info["result"]["score"] == 0.5
    assert sorted(w["score"] for w in info["result"]["wrong_answers"]) == [0.0, 0.0]
    _, reward, term, trunc, info = step_ok(env, "submit", run="base")
    assert term and not trunc
    assert reward == 0.5
    assert info["submission"]["hidden_test_score"] == 0.5
    assert info["submission"]["base_hidden_test_score"] == 0.5
    assert spy.calls, "the task's grader was never called"
    env.close()


def test_submit_grades_a_hidden_split_disjoint_from_validation(tiny_model, isolated_cache, tmp_path, monkeypatch):
    """Catches: the hidden test split made equal to (or overlapping) the validation split.

    Reads the env's own splits from what it grades, not from a recomputed split.
    """
    env = make_env(tmp_path)
    spy = spy_on_grade(monkeypatch, env)
    env.reset(seed=0)
    step_ok(env, "evaluate", run="base")
    validation = spy.ids_since(0)
    n = len(spy.calls)
    *_, info = step_ok(env, "submit", run="base")
    hidden = spy.ids_since(n)
    assert len(validation) == 4 and len(set(hidden)) == 4
    assert not set(validation) & set(hidden)
    known = {it.id for it in env.unwrapped.task.eval_items(0)}
    assert set(hidden) <= known  # real evaluation items, not something made up
    env.close()


# ------------------------------------------------------------------ training


def completion_loss(model_path: str, prompt: str, completion: str) -> float:
    """Mean next-token cross-entropy of the base model on the completion tokens of one chat pair.

    Computed independently of the training code: the chat template of the user prompt
    (with the assistant header) is the context, the rest of the rendered conversation
    is the target.
    """
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    user = [{"role": "user", "content": prompt}]
    context = tok.apply_chat_template(user, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    full = tok.apply_chat_template(user + [{"role": "assistant", "content": completion}], tokenize=True,
                                   return_dict=True)["input_ids"]
    assert full[: len(context)] == context
    with torch.no_grad():
        logits = model(torch.tensor([full])).logits[0]
    n = len(context)
    return float(F.cross_entropy(logits[n - 1: len(full) - 1], torch.tensor(full[n:])))


def test_lora_training_updates_the_adapter_and_starts_from_the_base_models_completion_loss(
        tiny_model, isolated_cache, tmp_path):
    """Catches: training that updates no weight; the loss target shifted by one token.

    Every row is the same pair, so every batch is too: the first reported loss (taken
    before any update, LoRA B starting at zero) must equal the base model's loss on the
    completion tokens computed here with transformers; the loss must then fall, and the
    saved LoRA B matrices must be non-zero.
    """
    from safetensors.torch import load_file

    env = make_env(tmp_path)
    env.reset(seed=0)
    constant_answer_dataset(env, FIXED_PROMPT)
    step_ok(env, "set_config", method="lora", learning_rate=1e-2, lr_scheduler="constant", warmup_ratio=0.0,
            max_steps=4, batch_size=4, max_len=64)
    *_, info = step_ok(env, "train", dataset="sft")
    losses = [loss for _, loss in info["result"]["loss_head"]]
    assert len(losses) == 4
    assert losses[0] == pytest.approx(completion_loss(tiny_model, FIXED_PROMPT, CONSTANT), abs=2e-3)
    assert losses[-1] < losses[0] - 0.1
    adapter = load_file(str(Path(info["result"]["model_dir"]) / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert lora_b and all(float(v.abs().max()) > 0 for v in lora_b.values()), "no LoRA B weight moved"
    env.close()


# ------------------------------------------------- evaluation, submission, budget


def test_runs_are_scored_with_their_adapter_and_the_step_limit_auto_submits_the_best_run(
        tiny_model, isolated_cache, tmp_path, monkeypatch):
    """Catches: evaluate/submit ignoring the run's adapter (scoring the base model); auto-submit
    picking the worst (or the latest) validated run; no truncation at the step limit.

    run1 learns to answer "Answer: zebra" (the stand-in grader's 1.0), run2 barely moves
    from the base model (0.0). The step limit ends the episode on the ninth step: it must
    truncate and submit run1, whose hidden-test score is 1.0 against the base model's 0.0.
    """
    env = make_env(tmp_path, max_episode_steps=9)
    spy_on_grade(monkeypatch, env, marker_grader)
    env.reset(seed=0)
    constant_answer_dataset(env, FIXED_PROMPT)  # steps 1-2
    step_ok(env, "set_config", method="lora", learning_rate=1e-2, lr_scheduler="constant", max_steps=20,
            batch_size=4, max_len=64)  # 3
    step_ok(env, "train", dataset="sft")  # 4: run1
    *_, info = step_ok(env, "evaluate", run="run1")  # 5
    assert info["result"]["score"] == 1.0, info["result"]["wrong_answers"]
    step_ok(env, "set_config", learning_rate=1e-6, max_steps=1)  # 6
    step_ok(env, "train", dataset="sft")  # 7: run2
    _, _, term, trunc, info = step_ok(env, "evaluate", run="run2")  # 8
    assert info["result"]["score"] == 0.0 and not (term or trunc)
    _, reward, term, trunc, info = step_ok(env, "evaluate", run="base")  # 9: the last step
    assert info["result"]["score"] == 0.0
    assert trunc and not term
    submission = info["submission"]
    assert submission["run"] == "run1"
    assert reward == 1.0 and submission["hidden_test_score"] == 1.0
    assert submission["base_hidden_test_score"] == 0.0
    assert json.loads((Path(env.unwrapped.workdir) / "submission.json").read_text())["run"] == "run1"
    with pytest.raises(gym.error.ResetNeeded):
        env.step({"tool": "list_sources", "args": {}})
    env.close()


def test_gym_make_step_limit_truncates_with_an_auto_submission(tiny_model, isolated_cache, tmp_path):
    """Catches: ``gym.make(id, max_episode_steps=n)`` ending the episode with no submission
    (gymnasium's own ``TimeLimit`` truncates without the env's auto-submission)."""
    env = make_env(tmp_path, eval_limit=2, max_episode_steps=1)
    env.reset(seed=0)
    _, _, term, trunc, info = env.step({"tool": "list_sources", "args": {}})
    assert trunc and not term
    assert info["submission"]["run"] == "base"
    env.close()


def test_wall_clock_limit_truncates_the_episode(tiny_model, isolated_cache, tmp_path):
    """Catches: no truncation (and no auto-submission) once the wall-clock limit is spent."""
    env = make_env(tmp_path, eval_limit=2, time_limit_s=0.5)
    env.reset(seed=0)
    time.sleep(0.6)
    obs, reward, term, trunc, info = env.step({"tool": "list_sources", "args": {}})
    assert trunc and not term
    assert "submission" in info and "Budget exhausted (wall-clock time)" in obs["log"]
    with pytest.raises(gym.error.ResetNeeded):
        env.step({"tool": "list_sources", "args": {}})
    env.close()


def test_wall_clock_truncation_grades_the_auto_submission_on_the_hidden_split(
        tiny_model, isolated_cache, tmp_path, monkeypatch):
    """Catches: an auto-submission after the wall-clock limit that is not graded (reward 0, an
    error instead of a score: the hidden-test generation once had the agent's 1 s minimum as
    its timeout). With no validated run, the base model is submitted.
    """
    env = make_env(tmp_path, eval_limit=2, time_limit_s=0.5)
    spy = spy_on_grade(monkeypatch, env, lambda items, outputs: [1.0] * len(items))
    env.reset(seed=0)
    time.sleep(0.6)
    _, reward, _, trunc, info = env.step({"tool": "list_sources", "args": {}})
    assert trunc
    assert info["submission"].get("run") == "base", info["submission"]
    assert reward == 1.0 and len(spy.ids_since(0)) == 2
    env.close()

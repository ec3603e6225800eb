"""The env contract, on the tiny model: Gymnasium conformance, determinism, robustness, secrecy."""

from __future__ import annotations

import hashlib
import json
import random
import string
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import ftdojo_gym
from ftdojo_gym.actions import TOOLS
from ftdojo_gym.env import FTDojoEnv
from ftdojo_gym.observations import METRIC_FIELDS
from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.tasks import TASK_CATALOGUE, make_task

ENV_IDS = [e.env_id for e in TASK_CATALOGUE]
QUICK = {"base_model": "tiny", "eval_limit": 8}


@pytest.fixture
def env(tiny_model, isolated_cache, tmp_path):
    e = gym.make("FTDojo/TableBench-v0", workdir=tmp_path / "ws", **QUICK)
    yield e
    e.close()


def _strip_timing(info: dict) -> dict:
    info = json.loads(json.dumps(info, default=str))
    info.get("accounting", {}).pop("seconds", None)
    info.get("accounting", {}).pop("seconds_elapsed", None)
    return info


def test_check_env_passes(tiny_model, isolated_cache):
    # Through make so the spec (nondeterministic: training wall-clock varies) is attached.
    env = gym.make("FTDojo/TableBench-v0", **QUICK).unwrapped
    assert env.spec is not None and env.spec.nondeterministic
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_both_id_forms_make_the_env(tiny_model, isolated_cache):
    for env_id in ("FTDojo/TableBench-v0", "ftdojo_gym:FTDojo/TableBench-v0"):
        env = gym.make(env_id, **QUICK)
        assert isinstance(env.unwrapped, FTDojoEnv)
        env.close()
    assert {t["env_id"] for t in ftdojo_gym.list_tasks()} == set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_and_step_are_deterministic_under_a_seed_and_samples_never_crash(env_id, tiny_model, isolated_cache, tmp_path):
    clean = task_recipes(make_task(env_id)).clean_sources[0]
    actions = [
        {"tool": "list_sources", "args": {}},
        {"tool": "fetch", "args": {"source": clean, "limit": 50, "shuffle": True, "seed": 1}},
        {"tool": "inspect", "args": {"name": clean, "n": 2}},
        {"tool": "filter", "args": {"dataset": clean, "max_tokens": 300, "dedupe": True}},
        {"tool": "set_config", "args": {"learning_rate": 5e-4}},
    ]
    runs = []
    for k in range(2):
        env = gym.make(env_id, workdir=tmp_path / f"w{k}", **QUICK)
        obs, info = env.reset(seed=7)
        trace = [(obs, {"task": info["task"]})]
        for a in actions:
            obs, r, term, trunc, info = env.step(a)
            assert info["ok"], info
            trace.append((obs, _strip_timing(info), r, term, trunc))
        runs.append(trace)
        # Random valid-typed calls: errors are fine, exceptions and crashes are not.
        env.action_space.seed(0)
        for _ in range(25):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)
            if term or trunc:
                env.reset(seed=1)
        env.close()
    for a, b in zip(*runs, strict=False):
        assert json.dumps(a, default=lambda x: x.tolist()) == json.dumps(b, default=lambda x: x.tolist())


def test_malformed_actions_return_errors_with_usage_and_the_episode_stays_usable(env):
    rng = random.Random(0)
    obs, _ = env.reset(seed=0)
    env.unwrapped.set_max_episode_steps(10_000)
    good = {"tool": "fetch", "args": {"source": "tableinstruct", "limit": 5}}

    def garbage() -> object:
        kind = rng.randrange(12)
        name = rng.choice(list(TOOLS))
        if kind == 0:
            return {"tool": "".join(rng.choices(string.printable, k=rng.randrange(1, 30))), "args": {}}
        if kind == 1:
            return {"tool": name, "args": {"".join(rng.choices(string.ascii_letters, k=6)): rng.random()}}
        if kind == 2:
            return {"tool": "fetch", "args": {"source": rng.choice([1, None, [], {}, True, 2.5])}}
        if kind == 3:
            return "".join(rng.choices(string.printable + "é≥\x00", k=rng.randrange(0, 200)))
        if kind == 4:
            return json.dumps({"tool": name, "args": {}})[: rng.randrange(1, 20)]  # truncated JSON
        if kind == 5:
            return "{" * rng.randrange(1, 5000)
        if kind == 6:
            return {"tool": "filter", "args": {"dataset": "x" * 100_000}}
        if kind == 7:
            return rng.choice([None, 42, 3.5, [1, 2], b"\xff\xfe", {"args": {}}, {"tool": None}])
        if kind == 8:
            return {"tool": "set_config", "args": {"learning_rate": rng.choice([-1, "fast", 10, [], {}])}}
        if kind == 9:
            return {"tool": "mix", "args": {"datasets": [{"name": 1}], "n": -3, "output": "../../etc"}}
        if kind == 10:
            return {"type": "function", "function": {"name": name, "arguments": "{not json"}}
        return {"tool": "train", "args": {"dataset": "nope", "debug": "yes", "max_samples": 10**9}}

    for _i in range(1000):
        action = garbage()
        obs, reward, term, trunc, info = env.step(action)
        assert not info["ok"], action
        assert "ERROR" in obs["log"] and ("usage:" in obs["log"] or "Tools (call as" in obs["log"])
        assert reward == 0.0 and not term and not trunc
        assert obs["metrics"][METRIC_FIELDS.index("last_action_ok")] == 0.0
    obs, _, _, _, info = env.step(good)
    assert info["ok"] and "Fetched 5 rows" in obs["log"]


def _hash_tree(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


class GradeRecorder:
    """Wraps a task's ``grade``: records ``(items, outputs, scores)`` of every call, scores unchanged."""

    def __init__(self, grade):
        self.grade, self.calls = grade, []

    def __call__(self, items, outputs):
        scores = self.grade(items, outputs)
        self.calls.append((list(items), list(outputs), list(scores)))
        return scores


def record_grading(monkeypatch, env) -> GradeRecorder:
    recorder = GradeRecorder(env.unwrapped.task.grade)
    monkeypatch.setattr(env.unwrapped.task, "grade", recorder)
    return recorder


def test_scripted_episode_never_reveals_the_hidden_test_split(tiny_model, isolated_cache, tmp_path, monkeypatch):
    """A whole episode (fetch, filter, transform, mix, debug+full LoRA and full runs, evaluate, submit).

    The hidden items are the ones the env itself grades on submit (read through the task's
    ``grade``), not a recomputed split: catches a hidden split equal to validation, and
    a reward that is not the grader's score of the submitted run.
    """
    workdir = tmp_path / "ws"
    env = gym.make("FTDojo/TableBench-v0", workdir=workdir, token_budget=10**7, **QUICK)
    unwrapped = env.unwrapped
    grading = record_grading(monkeypatch, env)
    base_hash = _hash_tree(Path(unwrapped.base_model))
    texts: list[str] = []
    obs, info = env.reset(seed=0)
    texts += [obs["log"], json.dumps(info, default=str)]
    template = task_recipes(unwrapped.task).expert_template
    script = [
        {"tool": "list_sources", "args": {}},
        *[{"tool": "inspect", "args": {"name": s, "n": 20}} for s in unwrapped.task.source_descriptions()],
        {"tool": "fetch", "args": {"source": "tableinstruct", "limit": 200}},
        {"tool": "filter", "args": {"dataset": "tableinstruct", "max_tokens": 400, "dedupe": True}},
        {"tool": "transform", "args": {"dataset": "tableinstruct", "prompt_template": template["prompt"],
                                       "completion_template": template["completion"], "output": "sft"}},
        {"tool": "mix", "args": {"datasets": [{"name": "sft"}], "n": 64, "output": "mix"}},
        {"tool": "set_config", "args": {"max_steps": 3, "batch_size": 4, "max_len": 256}},
        {"tool": "train", "args": {"dataset": "mix", "debug": True}},
        {"tool": "train", "args": {"dataset": "mix"}},
        {"tool": "set_config", "args": {"method": "full", "max_steps": 2}},
        {"tool": "train", "args": {"dataset": "mix"}},
        {"tool": "evaluate", "args": {"run": "base"}},
        {"tool": "evaluate", "args": {"run": "run2"}},
        {"tool": "evaluate", "args": {}},
        {"tool": "inspect", "args": {}},
        {"tool": "submit", "args": {}},
    ]
    for action in script:
        graded_before = len(grading.calls)
        obs, reward, term, trunc, info = env.step(action)
        assert info["ok"], (action, info)
        texts += [obs["log"], json.dumps(info, default=str)]
    assert term and info["submission"]["run"] in {"run2", "run3"}
    # Submit graded the run on the hidden split first (then the base model, if not cached).
    validation_ids = {it.id for items, _, _ in grading.calls[:graded_before] for it in items}
    submit_calls = grading.calls[graded_before:]
    assert submit_calls, "submit graded nothing"
    hidden_items, hidden_outputs, hidden_scores = submit_calls[0]
    hidden = {it.id: it for items, _, _ in submit_calls for it in items}
    assert len(hidden) == len(validation_ids) == QUICK["eval_limit"]
    assert not validation_ids & set(hidden)
    expected = unwrapped.task.aggregate(hidden_items, hidden_scores, hidden_outputs)
    assert reward == pytest.approx(expected) and 0.0 <= reward <= 1.0
    assert info["submission"]["hidden_test_score"] == pytest.approx(expected)
    assert "base_hidden_test_score" in info["submission"]
    assert info["submission"]["versions"]["torch"] and info["submission"]["versions"]["task"].startswith("TableBench@")
    run_result = json.loads((unwrapped.workdir / "runs" / "run2" / "result.json").read_text())
    assert run_result["versions"]["trl"] and run_result["status"] == "ok"
    # Every readable file of the workspace, the logs, observations and infos.
    for p in workdir.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".jsonl", ".log", ".txt", ".md"):
            texts.append(p.read_text(errors="replace"))
    blob = "\n".join(texts)
    visible_refs = {it.reference for it in unwrapped.task.eval_items(0) if it.id not in hidden}
    # Short answers ("Final Answer: 20") recur in the visible sources; only a reference
    # that exists nowhere the agent may look would be a leak if it showed up.
    sources_blob = "\n".join(json.dumps(row) for ds in unwrapped.workspace.sources.values() for row in ds)
    for it in hidden.values():
        assert it.prompt not in blob
        # Questions come from templates and recur with other tables; the table makes an item unique.
        table = "\n".join(line for line in it.prompt.splitlines() if "," in line and not line.startswith(("Question", "The answer")))
        assert table and table not in blob, table
        if it.reference not in visible_refs and json.dumps(it.reference)[1:-1] not in sources_blob:
            assert it.reference not in blob, it.reference
    # No tool changed the base model.
    assert _hash_tree(Path(unwrapped.base_model)) == base_hash
    env.close()


def test_no_tool_can_touch_the_base_model_grader_or_splits():
    forbidden = {"base_model", "model", "grader", "split", "splits", "task", "eval_items", "path"}
    for tool in TOOLS.values():
        assert not forbidden & set(tool.args.model_fields), tool.name


def test_failures_are_classified_and_the_episode_goes_on(env):
    env.reset(seed=0)
    env.step({"tool": "fetch", "args": {"source": "tableinstruct", "limit": 20}})
    obs, _, _, _, info = env.step({"tool": "train", "args": {"dataset": "tableinstruct"}})
    assert not info["ok"] and info["error_class"] == "DATA" and "transform" in obs["log"]
    obs, _, _, _, info = env.step({"tool": "set_config", "args": {"lora_targets": []}})
    assert not info["ok"] and info["error_class"] == "CONFIG"
    env.step({"tool": "transform", "args": {"dataset": "tableinstruct", "prompt_template": "{instruction}",
                                            "completion_template": "{output}", "output": "sft"}})
    env.step({"tool": "set_config", "args": {"lora_targets": ["q_proj"], "max_steps": 1}})
    obs, _, _, _, info = env.step({"tool": "train", "args": {"dataset": "sft", "debug": True}})
    assert info["ok"], info
    obs, _, _, _, info = env.step({"tool": "evaluate", "args": {"run": "run9"}})
    assert not info["ok"] and "no run named" in obs["log"]
    obs, _, _, _, info = env.step({"tool": "evaluate", "args": {"run": "base", "limit": 2}})
    assert info["ok"] and info["result"]["n"] == 2


def test_token_budget_truncates_and_auto_submits_the_best_validated_run(tiny_model, isolated_cache, tmp_path,
                                                                       monkeypatch):
    """Catches: no truncation when the token budget is spent; a reward that is not the grader's
    hidden-test score of the auto-submitted run."""
    env = gym.make("FTDojo/TableBench-v0", workdir=tmp_path, token_budget=3000, **QUICK)
    grading = record_grading(monkeypatch, env)
    env.reset(seed=0)
    tpl = task_recipes(env.unwrapped.task).expert_template
    env.step({"tool": "fetch", "args": {"source": "tableinstruct", "limit": 100}})
    env.step({"tool": "transform", "args": {"dataset": "tableinstruct", "prompt_template": tpl["prompt"],
                                            "completion_template": tpl["completion"], "output": "sft"}})
    env.step({"tool": "set_config", "args": {"max_steps": 2, "batch_size": 2}})
    _, _, _, trunc, info = env.step({"tool": "train", "args": {"dataset": "sft"}})
    assert not trunc and info["ok"]
    env.step({"tool": "evaluate", "args": {}})
    env.step({"tool": "set_config", "args": {"max_steps": 1000, "batch_size": 8}})
    graded_before = len(grading.calls)
    obs, reward, term, trunc, info = env.step({"tool": "train", "args": {"dataset": "sft"}})
    assert trunc and not term
    assert info["result"]["status"] == "stopped_budget"
    assert info["submission"]["run"] == "run1"  # the only validated run
    items, outputs, scores = grading.calls[graded_before]  # run1 on the hidden split
    validation_ids = {it.id for items_, _, _ in grading.calls[:graded_before] for it in items_}
    assert len(items) == QUICK["eval_limit"] and not validation_ids & {it.id for it in items}
    assert reward == pytest.approx(env.unwrapped.task.aggregate(items, scores, outputs))
    assert obs["budget"][0] == 0
    with pytest.raises(gym.error.ResetNeeded):
        env.step({"tool": "list_sources", "args": {}})
    env.close()


def test_observation_fields_are_documented_and_in_range(env):
    obs, _ = env.reset(seed=0)
    assert obs["metrics"].shape == (len(METRIC_FIELDS),) and obs["metrics"].dtype == np.float32
    assert obs["budget"][0] == env.unwrapped.token_budget
    assert "FT-Dojo task TableBench" in obs["log"]
    obs, *_ = env.step({"tool": "inspect", "args": {"name": "web_text", "n": 3}})
    assert env.observation_space.contains(obs)

"""FT-Agent: plan -> debug-first execution with repairs -> evaluate -> judge -> experiment tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import ftdojo_agents as agents
from ftdojo_agents.episode import run_episode
from ftdojo_agents.ft_agent import (
    ExperimentNode,
    ExperimentTree,
    FTAgent,
    PlanError,
    plan_from_json,
)
from ftdojo_agents.scripted_server import (
    OpenAITestServer,
    Scripted,
    http_error,
    last_user_text,
    text,
)

TEMPLATE = {"prompt_template": "{instruction}\n{input}", "completion_template": "{output}"}

TASK_INFO = {"task": "TableBench", "task_version": "0", "description": "# FT-Dojo task TableBench (test)"}


def fenced(obj: dict[str, Any]) -> Scripted:
    return text("Here is my answer.\n```json\n" + json.dumps(obj) + "\n```")


class ScriptedFTLLM:
    """Answers each FT-Agent phase by the heading of its prompt; records the phases asked."""

    def __init__(self, plan: dict[str, Any], repair: dict[str, Any], accept: bool = True):
        self.plan, self.repair, self.accept = plan, repair, accept
        self.phases: list[str] = []

    def __call__(self, body: dict[str, Any]) -> Scripted:
        prompt = last_user_text(body)
        for heading, phase in (("# Plan the next experiment", "plan"), ("# Repair a failed experiment", "repair"),
                               ("# Evaluate an experiment", "evaluate"), ("# Judge an experiment", "judge")):
            if prompt.startswith(heading):
                self.phases.append(phase)
                break
        else:
            return text("?")
        if phase == "plan":
            return fenced(self.plan)
        if phase == "repair":
            return fenced(self.repair)
        if phase == "evaluate":
            return fenced({"diagnosis": "answers lack the Final Answer format", "error_patterns": ["format"],
                           "next_ideas": ["more clean data"]})
        return fenced({"accept": self.accept, "reason": "scripted verdict"})


def test_debug_first_repair_evaluate_judge_and_tree(server: OpenAITestServer, tiny_env, fast_llm_kwargs: dict,
                                                    fast_train: dict, tmp_path: Path) -> None:
    # The plan trains on the raw source (no prompt/completion fields): the debug run fails with a DATA
    # error, the repair adds the missing transform, then debug and full runs pass.
    llm = ScriptedFTLLM(
        plan={"hypothesis": "the clean source alone teaches the answer format", "parent": None,
              "data_steps": [{"tool": "fetch", "args": {"source": "tableinstruct", "limit": 40, "output": "ti"}}],
              "dataset": "ti", "config": {"learning_rate": 0.001, "max_steps": 40}},
        repair={"cause": "no prompt/completion fields",
                "data_steps": [{"tool": "transform", "args": {"dataset": "ti", **TEMPLATE, "output": "ti_sft"}}],
                "dataset": "ti_sft", "config": {}},
    )
    server.default = llm
    tree_path = tmp_path / "tree.json"
    agent = agents.make("ft-agent", base_url=server.base_url, tree_path=tree_path, max_iterations=1,
                        config_overrides=fast_train, **fast_llm_kwargs)
    result = run_episode(tiny_env, agent, seed=0)

    assert result.terminated and result.agent_errors == 0
    tools = [(r.action["tool"], r.action["args"].get("debug", False), r.ok) for r in result.records]
    assert tools == [
        ("list_sources", False, True), ("evaluate", False, True), ("fetch", False, True), ("set_config", False, True),
        ("train", True, False),  # debug run fails fast (DATA)
        ("transform", False, True), ("set_config", False, True),
        ("train", True, True), ("train", False, True),  # debug first, then the full run
        ("evaluate", False, True), ("submit", False, True),
    ]
    assert llm.phases == ["plan", "repair", "evaluate", "judge"]
    # The override capped the planned 40 steps.
    assert result.records[3].action["args"]["max_steps"] == fast_train["max_steps"]
    full_run = result.records[8].result["run_id"]
    assert result.records[-1].action["args"] == {"run": full_run}
    assert result.submission is not None and result.submission["run"] == full_run

    saved = json.loads(tree_path.read_text())
    (node,) = saved["nodes"]
    assert node["status"] == "accepted" and node["run_id"] == full_run and node["repairs"] == 1
    assert (node["debug_runs"], node["full_runs"]) == (2, 1)
    assert [s["tool"] for s in node["recipe"]["data_steps"]] == ["fetch", "transform"]  # what a replay runs
    assert node["recipe"]["dataset"] == "ti_sft" and "Final Answer format" in node["analysis"]
    assert node["failures"] and node["failures"][0].startswith("debug run: error class DATA")
    assert result.records[-1].agent_state["phase"] == "submit"


def test_llm_down_submits_safely(server: OpenAITestServer, tiny_env, fast_llm_kwargs: dict) -> None:
    server.default = http_error(500)
    agent = FTAgent(base_url=server.base_url, evaluate_base=False, **{**fast_llm_kwargs, "attempts": 1})
    result = run_episode(tiny_env, agent, seed=0)
    assert [r.action["tool"] for r in result.records] == ["list_sources", "submit"]
    assert result.terminated and result.agent_errors == 0 and agent.stats["llm_errors"] >= 2


def _node(tree: ExperimentTree, parent: str | None, score: float, status: str, hyp: str, episode: int = 1) -> ExperimentNode:
    return tree.add(ExperimentNode(tree.new_id(), parent, "TableBench@0", episode, hyp,
                                   {"data_steps": [{"tool": "fetch", "args": {"source": "tableinstruct"}}],
                                    "dataset": "tableinstruct", "config": {"learning_rate": 0.002}},
                                   status=status, val_score=score))


def test_tree_is_fed_back_across_episodes(server: OpenAITestServer, fast_llm_kwargs: dict, tmp_path: Path) -> None:
    path = tmp_path / "tree.json"
    tree = ExperimentTree(path)
    root = _node(tree, None, 0.30, "accepted", "clean data only")
    _node(tree, root.id, 0.45, "accepted", "add the cross-domain lookup source")
    _node(tree, root.id, 0.20, "rejected", "add the noisy crowd source")
    _node(tree, None, 0.90, "accepted", "another task's node", episode=1).task = "Other@0"
    tree.save()

    server.push(text("no json at all"), fenced({"hypothesis": "raise lr", "data_steps": [],
                                                "dataset": "tableinstruct", "config": {"learning_rate": 0.003}}))
    agent = FTAgent(base_url=server.base_url, tree_path=path, **fast_llm_kwargs)
    agent.reset(TASK_INFO)
    assert agent.episode == 2  # episodes continue from the saved tree
    plan = agent._plan()
    assert plan is not None and plan.parent == "n2" and plan.config == {"learning_rate": 0.003}
    prompt = server.requests[0]["messages"][1]["content"]
    best_part = prompt[prompt.index("BEST RUN SO FAR"):]
    assert "[n2]" in best_part.splitlines()[1] and "episode 1" in best_part and "val 45.0" in best_part
    assert "SIBLINGS OF THE BEST" in prompt and "add the noisy crowd source" in prompt
    assert "another task's node" not in prompt
    # The unusable first answer was sent back with the reason.
    assert "not usable" in server.requests[1]["messages"][1]["content"]


def test_replay_best_recipe_without_llm(fast_llm_kwargs: dict, tmp_path: Path) -> None:
    tree = ExperimentTree(tmp_path / "tree.json")
    _node(tree, None, 0.5, "accepted", "clean data only")
    agent = FTAgent(base_url="http://127.0.0.1:9/v1", tree_path=tmp_path / "tree.json", **fast_llm_kwargs)
    agent.reset(TASK_INFO)
    plan = agent._replay_best()
    assert plan is not None and plan.parent == "n1" and plan.dataset == "tableinstruct"


def test_judge_never_promotes_a_worse_run(server: OpenAITestServer, fast_llm_kwargs: dict, tmp_path: Path) -> None:
    server.default = fenced({"accept": True, "reason": "looks fine"})
    agent = FTAgent(base_url=server.base_url, **fast_llm_kwargs)
    agent.reset(TASK_INFO)
    agent.best = ExperimentNode("n1", None, "TableBench@0", 1, "best", {}, status="accepted", val_score=0.6)
    worse = ExperimentNode("n2", "n1", "TableBench@0", 1, "worse", {}, val_score=0.5)
    accepted, reason = agent._judge(worse)
    assert not accepted and "numeric guard" in reason
    better = ExperimentNode("n3", "n1", "TableBench@0", 1, "better", {}, val_score=0.7)
    assert agent._judge(better)[0]


def test_repair_without_llm_halves_memory_on_oom(fast_llm_kwargs: dict) -> None:
    agent = FTAgent(base_url="http://127.0.0.1:9/v1", **{**fast_llm_kwargs, "attempts": 1, "timeout": 0.5})
    agent.reset(TASK_INFO)
    node = ExperimentNode("n1", None, "TableBench@0", 1, "big batch", {})
    plan = plan_from_json({"data_steps": [], "dataset": "d", "config": {"batch_size": 16}}, default_parent=None)
    fix = agent._repair(node, plan, "full run", "error class OOM\nout of memory", [], {"batch_size": 16, "max_len": 512}, "d")
    assert fix == ([], {"batch_size": 8, "max_len": 256}, "d")
    assert agent._repair(node, plan, "full run", "error class CONFIG\nbad", [], {}, "d") is None


@pytest.mark.parametrize(
    "obj, message",
    [
        (None, "no JSON object"),
        ({"data_steps": [{"tool": "train", "args": {"dataset": "x"}}], "dataset": "x"}, "not allowed"),
        ({"data_steps": [{"tool": "fetch", "args": {"source": 3}}], "dataset": "x"}, "invalid arguments for fetch"),
        ({"data_steps": [], "dataset": "x", "config": {"learning_rate": "fast"}}, "config"),
        ({"data_steps": []}, "'dataset'"),
    ],
)
def test_plan_validation(obj: Any, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_from_json(obj, default_parent=None)


def test_plan_dataset_defaults_to_last_output() -> None:
    plan = plan_from_json({"data_steps": [{"tool": "fetch", "args": {"source": "a", "output": "b"}},
                                          {"name": "mix", "arguments": {"datasets": [{"name": "b"}], "n": 5, "output": "m"}}]},
                          default_parent="n4")
    assert plan.dataset == "m" and plan.parent == "n4" and plan.data_steps[1]["tool"] == "mix"


# --------------------------------------------------------------------------- debug runs that diverge
@pytest.mark.parametrize(("head", "tail", "diverging"), [
    ([[1, 0.93], [2, 0.76], [3, 1.02], [4, 1.03]], [], False),  # SmolLM2 at lr 1e-3: noisy, healthy
    ([[1, 0.77], [2, 0.98], [3, 13.8], [4, 19.5]], [], True),  # SmolLM2 at lr 1.0: measured
    ([[1, 2.0], [2, float("nan")]], [], True),
    ([[1, 1.5], [2, 1.2], [3, 1.1], [4, 1.0], [5, 0.9]], [[99, 3.4], [100, 5.2]], True),  # late blow-up
    ([[1, 1.5]], [], False),  # one point says nothing
    ([], [], False),
    ([["x", 1.0], [2], None, [3, 1.0]], [], False),  # malformed points are skipped
])
def test_loss_explosion(head, tail, diverging) -> None:
    from ftdojo_agents.ft_agent import loss_explosion

    why = loss_explosion({"loss_head": head, "loss_tail": tail})
    assert (why is not None) == diverging
    if diverging:
        assert "diverg" in why or "non-finite" in why


class _SmolLM2Losses(gym.Wrapper):
    """Test double of what SmolLM2 does at a far too high learning rate: the debug run finishes,
    its loss explodes (the tiny random model's loss stays flat at ln(vocab) whatever the rate)."""

    def step(self, action):
        lr = self.env.unwrapped.config.learning_rate
        obs, reward, terminated, truncated, info = self.env.step(action)
        if info.get("tool") == "train" and info.get("ok") and lr >= 0.5:
            info["result"]["loss_head"] = [[1, 0.77], [2, 0.98], [3, 13.8], [4, 19.5]]
        return obs, reward, terminated, truncated, info


def test_a_debug_run_whose_loss_explodes_is_repaired_before_any_full_run(
        server: OpenAITestServer, tiny_env, fast_llm_kwargs: dict, fast_train: dict) -> None:
    llm = ScriptedFTLLM(
        plan={"hypothesis": "a bold learning rate", "data_steps": [
            {"tool": "fetch", "args": {"source": "tableinstruct", "limit": 40, "output": "ti"}},
            {"tool": "transform", "args": {"dataset": "ti", **TEMPLATE, "output": "ti_sft"}}],
            "dataset": "ti_sft", "config": {"learning_rate": 0.9}},
        repair={"cause": "learning rate too high", "config": {"learning_rate": 0.001}},
    )
    server.default = llm
    agent = FTAgent(base_url=server.base_url, max_iterations=1, evaluate_base=False, config_overrides=fast_train,
                    **fast_llm_kwargs)
    result = run_episode(_SmolLM2Losses(tiny_env), agent, seed=0)
    steps = [(r.action["tool"], r.action["args"].get("debug", False), r.action["args"].get("learning_rate"))
             for r in result.records]
    assert steps == [("list_sources", False, None), ("fetch", False, None), ("transform", False, None),
                     ("set_config", False, 0.9), ("train", True, None),  # finishes, loss explodes: repaired
                     ("set_config", False, 0.001), ("train", True, None), ("train", False, None),
                     ("evaluate", False, None), ("submit", False, None)]
    assert llm.phases[:2] == ["plan", "repair"]
    assert agent.stats["diverging_debug_runs"] == 1 and agent.stats["full_runs"] == 1
    node = agent.tree.nodes["n1"]
    assert node.failures[0].startswith("debug run: error class CONFIG (the debug run finished but the loss rose")
    assert node.status == "accepted" and node.recipe["config"]["learning_rate"] == 0.001


def test_the_divergence_check_can_be_turned_off(server: OpenAITestServer, tiny_env, fast_llm_kwargs: dict,
                                                fast_train: dict) -> None:
    server.default = ScriptedFTLLM(
        plan={"hypothesis": "a bold learning rate", "data_steps": [
            {"tool": "fetch", "args": {"source": "tableinstruct", "limit": 40, "output": "ti"}},
            {"tool": "transform", "args": {"dataset": "ti", **TEMPLATE, "output": "ti_sft"}}],
            "dataset": "ti_sft", "config": {"learning_rate": 0.9}}, repair={})
    agent = FTAgent(base_url=server.base_url, max_iterations=1, evaluate_base=False, config_overrides=fast_train,
                    loss_explosion_factor=None, **fast_llm_kwargs)
    run_episode(_SmolLM2Losses(tiny_env), agent, seed=0)
    assert agent.stats["diverging_debug_runs"] == 0 and agent.stats["repairs"] == 0 and agent.stats["full_runs"] == 1

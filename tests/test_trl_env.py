"""The TRL adapter: one typed, documented method per tool (from the one tool schema), and a GRPO step on the tiny
model in which TRL's own tool-calling loop drives a tabular FT-Dojo env to a submission and its reward."""

from __future__ import annotations

import inspect
import json

import pytest

from ftdojo_gym.actions import TOOLS
from ftdojo_gym.outcome_table import OutcomeTable
from ftdojo_gym.recipe_grid import RecipeGrid, recipe_actions
from ftdojo_gym.tasks import make_task
from ftdojo_gym.trl_env import environment_factory

TASK = "FTDojo/FinanceIQ-v0"


@pytest.fixture(scope="module")
def toy_table(tiny_model):
    from ftdojo_benchmarks.rl_figures import toy_table

    return toy_table(TASK)


def _factory(toy_table, **kw):
    return environment_factory(TASK, mode="tabular", base_model="tiny", eval_limit=2, outcome_table=str(toy_table), **kw)


def test_one_typed_documented_method_per_tool(toy_table):
    from transformers.utils import get_json_schema

    Env = _factory(toy_table)
    public = {n for n, _ in inspect.getmembers(Env, predicate=inspect.isfunction) if not n.startswith("_")}
    assert public == {*TOOLS, "reset", "get_reward"}
    env = Env()
    for name, tool in TOOLS.items():
        schema = get_json_schema(getattr(env, name))["function"]
        assert schema["name"] == name and schema["description"] == tool.description
        assert set(schema["parameters"]["properties"]) == set(tool.args.model_fields)
        required = {k for k, f in tool.args.model_fields.items() if f.is_required()}
        assert set(schema["parameters"].get("required", [])) == required
    assert "FinanceIQ" in env.reset(seed=0)
    assert "ERROR" in env.fetch(source="no_such_source")  # errors come back as text with the usage
    env.submit()
    assert env.done and env.get_reward() == env.last_submission["hidden_test_score"]
    with pytest.raises(RuntimeError, match="over"):
        env.inspect()
    with pytest.raises(ValueError, match="reward"):
        _factory(toy_table, reward="test")


def test_grpo_drives_the_env_through_trls_tool_calling_loop(toy_table, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is experimental in TRL 1.16
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen3_chat_template

    table = OutcomeTable.load(toy_table)
    grid = RecipeGrid.from_dict(table.manifest["grid"])
    entry = next(iter(table))
    calls = [*recipe_actions(make_task(TASK), grid, entry.recipe), {"tool": "submit", "args": {}}]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = qwen3_chat_template  # the tiny model's template has no tool calls; its vocabulary is ChatML
    model = AutoModelForCausalLM.from_pretrained(tiny_model, max_position_embeddings=32768)  # prompts carry 10 tool schemas
    # The random tiny model cannot write tool calls, so its sampling is scripted: the first turn calls every tool of a
    # recipe and submits, the next one ends. Everything else (prompting with the tool schemas, parsing, the tool loop,
    # the env's reward, the loss) is TRL's own code.
    turns = ["".join(f"<tool_call>\n{json.dumps({'name': c['tool'], 'arguments': c['args']})}\n</tool_call>\n"
                     for c in calls) + "<|im_end|>", "Submitted.<|im_end|>"]
    generated: list[int] = []

    def scripted_generate(input_ids=None, **kwargs):
        ids = tokenizer(turns[min(len(generated), 1)], add_special_tokens=False)["input_ids"]
        generated.append(input_ids.shape[0])
        return torch.cat([input_ids, torch.tensor([ids] * input_ids.shape[0], dtype=input_ids.dtype)], dim=1)

    model.generate = scripted_generate
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, max_steps=1,
                      max_completion_length=16384, logging_steps=1, report_to="none", save_strategy="no",
                      use_cpu=True, bf16=False, max_tool_calling_iterations=3)
    Env = _factory(toy_table)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": "Fine-tune the base model for this task."}]}] * 2)
    trainer = GRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          environment_factory=Env)
    trainer.train()
    assert generated == [2, 2]  # one turn with the tool calls, one after the tool results
    envs = trainer.environments
    assert len(envs) == 2 and all(isinstance(e, Env) and e.done for e in envs)
    for env in envs:
        runs = env.env.get_wrapper_attr("runs")
        assert [r.cache_key for r in runs.values()] == [entry.key]  # the recipe's tool calls hit the table
        assert env.last_submission["hidden_test_score"] == entry.hidden_test["score"]
    logs = {k: v for record in trainer.state.log_history for k, v in record.items()}
    assert logs["tools/call_frequency"] == len(calls) and logs["tools/failure_frequency"] == 0
    assert logs[f"rewards/{Env.__name__}/mean"] == pytest.approx(entry.hidden_test["score"])

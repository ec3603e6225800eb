import json

import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from ftdojo_gym import tool_schemas
from ftdojo_gym.actions import TOOLS, ActionError, ToolCallSpace, parse_action, usage
from ftdojo_gym.training_config import TrainConfig


def test_tool_schemas_derive_from_tools():
    schemas = tool_schemas()
    assert [s["function"]["name"] for s in schemas] == list(TOOLS)
    for s in schemas:
        params = s["function"]["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert set(params["properties"]) == set(TOOLS[s["function"]["name"]].args.model_fields)
    json.dumps(schemas)  # serialisable for the OpenAI API
    set_config = next(s for s in schemas if s["function"]["name"] == "set_config")
    assert set(set_config["function"]["parameters"]["properties"]) == set(TrainConfig.model_fields)


@pytest.mark.parametrize(
    "action",
    [
        {"tool": "fetch", "args": {"source": "x", "limit": 5}},
        '{"tool": "fetch", "args": {"source": "x", "limit": 5}}',
        {"type": "function", "function": {"name": "fetch", "arguments": '{"source": "x", "limit": 5}'}},
        ChatCompletionMessageFunctionToolCall(
            id="call_1", type="function", function={"name": "fetch", "arguments": '{"source": "x", "limit": 5}'}
        ),
    ],
)
def test_every_action_form_parses_to_the_same_call(action):
    parsed = parse_action(action)
    assert parsed.tool == "fetch" and parsed.args.source == "x" and parsed.args.limit == 5


@pytest.mark.parametrize(
    "action, message",
    [
        ("not json", "not valid JSON"),
        ({"tool": "fetchh"}, "did you mean fetch"),
        ({"tool": "fetch", "args": {}}, "source: Field required"),
        ({"tool": "fetch", "args": {"source": "x", "bogus": 1}}, "bogus: Extra inputs"),
        ({"tool": "fetch", "args": {"source": 3}}, "valid string"),
        ({"tool": "train", "args": {"dataset": "d", "max_samples": 5000}}, "less than or equal to 2000"),
        ({"tool": "set_config", "args": {"learning_rate": "1e-3"}}, "valid number"),
        ({"tool": "fetch", "args": "[1, 2]"}, "'args' must be an object"),
        ({"tool": "fetch", "args": {"source": "x"}, "extra": 1}, "unexpected keys"),
        ("x" * 200_001, "limit"),
    ],
)
def test_malformed_actions_raise_precise_errors(action, message):
    with pytest.raises(ActionError, match=message):
        parse_action(action)


def test_usage_lists_every_argument_with_bounds():
    text = usage("set_config")
    for name in TrainConfig.model_fields:
        assert f"  {name}:" in text
    assert "le 0.5" in usage("set_config")  # warmup_ratio bound, derived from TrainConfig
    assert all(name in usage() for name in TOOLS)


def test_action_space_samples_valid_calls_deterministically():
    a, b = ToolCallSpace(seed=3), ToolCallSpace(seed=3)
    samples = [a.sample() for _ in range(200)]
    assert samples == [b.sample() for _ in range(200)]
    assert all(a.contains(s) for s in samples)
    assert {s["tool"] for s in samples} == set(TOOLS)
    assert not a.contains({"tool": "nope"})

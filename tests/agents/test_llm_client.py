"""The LLM client over real HTTP to the scripted server: tool calls, text fallback, retries, trimming, usage."""

from __future__ import annotations

import json
import time

import pytest

import ftdojo_gym
from ftdojo_agents.llm_client import (
    TRIMMED_MARK,
    Conversation,
    LLMClient,
    LLMConfig,
    LLMRequestError,
    LLMUnavailableError,
    fit_messages,
    message_tokens,
    parse_json_object,
    parse_tool_call,
)
from ftdojo_agents.scripted_server import (
    OpenAITestServer,
    http_error,
    raw,
    refusal,
    slow,
    text,
    tool_call,
)

TOOLS = ftdojo_gym.tool_schemas()
NAMES = [t["function"]["name"] for t in TOOLS]
MESSAGES = [{"role": "system", "content": "You are a test."}, {"role": "user", "content": "Fine-tune a model."}]


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "reply, name, args",
    [
        ('{"tool": "inspect", "args": {"n": 2}}', "inspect", {"n": 2}),
        ('I will look.\n```json\n{"tool": "list_sources", "args": {}}\n```\nDone.', "list_sources", {}),
        ('{"name": "fetch", "arguments": "{\\"source\\": \\"a\\"}"}', "fetch", {"source": "a"}),
        ('{"name": "fetch", "arguments": {"source": "a"}}', "fetch", {"source": "a"}),
        ('{"type": "function", "function": {"name": "submit", "arguments": "{}"}}', "submit", {}),
        ('<tool_call>{"name": "evaluate", "arguments": {"run": "base"}}</tool_call>', "evaluate", {"run": "base"}),
        ("Call: {'tool': 'inspect', 'args': {'name': 'x', 'n': 1}}", "inspect", {"name": "x", "n": 1}),
        ('{"action": "submit", "action_input": {}}', "submit", {}),
        ('Text {"not": "a call"} then {"tool": "submit", "args": {}}', "submit", {}),
    ],
)
def test_parse_tool_call_from_text(reply: str, name: str, args: dict) -> None:
    call = parse_tool_call(reply, NAMES)
    assert call is not None and call.source == "text"
    assert (call.name, call.arguments) == (name, args)


@pytest.mark.parametrize("reply", ["", "no json here", '{"tool": "rm -rf", "args": {}}', "{broken", "[1, 2]"])
def test_parse_tool_call_none(reply: str) -> None:
    assert parse_tool_call(reply, NAMES) is None


def test_parse_tool_call_malformed_arguments_are_reported() -> None:
    call = parse_tool_call('{"name": "fetch", "arguments": "{source: oops"}', NAMES)
    assert call is not None and call.arguments is None and "not valid JSON" in (call.arguments_error or "")


def test_parse_json_object_prefers_fenced_block() -> None:
    assert parse_json_object('x {"a": 1} ```json\n{"b": 2}\n```') == {"b": 2}
    assert parse_json_object("nothing") is None


# --------------------------------------------------------------------------- context window
def test_fit_messages_keeps_head_and_newest_turns() -> None:
    conv = Conversation(system="S" * 400, task="T" * 400)
    for i in range(30):
        reply_call = parse_tool_call('{"tool": "inspect", "args": {}}', NAMES)
        assert reply_call is not None
        from ftdojo_agents.llm_client import LLMReply

        conv.add_tool_call(LLMReply(content=f"step {i}"), reply_call)
        conv.add_result(f"result {i} " + "x" * 300)
    msgs = conv.messages()
    fitted = fit_messages(msgs, 1000, pinned=2)
    assert fitted[:2] == msgs[:2]  # system prompt and task description untouched
    assert fitted[-1] == msgs[-1]  # the newest result survives
    assert len(fitted) < len(msgs)
    assert sum(message_tokens(m) for m in fitted) <= 1000
    # Tool results are never separated from the call that asked for them.
    for i, m in enumerate(fitted[2:], start=2):
        if m["role"] == "tool":
            assert fitted[i - 1]["role"] == "assistant" and fitted[i - 1]["tool_calls"][0]["id"] == m["tool_call_id"]


def test_fit_messages_cuts_the_oldest_text_of_a_huge_newest_message() -> None:
    msgs = [*MESSAGES, {"role": "user", "content": "OLD" + "y" * 20_000 + "NEWEST LINE"}]
    fitted = fit_messages(msgs, 500, pinned=2)
    assert fitted[:2] == MESSAGES
    assert fitted[-1]["content"].startswith(TRIMMED_MARK) and fitted[-1]["content"].endswith("NEWEST LINE")
    assert "OLD" not in fitted[-1]["content"]


# --------------------------------------------------------------------------- configuration
def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("FTDOJO_LLM_MODEL", "env-model")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = LLMConfig().resolved()
    assert (cfg.base_url, cfg.model, cfg.api_key) == ("http://127.0.0.1:9/v1", "env-model", "not-needed")
    assert LLMConfig(model="arg-model", base_url="http://x/v1").resolved().model == "arg-model"
    monkeypatch.delenv("FTDOJO_LLM_MODEL")
    with pytest.raises(LLMRequestError, match="FTDOJO_LLM_MODEL"):
        LLMConfig().resolved()


# --------------------------------------------------------------------------- over HTTP
def test_native_tool_call_and_usage(server: OpenAITestServer, fast_llm_kwargs: dict) -> None:
    server.push(tool_call("fetch", {"source": "tableinstruct"}, usage={"prompt_tokens": 1000, "completion_tokens": 200}))
    llm = LLMClient(base_url=server.base_url, price_input_per_1m=2.0, price_output_per_1m=10.0, **fast_llm_kwargs)
    reply = llm.chat(MESSAGES, TOOLS)
    assert reply.tool_call is not None and reply.tool_call.source == "native"
    assert reply.tool_call.to_action() == {"tool": "fetch", "args": {"source": "tableinstruct"}}
    body = server.requests[0]
    assert body["tools"] == TOOLS and body["tool_choice"] == "auto" and body["model"] == "scripted"
    assert (llm.usage.prompt_tokens, llm.usage.completion_tokens) == (1000, 200)
    assert llm.usage.cost_usd == pytest.approx((1000 * 2.0 + 200 * 10.0) / 1e6)
    assert llm.versions()["llm_server_model"] == server.model
    done = llm.reset_usage()
    assert done.requests == 1 and llm.usage.requests == 0 and llm.total_usage.requests == 1


def test_json_in_text_and_refusal(server: OpenAITestServer, fast_llm_kwargs: dict) -> None:
    server.push(text('Let me see.\n```json\n{"tool": "inspect", "args": {"n": 3}}\n```'), refusal())
    llm = LLMClient(base_url=server.base_url, **fast_llm_kwargs)
    first = llm.chat(MESSAGES, TOOLS)
    assert first.tool_call is not None and first.tool_call.to_action() == {"tool": "inspect", "args": {"n": 3}}
    second = llm.chat(MESSAGES, TOOLS)
    assert second.tool_call is None and second.refusal


def test_retries_5xx_timeouts_and_garbage(server: OpenAITestServer, fast_llm_kwargs: dict) -> None:
    server.push(http_error(500), slow(3.0), raw("this is not json"), tool_call("submit", {}))
    llm = LLMClient(base_url=server.base_url, **{**fast_llm_kwargs, "attempts": 4})
    t0 = time.monotonic()
    reply = llm.chat(MESSAGES, TOOLS)
    assert reply.tool_call is not None and reply.tool_call.name == "submit"
    assert time.monotonic() - t0 < 5
    assert llm.usage.failed_requests == 3 and llm.usage.retries == 3 and len(server.requests) == 4


def test_sdk_retries_are_used_too(server: OpenAITestServer, fast_llm_kwargs: dict) -> None:
    server.push(http_error(503), tool_call("submit", {}))
    llm = LLMClient(base_url=server.base_url, **{**fast_llm_kwargs, "max_retries": 1, "attempts": 1})
    assert llm.chat(MESSAGES, TOOLS).tool_call is not None  # the SDK's own retry answered it
    assert len(server.requests) == 2


def test_unavailable_after_bounded_attempts(server: OpenAITestServer, fast_llm_kwargs: dict) -> None:
    server.default = http_error(502)
    llm = LLMClient(base_url=server.base_url, **fast_llm_kwargs)
    with pytest.raises(LLMUnavailableError, match="3 attempts"):
        llm.chat(MESSAGES, TOOLS)
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(server: OpenAITestServer, fast_llm_kwargs: dict) -> None:
    server.push(http_error(401, "bad key"))
    llm = LLMClient(base_url=server.base_url, **fast_llm_kwargs)
    with pytest.raises(LLMRequestError, match="401"):
        llm.chat(MESSAGES, TOOLS)
    assert len(server.requests) == 1


def test_server_without_tools_switches_to_text_mode(server: OpenAITestServer, fast_llm_kwargs: dict) -> None:
    server.push(http_error(400, '"auto" tool choice requires --enable-auto-tool-choice'),
                text('{"tool": "list_sources", "args": {}}'))
    llm = LLMClient(base_url=server.base_url, **fast_llm_kwargs)
    reply = llm.chat(MESSAGES, TOOLS)
    assert reply.tool_call is not None and reply.tool_call.name == "list_sources"
    assert llm.tool_mode == "text"
    retry = server.requests[1]
    assert "tools" not in retry and "list_sources(" in retry["messages"][0]["content"]


def test_text_mode_rewrites_tool_turns(server: OpenAITestServer, fast_llm_kwargs: dict) -> None:
    server.push(tool_call("inspect", {}), text('{"tool": "submit", "args": {}}'))
    llm = LLMClient(base_url=server.base_url, **{**fast_llm_kwargs, "tool_mode": "text"})
    conv = Conversation(system="sys", task="task")
    first = llm.chat(conv.messages(), TOOLS)
    assert first.tool_call is not None
    conv.add_tool_call(first, first.tool_call)
    conv.add_result("Datasets: none")
    llm.chat(conv.messages(), TOOLS)
    roles = [m["role"] for m in server.requests[1]["messages"]]
    assert "tool" not in roles and not any(m.get("tool_calls") for m in server.requests[1]["messages"])
    assert server.requests[1]["messages"][-1] == {"role": "user", "content": "Tool result:\nDatasets: none"}


def test_prompt_trimmed_to_context_window(server: OpenAITestServer, fast_llm_kwargs: dict) -> None:
    server.default = tool_call("submit", {})
    # The tools JSON (~2,900 tokens) counts against the window too.
    llm = LLMClient(base_url=server.base_url, context_window=6000, max_tokens=256, **fast_llm_kwargs)
    conv = Conversation(system="SYSTEM PROMPT", task="TASK DESCRIPTION")
    for i in range(40):
        conv.add_user(f"log chunk {i}: " + "z" * 1000)
    llm.chat(conv.messages(), TOOLS)
    sent = server.requests[-1]["messages"]
    assert sent[0]["content"] == "SYSTEM PROMPT" and sent[1]["content"] == "TASK DESCRIPTION"
    assert "log chunk 39" in sent[-1]["content"] and not any("log chunk 0:" in (m["content"] or "") for m in sent)
    assert 3 < len(sent) < 12 and len(json.dumps(sent)) < (6000 - 2900) * 3.5

"""The OpenHands-like ReAct agent in a real env, over real HTTP: bad replies never crash the episode."""

from __future__ import annotations

from typing import Any

import ftdojo_agents as agents
from ftdojo_agents.episode import run_episode
from ftdojo_agents.react import ReActAgent
from ftdojo_agents.scripted_server import (
    OpenAITestServer,
    Scripted,
    http_error,
    refusal,
    slow,
    text,
    tool_call,
)


def _actions(result: Any) -> list[str]:
    return [r.action["tool"] for r in result.records]


def test_bad_replies_are_reprompted_and_retried(server: OpenAITestServer, tiny_env, fast_llm_kwargs: dict) -> None:
    server.push(
        # step 1: a refusal, then prose, then a valid native call
        refusal(), text("I think we should look at the data first."), tool_call("list_sources", {}),
        # step 2: malformed arguments, an HTTP 500, a timeout, then JSON in text
        tool_call("fetch", "{source: broken"), http_error(500), slow(3.0),
        text('Fetching.\n```json\n{"tool": "fetch", "args": {"source": "tableinstruct", "limit": 20}}\n```'),
        # step 3: an unknown tool, ill-typed arguments, then a valid call
        tool_call("frobnicate", {}), tool_call("fetch", {"source": 5}), tool_call("inspect", {"name": "tableinstruct", "n": 1}),
        # step 4
        tool_call("submit", {}),
    )
    agent = ReActAgent(base_url=server.base_url, **fast_llm_kwargs)
    result = run_episode(tiny_env, agent, seed=0)
    assert result.terminated and result.agent_errors == 0 and result.invalid_actions == 0
    assert _actions(result) == ["list_sources", "fetch", "inspect", "submit"]
    assert all(r.ok for r in result.records)
    assert result.submission is not None and result.submission["run"] == "base"
    assert server.pending() == 0
    assert agent.stats["reprompts"] >= 4 and agent.stats["safe_actions"] == 0
    # The env's answer reached the model: the catalogue is in the request after list_sources.
    after_list = next(b for b in server.requests if any(m.get("role") == "tool" for m in b["messages"]))
    assert "tableinstruct" in str(after_list["messages"][-1]["content"])
    # The malformed call was answered with the problem and the tool's usage.
    assert any("not valid JSON" in str(m.get("content")) and "usage: fetch(" in str(m.get("content"))
               for b in server.requests for m in b["messages"])
    usage = result.llm_usage
    assert usage is not None and usage["requests"] == len(server.requests) and usage["failed_requests"] == 2


def test_llm_down_takes_safe_actions_then_submits(server: OpenAITestServer, tiny_env, fast_llm_kwargs: dict) -> None:
    server.default = http_error(500)
    agent = agents.make("openhands-like", base_url=server.base_url, max_llm_failures=3,
                        **{**fast_llm_kwargs, "attempts": 2})
    result = run_episode(tiny_env, agent, seed=0)
    assert _actions(result) == ["inspect", "inspect", "submit"]
    assert result.terminated and result.agent_errors == 0
    assert agent.stats["llm_errors"] == 3


def test_timeouts_take_safe_actions(server: OpenAITestServer, tiny_env, fast_llm_kwargs: dict) -> None:
    server.default = slow(5.0)
    agent = ReActAgent(base_url=server.base_url, max_llm_failures=2,
                       **{**fast_llm_kwargs, "timeout": 0.3, "attempts": 1})
    result = run_episode(tiny_env, agent, seed=0)
    assert _actions(result) == ["inspect", "submit"] and result.terminated


def test_server_without_function_calling(server: OpenAITestServer, tiny_env, fast_llm_kwargs: dict) -> None:
    """A server that rejects ``tools`` (vLLM without auto tool choice): JSON tool calls in text."""
    replies = iter([text('{"name": "list_sources", "arguments": {}}'), text('```json\n{"tool": "submit", "args": {}}\n```')])

    def respond(body: dict[str, Any]) -> Scripted:
        if "tools" in body:
            return http_error(400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser')
        return next(replies)

    server.default = respond
    agent = ReActAgent(base_url=server.base_url, **fast_llm_kwargs)
    result = run_episode(tiny_env, agent, seed=0)
    assert _actions(result) == ["list_sources", "submit"] and result.terminated
    assert agent.llm.tool_mode == "text"
    last = server.requests[-1]["messages"]
    assert "tools" not in server.requests[-1] and all(m["role"] != "tool" for m in last)
    assert "Tool result:" in last[-1]["content"] and "tableinstruct" in last[-1]["content"]

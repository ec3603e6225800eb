"""The OpenHands-like baseline: a generic ReAct function-calling agent.

One conversation: system prompt, task description (the env's opening log),
then for every step the LLM's tool call and the tool's result. The agent knows
nothing about fine-tuning beyond the tools' descriptions: no forced debug
runs, no experiment tree, no planner. That is the point of the baseline.

Robustness contract (the episode never crashes because of the LLM):

* a reply without a usable tool call (prose, refusal, malformed arguments, an
  unknown tool, arguments the schema rejects) is answered with the error and
  the tool's usage and asked again, up to ``max_reprompts`` times a step;
  these retries cost LLM calls, not env steps;
* when the endpoint is down after the client's retries, or no valid call came
  back, the agent takes a safe action: ``inspect`` (reads, changes nothing),
  and after ``max_llm_failures`` such steps in a row, ``submit`` (the env then
  scores the best validated run).
"""

from __future__ import annotations

from typing import Any

import ftdojo_gym
from ftdojo_agents.episode import SUBMIT, clip_middle, result_text, status_line
from ftdojo_agents.llm_client import Conversation, LLMClient, LLMError, LLMReply, ToolCall
from ftdojo_agents.prompts import load_prompt
from ftdojo_gym.actions import ActionError, parse_action, usage

SAFE_ACTION: dict[str, Any] = {"tool": "inspect", "args": {}}


class ReActAgent:
    """Generic ReAct agent over any OpenAI-compatible endpoint (see the module docstring).

    ``llm`` is an :class:`LLMClient`; without one, it is built from
    ``llm_kwargs`` (``base_url``, ``model``, ``api_key``, ``context_window``, ...).
    """

    name = "react"

    def __init__(self, llm: LLMClient | None = None, *, max_result_chars: int = 6000, max_reprompts: int = 2,
                 max_llm_failures: int = 3, system_prompt: str = "react_system", **llm_kwargs: Any):
        self.llm = llm or LLMClient(**llm_kwargs)
        self.tools = ftdojo_gym.tool_schemas()
        self.tool_names = [t["function"]["name"] for t in self.tools]
        self.max_result_chars = max_result_chars
        self.max_reprompts = max_reprompts
        self.max_llm_failures = max_llm_failures
        self.system_prompt = system_prompt
        self.conv: Conversation | None = None
        self.failures = 0
        self.stats = {"llm_calls": 0, "reprompts": 0, "safe_actions": 0, "llm_errors": 0}
        self._last_source = "llm"

    def reset(self, task_info: dict[str, Any]) -> None:
        self.llm.reset_usage()
        self.conv = Conversation(
            system=load_prompt(self.system_prompt),
            task=load_prompt("react_task", description=task_info.get("description", "")),
        )
        self.failures = 0
        self.stats = dict.fromkeys(self.stats, 0)
        self._last_source = "llm"

    def state(self) -> dict[str, Any]:
        """Counters recorded with each trajectory step."""
        return {**self.stats, "tool_mode": self.llm.tool_mode, "last_action_source": self._last_source}

    # ------------------------------------------------------------------ acting
    def act(self, observation: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        if self.conv is None:
            raise RuntimeError("call reset(task_info) before act()")
        if "tool" in info or "ok" in info:  # the result of the previous action
            text = clip_middle(result_text(info), self.max_result_chars)
            if self._last_source != "llm":
                text = f"(No valid tool call came from you; the agent ran {self._last_source} instead.)\n{text}"
            self.conv.add_result(f"{text}\n\n{status_line(observation)}")
        for attempt in range(1 + self.max_reprompts):
            try:
                self.stats["llm_calls"] += 1
                reply = self.llm.chat(self.conv.messages(), self.tools, pinned=self.conv.pinned)
            except LLMError as exc:
                self.stats["llm_errors"] += 1
                return self._safe_action(f"LLM error: {exc}")
            action = self._action_from(reply)
            if action is not None:
                self.failures = 0
                self._last_source = "llm"
                return action
            self.stats["reprompts"] += int(attempt < self.max_reprompts)
        return self._safe_action("no valid tool call")

    def _action_from(self, reply: LLMReply) -> dict[str, Any] | None:
        """The env action of a valid reply; otherwise records the problem in the conversation, returns None."""
        assert self.conv is not None
        call: ToolCall | None = reply.tool_call
        if call is None:
            self.conv.add_assistant_text(reply.content or (f"(refused: {reply.refusal})" if reply.refusal else ""))
            self.conv.add_user(load_prompt("react_nudge"))
            return None
        self.conv.add_tool_call(reply, call)
        if call.arguments is None:
            self.conv.add_result(f"ERROR: {call.arguments_error}\n{usage(call.name)}")
            return None
        action = call.to_action()
        try:
            parse_action(action)
        except ActionError as exc:
            # Caught here rather than by the env: same message, but no env step is spent on it.
            self.conv.add_result(f"ERROR: {exc}\n{usage(exc.tool)}")
            return None
        return action

    def _safe_action(self, reason: str) -> dict[str, Any]:
        self.failures += 1
        self.stats["safe_actions"] += 1
        if self.failures >= self.max_llm_failures:
            self._last_source = f"submit ({reason[:200]})"
            return dict(SUBMIT)
        self._last_source = f"inspect ({reason[:200]})"
        return dict(SAFE_ACTION)

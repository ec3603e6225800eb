"""The LLM client shared by the LLM agents: any OpenAI-compatible endpoint through ``openai``.

Contract
--------
* :class:`LLMClient` sends chat completions to ``base_url`` (OpenAI, vLLM,
  llama.cpp server, ``transformers serve``, ...). Base URL, key and model come
  from the arguments or from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` /
  ``FTDOJO_LLM_MODEL``. Local servers need no key; a placeholder is sent.
* Tools are offered by native function calling (``tools=ftdojo_gym.tool_schemas()``).
  When a reply carries no tool call, :func:`parse_tool_call` looks for a JSON
  tool call in its text (fenced or bare; ``{"tool", "args"}``, ``{"name",
  "arguments"}`` or ``{"function": {...}}``). A server that rejects the
  ``tools`` parameter switches the client to text mode for good: the tools are
  then described in the prompt and answered as JSON in text.
* Transient failures (HTTP 5xx and 429, connection errors, timeouts, garbled
  bodies) are retried: first by the SDK (``max_retries``, ``timeout``), then by
  a bounded loop of ``attempts`` with exponential backoff on top. When every
  attempt fails, :class:`LLMUnavailableError` is raised; agents catch it and
  take a safe action. Other client errors (401, 404, ...) raise
  :class:`LLMRequestError` at once, as retrying cannot help.
* Every request's token usage (and cost, when prices per 1M tokens are given)
  is added to :attr:`LLMClient.usage` (the current episode; reset with
  :meth:`LLMClient.reset_usage`) and :attr:`LLMClient.total_usage`.
* Prompts are kept inside ``context_window`` by :func:`fit_messages`: the
  pinned head (system prompt and task description) is never dropped; the
  oldest history turns go first, then the oldest text of the newest turn.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import openai

log = logging.getLogger(__name__)

#: Sent when no key is configured: local servers ignore it, the SDK insists on one.
PLACEHOLDER_API_KEY = "not-needed"
TRIMMED_MARK = "[... older text trimmed to fit the context window ...]\n"

ToolMode = Literal["auto", "native", "text"]


class LLMError(RuntimeError):
    """Base class of the client's errors."""


class LLMUnavailableError(LLMError):
    """Every attempt failed with a transient error (5xx, timeout, connection, garbled body)."""


class LLMRequestError(LLMError):
    """The server rejected the request for a reason retrying cannot fix (401, 404, bad request)."""


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class LLMConfig:
    """Where and how to ask the LLM. ``None`` fields are read from the environment."""

    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    temperature: float = 0.2
    #: Completion tokens per request (also reserved out of the context window).
    max_tokens: int = 1024
    #: The model's context window in tokens; prompts are trimmed to fit.
    context_window: int = 32_768
    #: Characters per token of the prompt-size estimate (3.5 is conservative for English and JSON).
    chars_per_token: float = 3.5
    #: Seconds per HTTP request (the SDK's own timeout).
    timeout: float = 120.0
    #: Retries inside the SDK per attempt (it backs off 0.5 s, 1 s, ... itself).
    max_retries: int = 2
    #: Attempts of our own loop around the SDK; together at most attempts * (max_retries + 1) requests.
    attempts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    #: USD per 1M prompt / completion tokens; cost is accounted when either is set.
    price_input_per_1m: float | None = None
    price_output_per_1m: float | None = None
    tool_mode: ToolMode = "auto"
    seed: int | None = None

    def resolved(self) -> LLMConfig:
        """The config with base URL, key and model filled from the environment."""
        model = self.model or os.environ.get("FTDOJO_LLM_MODEL")
        if not model:
            raise LLMRequestError("no LLM model given: pass model=... (CLI --model) or set FTDOJO_LLM_MODEL")
        return replace(
            self,
            base_url=self.base_url or os.environ.get("OPENAI_BASE_URL") or None,
            api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY,
            model=model,
        )


# --------------------------------------------------------------------------- usage
@dataclass
class Usage:
    """Token usage and cost of a series of requests."""

    #: Attempts of our retry loop (each may hide SDK-internal retries, which are not visible here).
    requests: int = 0
    failed_requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Requests whose usage the server did not report (tokens estimated from text).
    estimated_requests: int = 0
    cost_usd: float | None = None
    seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


# --------------------------------------------------------------------------- replies
@dataclass(frozen=True)
class ToolCall:
    """One tool call proposed by the LLM.

    ``arguments`` is the decoded object, or ``None`` when the model's arguments
    were not valid JSON (then ``arguments_error`` says why and ``raw_arguments``
    holds the text). ``source`` is ``"native"`` for a function call and
    ``"text"`` for JSON found in the reply text.
    """

    name: str
    arguments: dict[str, Any] | None
    id: str | None = None
    source: Literal["native", "text"] = "native"
    raw_arguments: str = ""
    arguments_error: str | None = None

    def to_action(self) -> dict[str, Any]:
        """The env action ``{"tool": name, "args": {...}}``."""
        return {"tool": self.name, "args": dict(self.arguments or {})}


@dataclass(frozen=True)
class LLMReply:
    """What one chat completion returned."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    finish_reason: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tool_call(self) -> ToolCall | None:
        """The first tool call (native first, else parsed from text), or None."""
        return self.tool_calls[0] if self.tool_calls else None


# --------------------------------------------------------------------------- text parsing
_FENCE = re.compile(r"```(?:json|JSON|tool_call|tool)?\s*\n?(.*?)```", re.DOTALL)
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _loads_lenient(text: str) -> Any:
    """``json.loads``, then Python-literal syntax (single quotes, True/None) that small models write."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        # literal_eval evaluates literals only (no names, calls or attributes): safe on model text.
        value = ast.literal_eval(re.sub(r"\b(true|false|null)\b",
                                        lambda m: {"true": "True", "false": "False", "null": "None"}[m.group(1)], text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError("not valid JSON") from None
    return value


def iter_json_objects(text: str, limit: int = 20) -> list[Any]:
    """JSON objects found in ``text``: fenced blocks and ``<tool_call>`` tags first, then bare objects.

    Bare objects are taken from every ``{`` not inside an object already found
    to its matching ``}``, so prose around the JSON is ignored.
    """
    found: list[Any] = []
    for pattern in (_TAGGED, _FENCE):
        for match in pattern.finditer(text):
            try:
                found.append(_loads_lenient(match.group(1).strip()))
            except ValueError:
                continue
    i = 0
    while len(found) < limit:
        i = text.find("{", i)
        if i < 0:
            break
        end = _matching_brace(text, i)
        if end is None:
            i += 1
            continue
        try:
            found.append(_loads_lenient(text[i:end + 1]))
        except ValueError:
            i += 1
            continue
        i = end + 1
    return found[:limit]


def _matching_brace(text: str, start: int, max_len: int = 200_000) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``start`` (quotes respected), or None."""
    depth, quote, escaped = 0, "", False
    for j in range(start, min(len(text), start + max_len)):
        c = text[j]
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j
    return None


def _call_from_object(obj: Any, tool_names: Sequence[str] | None) -> ToolCall | None:
    """A :class:`ToolCall` from one decoded object in any of the accepted shapes, else None."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("tool_calls"), list) and obj["tool_calls"]:
        return _call_from_object(obj["tool_calls"][0], tool_names)
    if isinstance(obj.get("function"), dict):
        return _call_from_object(obj["function"], tool_names)
    if isinstance(obj.get("tool"), str):
        name, raw = obj["tool"], obj.get("args", obj.get("arguments", obj.get("parameters", {})))
    elif isinstance(obj.get("name"), str):
        name, raw = obj["name"], obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    elif isinstance(obj.get("action"), str):  # ReAct-style {"action": ..., "action_input": ...}
        name, raw = obj["action"], obj.get("action_input", obj.get("args", {}))
    else:
        return None
    if tool_names is not None and name not in tool_names:
        return None
    return _make_call(name, raw, None, "text")


def _make_call(name: str, raw: Any, call_id: str | None, source: Literal["native", "text"]) -> ToolCall:
    if raw is None or raw == "":
        return ToolCall(name, {}, call_id, source)
    if isinstance(raw, dict):
        return ToolCall(name, raw, call_id, source, raw_arguments=json.dumps(raw, ensure_ascii=False))
    text = str(raw)
    try:
        value = _loads_lenient(text)
    except ValueError:
        return ToolCall(name, None, call_id, source, raw_arguments=text[:2000],
                        arguments_error=f"arguments are not valid JSON: {text[:200]!r}")
    if not isinstance(value, dict):
        return ToolCall(name, None, call_id, source, raw_arguments=text[:2000],
                        arguments_error=f"arguments must be a JSON object, got {type(value).__name__}")
    return ToolCall(name, value, call_id, source, raw_arguments=text[:2000])


def parse_tool_call(text: str, tool_names: Sequence[str] | None = None) -> ToolCall | None:
    """The first tool call written as JSON in ``text``, or None.

    Accepts ``{"tool": n, "args": {...}}``, ``{"name": n, "arguments": {...} or "<json>"}``,
    ``{"function": {...}}``, ``{"tool_calls": [...]}`` and ``{"action": n,
    "action_input": {...}}``, fenced (```json ... ```), in ``<tool_call>`` tags
    or bare within prose. With ``tool_names``, calls to other names are skipped.
    """
    for obj in iter_json_objects(text or ""):
        call = _call_from_object(obj, tool_names)
        if call is not None:
            return call
    return None


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (fenced or bare), for structured replies; None if there is none."""
    for obj in iter_json_objects(text or ""):
        if isinstance(obj, dict):
            return obj
    return None


# --------------------------------------------------------------------------- context window
def estimate_tokens(text: str, chars_per_token: float = 3.5) -> int:
    """A conservative token estimate of ``text`` (no tokenizer: the server's model is unknown here)."""
    return int(math.ceil(len(text) / chars_per_token)) if text else 0


def message_tokens(message: dict[str, Any], chars_per_token: float = 3.5) -> int:
    """Estimated prompt tokens of one chat message, including role and tool-call overhead."""
    size = 4  # role and separators
    size += estimate_tokens(str(message.get("content") or ""), chars_per_token)
    for call in message.get("tool_calls") or ():
        fn = call.get("function", {})
        size += 8 + estimate_tokens(fn.get("name", "") + fn.get("arguments", ""), chars_per_token)
    return size


def _turns(history: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group messages so that an assistant tool call and its tool results are dropped together.

    A ``tool`` message without its assistant call is rejected by OpenAI-style
    servers, so they must never be separated by trimming.
    """
    groups: list[list[dict[str, Any]]] = []
    for msg in history:
        if msg.get("role") == "tool" and groups and any(m.get("tool_calls") for m in groups[-1]):
            groups[-1].append(msg)
        else:
            groups.append([msg])
    return groups


def fit_messages(messages: list[dict[str, Any]], max_tokens: int, *, pinned: int = 2,
                 chars_per_token: float = 3.5) -> list[dict[str, Any]]:
    """Messages trimmed to about ``max_tokens`` prompt tokens.

    The first ``pinned`` messages (system prompt, task description) are kept
    whole. Then whole turns are dropped from the oldest; if the newest turn
    alone is still too long, the start of its text is cut (the newest log lines
    are at the end). The result may exceed ``max_tokens`` only when the pinned
    head alone does.
    """
    head, history = messages[:pinned], messages[pinned:]
    used = sum(message_tokens(m, chars_per_token) for m in head)
    budget = max_tokens - used
    kept: list[list[dict[str, Any]]] = []
    turns = _turns(history)
    for turn in reversed(turns):
        cost = sum(message_tokens(m, chars_per_token) for m in turn)
        if cost <= budget:
            kept.append(turn)
            budget -= cost
            continue
        if not kept:  # the newest turn must survive in some form: cut its oldest text
            kept.append(_cut_turn(turn, budget, chars_per_token))
        break
    out = list(head)
    for turn in reversed(kept):
        out.extend(turn)
    if len(out) < len(messages):
        log.debug("context trimmed: %d of %d messages kept", len(out), len(messages))
    return out


def _cut_turn(turn: list[dict[str, Any]], budget: int, chars_per_token: float) -> list[dict[str, Any]]:
    fixed = sum(message_tokens({**m, "content": ""}, chars_per_token) for m in turn)
    chars = max(200, int((budget - fixed) * chars_per_token) - len(TRIMMED_MARK))
    share = max(100, chars // max(1, len(turn)))
    out = []
    for m in turn:
        content = m.get("content")
        if isinstance(content, str) and len(content) > share:
            m = {**m, "content": TRIMMED_MARK + content[-share:]}
        out.append(m)
    return out


# --------------------------------------------------------------------------- the client
_TOOLS_UNSUPPORTED = re.compile(r"tool[_ ]?choice|tools?\b.*(not supported|unsupported|enable-auto-tool|unknown|unexpected)"
                                r"|function calling", re.IGNORECASE)
_CONTEXT_EXCEEDED = re.compile(r"context (length|window)|maximum context|too many tokens|prompt is too long", re.IGNORECASE)


class LLMClient:
    """Chat completions with tools, retries, context trimming and usage accounting.

    Build from an :class:`LLMConfig` or keyword arguments of it::

        llm = LLMClient(base_url="http://127.0.0.1:8000/v1", model="smollm2")
        reply = llm.chat(messages, tools=ftdojo_gym.tool_schemas())
    """

    def __init__(self, config: LLMConfig | None = None, *, client: openai.OpenAI | None = None, **kwargs: Any):
        self.config = replace(config or LLMConfig(), **kwargs).resolved()
        self._client = client or openai.OpenAI(
            base_url=self.config.base_url, api_key=self.config.api_key,
            timeout=self.config.timeout, max_retries=self.config.max_retries,
        )
        #: "native" or "text"; starts as configured ("auto" -> native until the server refuses tools).
        self.tool_mode: Literal["native", "text"] = "text" if self.config.tool_mode == "text" else "native"
        self.usage = Usage()
        self.total_usage = Usage()
        self.server_model: str | None = None
        self._context_scale = 1.0

    # -- accounting
    def reset_usage(self) -> Usage:
        """Start a new episode's accounting; returns the finished episode's usage."""
        done, self.usage = self.usage, Usage()
        return done

    def _account(self, *, prompt: int = 0, completion: int = 0, estimated: bool = False, failed: bool = False,
                 retry: bool = False, seconds: float = 0.0) -> None:
        cfg = self.config
        for u in (self.usage, self.total_usage):
            u.requests += 1
            u.failed_requests += int(failed)
            u.retries += int(retry)
            u.prompt_tokens += prompt
            u.completion_tokens += completion
            u.estimated_requests += int(estimated and not failed)
            u.seconds += seconds
            if cfg.price_input_per_1m is not None or cfg.price_output_per_1m is not None:
                u.cost_usd = (u.cost_usd or 0.0) + (prompt * (cfg.price_input_per_1m or 0.0)
                                                    + completion * (cfg.price_output_per_1m or 0.0)) / 1e6

    def versions(self) -> dict[str, str]:
        """What to record with a trajectory: the requested and served model, endpoint and SDK."""
        return {
            "llm_model": str(self.config.model),
            "llm_server_model": str(self.server_model or "unknown"),
            "llm_base_url": str(self._client.base_url),
            "openai": openai.__version__,
            "llm_tool_mode": self.tool_mode,
        }

    # -- prompt
    def prompt_budget(self, tools: list[dict[str, Any]] | None) -> int:
        """Prompt tokens available for messages: the window minus completion tokens and the tools JSON."""
        cfg = self.config
        tools_tokens = estimate_tokens(json.dumps(tools), cfg.chars_per_token) if tools else 0
        window = int(cfg.context_window * self._context_scale)
        return max(256, window - cfg.max_tokens - tools_tokens - 64)

    @staticmethod
    def text_mode_instructions(tools: list[dict[str, Any]]) -> str:
        """The tool list for servers without function calling: names, descriptions, argument schemas."""
        lines = ["You call tools by replying with one JSON object and nothing else, e.g.",
                 '```json\n{"tool": "list_sources", "args": {}}\n```', "Available tools:"]
        for t in tools:
            fn = t["function"]
            props = fn.get("parameters", {}).get("properties", {})
            required = set(fn.get("parameters", {}).get("required", []))
            args = ", ".join(f"{k}{'' if k in required else '?'}: {_schema_type(v)}" for k, v in props.items())
            lines.append(f"- {fn['name']}({args}): {fn.get('description', '')}")
        return "\n".join(lines)

    def _prepare(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                 pinned: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        send_tools = tools if tools and self.tool_mode == "native" else None
        msgs = [dict(m) for m in messages]
        if tools and self.tool_mode == "text":
            msgs = _as_text_conversation(msgs)
            extra = self.text_mode_instructions(tools)
            if msgs and msgs[0].get("role") == "system":
                msgs[0]["content"] = f"{msgs[0].get('content') or ''}\n\n{extra}"
            else:
                msgs.insert(0, {"role": "system", "content": extra})
                pinned += 1
        return fit_messages(msgs, self.prompt_budget(send_tools), pinned=pinned,
                            chars_per_token=self.config.chars_per_token), send_tools

    # -- the request
    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, *,
             pinned: int = 2, tool_choice: str = "auto") -> LLMReply:
        """One chat completion. See the module docstring for retries and errors.

        ``messages`` are OpenAI chat messages; the first ``pinned`` are never
        trimmed. With ``tools``, the reply's tool calls are parsed (natively, or
        from its text). Raises :class:`LLMUnavailableError` or :class:`LLMRequestError`.
        """
        cfg = self.config
        last_error: Exception | None = None
        attempt = 0
        while attempt < cfg.attempts:
            attempt += 1
            prompt, send_tools = self._prepare(messages, tools, pinned)
            kwargs: dict[str, Any] = {"model": cfg.model, "messages": prompt, "temperature": cfg.temperature,
                                      "max_tokens": cfg.max_tokens}
            if cfg.seed is not None:
                kwargs["seed"] = cfg.seed
            if send_tools:
                kwargs["tools"] = send_tools
                kwargs["tool_choice"] = tool_choice
            t0 = time.monotonic()
            try:
                response = self._client.chat.completions.create(**kwargs)
                reply = self._reply(response, prompt, tools)
            except openai.BadRequestError as exc:
                self._account(failed=True, retry=attempt > 1, seconds=time.monotonic() - t0)
                message = str(exc)
                if send_tools and self.config.tool_mode == "auto" and _TOOLS_UNSUPPORTED.search(message):
                    log.warning("server rejected tools (%s); switching to JSON-in-text tool calls", message[:200])
                    self.tool_mode = "text"
                    attempt -= 1  # a mode switch is not a failed attempt
                    continue
                if _CONTEXT_EXCEEDED.search(message) and self._context_scale > 0.2:
                    # Our estimate was too generous for this model's tokenizer: shrink and retry.
                    self._context_scale *= 0.7
                    last_error = exc
                    continue
                raise LLMRequestError(f"LLM request rejected: {message[:500]}") from exc
            except (openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError,
                    openai.RateLimitError, openai.APIResponseValidationError, _BadResponseError,
                    json.JSONDecodeError) as exc:
                self._account(failed=True, retry=attempt > 1, seconds=time.monotonic() - t0)
                last_error = exc
                if attempt < cfg.attempts:
                    delay = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** (attempt - 1)) * (0.75 + 0.5 * random.random())
                    log.warning("LLM request failed (%s: %s); retry %d/%d in %.1f s", type(exc).__name__,
                                str(exc)[:200], attempt, cfg.attempts - 1, delay)
                    time.sleep(delay)
                continue
            except openai.APIStatusError as exc:  # 401, 403, 404, 422, ...: retrying cannot help
                self._account(failed=True, retry=attempt > 1, seconds=time.monotonic() - t0)
                raise LLMRequestError(f"LLM request failed with HTTP {exc.status_code}: {str(exc)[:500]}") from exc
            prompt_tokens, completion_tokens, estimated = reply.prompt_tokens, reply.completion_tokens, False
            if not prompt_tokens and not completion_tokens:
                estimated = True
                prompt_tokens = sum(message_tokens(m, cfg.chars_per_token) for m in prompt)
                completion_tokens = estimate_tokens(reply.content + "".join(c.raw_arguments for c in reply.tool_calls),
                                                    cfg.chars_per_token)
                reply = replace(reply, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            self._account(prompt=prompt_tokens, completion=completion_tokens, estimated=estimated,
                          retry=attempt > 1, seconds=time.monotonic() - t0)
            return reply
        raise LLMUnavailableError(f"LLM unavailable after {cfg.attempts} attempts: "
                                  f"{type(last_error).__name__}: {str(last_error)[:300]}")

    def _reply(self, response: Any, prompt: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> LLMReply:
        choices = getattr(response, "choices", None)
        if not choices:
            raise _BadResponseError(f"response has no choices: {str(response)[:200]}")
        choice = choices[0]
        message = getattr(choice, "message", None)
        if message is None:
            raise _BadResponseError("response choice has no message")
        self.server_model = getattr(response, "model", None) or self.server_model
        content = getattr(message, "content", None) or ""
        if not isinstance(content, str):
            content = str(content)
        calls: list[ToolCall] = []
        for tc in getattr(message, "tool_calls", None) or ():
            fn = getattr(tc, "function", None)
            name = getattr(fn, "name", None)
            if isinstance(name, str) and name:
                calls.append(_make_call(name, getattr(fn, "arguments", None), getattr(tc, "id", None), "native"))
        if not calls and tools:
            names = [t["function"]["name"] for t in tools]
            parsed = parse_tool_call(content, names)
            if parsed is not None:
                calls.append(parsed)
        usage = getattr(response, "usage", None)
        return LLMReply(
            content=content, tool_calls=tuple(calls), refusal=getattr(message, "refusal", None),
            finish_reason=getattr(choice, "finish_reason", None), model=getattr(response, "model", None),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )


class _BadResponseError(LLMError):
    """A 200 response without the fields of a chat completion (retried like a 5xx)."""


def _schema_type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "|".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return "|".join(_schema_type(s) for s in schema["anyOf"] if s.get("type") != "null") or "null"
    if schema.get("type") == "array":
        return f"list[{_schema_type(schema.get('items', {}))}]"
    if "$ref" in schema:
        return "object"
    return str(schema.get("type", "any"))


def _as_text_conversation(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite native tool-call turns as plain text, for servers that do not accept them."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            content = m.get("content") or ""
            if parse_tool_call(content) is not None:  # the call was JSON in this text already
                out.append({"role": "assistant", "content": content})
                continue
            calls = [
                json.dumps({"tool": c["function"]["name"], "args": _safe_json(c["function"].get("arguments"))})
                for c in m["tool_calls"]
            ]
            out.append({"role": "assistant", "content": (content + "\n" + "\n".join(calls)).strip()})
        elif m.get("role") == "tool":
            out.append({"role": "user", "content": f"Tool result:\n{m.get('content') or ''}"})
        else:
            out.append(m)
    return out


def _safe_json(text: Any) -> Any:
    if isinstance(text, dict):
        return text
    try:
        return json.loads(text or "{}")
    except (TypeError, json.JSONDecodeError):
        return text


# --------------------------------------------------------------------------- conversation
@dataclass
class Conversation:
    """A chat history whose head (system prompt, task description) is pinned.

    Records tool calls natively (assistant ``tool_calls`` + ``tool`` result) so
    that :class:`LLMClient` can send them as they are or rewrite them as text.
    Only the first tool call of a reply is kept: the env takes one action a step.
    """

    system: str
    task: str
    history: list[dict[str, Any]] = field(default_factory=list)
    _pending_id: str | None = None
    _counter: int = 0

    @property
    def pinned(self) -> int:
        return 2

    def messages(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.task}, *self.history]

    def add_user(self, text: str) -> None:
        self._close_pending("(no result)")
        self.history.append({"role": "user", "content": text})

    def add_assistant_text(self, text: str) -> None:
        self._close_pending("(no result)")
        self.history.append({"role": "assistant", "content": text or ""})

    def add_tool_call(self, reply: LLMReply, call: ToolCall) -> None:
        """Record the assistant's call; the next :meth:`add_result` answers it."""
        self._close_pending("(no result)")
        self._counter += 1
        call_id = call.id or f"call_{self._counter}"
        arguments = call.raw_arguments or json.dumps(call.arguments or {})
        self.history.append({
            "role": "assistant", "content": reply.content or None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": call.name, "arguments": arguments}}],
        })
        self._pending_id = call_id

    def add_result(self, text: str) -> None:
        """The result of the pending tool call (or a user message when none is pending)."""
        if self._pending_id is None:
            self.history.append({"role": "user", "content": text})
            return
        self.history.append({"role": "tool", "tool_call_id": self._pending_id, "content": text})
        self._pending_id = None

    def _close_pending(self, text: str) -> None:
        if self._pending_id is not None:
            self.add_result(text)

"""The tool schema: the single source of truth for the env's actions.

Every tool is a pydantic model of its arguments plus a one-line description.
From :data:`TOOLS` derive

* argument validation (:func:`parse_action`),
* the usage text shown on errors (:func:`usage`),
* the OpenAI function-calling ``tools`` list (:func:`tool_schemas`),
* the Gymnasium action space (:class:`ToolCallSpace`).

An action is ``{"tool": name, "args": {...}}``, the same as a JSON string, or
an OpenAI tool call (``{"type": "function", "function": {"name": ...,
"arguments": "<json>"}}`` or the ``openai`` SDK object with the same fields).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import numpy as np
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ftdojo_gym.rules import MAX_TRAIN_SAMPLES
from ftdojo_gym.training_config import TrainConfig

NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
MAX_ACTION_CHARS = 100_000


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ListSourcesArgs(ToolArgs):
    """List the raw data sources: size, token-length p50/p99 and a first sample of each."""


class InspectArgs(ToolArgs):
    """Show rows of a source or a workspace dataset; without a name, list the workspace datasets and runs."""

    name: str | None = Field(None, description="source or dataset name; omit to list datasets and runs")
    n: int = Field(3, ge=1, le=20, description="rows to show")
    offset: int = Field(0, ge=0, description="index of the first row")


class FetchArgs(ToolArgs):
    """Load a raw source into the workspace as a new dataset (sources themselves are read-only)."""

    source: str = Field(..., description="source name from list_sources")
    output: str | None = Field(None, pattern=NAME_PATTERN, description="name of the new dataset (default: the source name)")
    limit: int | None = Field(None, ge=1, le=1_000_000, description="keep at most this many rows")
    offset: int = Field(0, ge=0, description="skip this many rows first")
    shuffle: bool = Field(False, description="shuffle (with seed) before offset/limit")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="shuffle seed")


QualityRule = Literal["non_empty", "has_final_answer", "ascii_only", "no_url"]
CompareOp = Literal["==", "!=", ">", ">=", "<", "<=", "contains", "not_contains"]


class FilterArgs(ToolArgs):
    """Keep the rows of a dataset that pass every given condition (token length, regex, field value, quality rules, dedupe)."""

    dataset: str = Field(..., description="input dataset")
    output: str | None = Field(None, pattern=NAME_PATTERN, description="name of the result (default: overwrite the input)")
    min_tokens: int | None = Field(None, ge=0, description="minimum tokens over all text fields")
    max_tokens: int | None = Field(None, ge=1, description="maximum tokens over all text fields")
    regex: str | None = Field(None, max_length=500, description="keep rows whose regex_field matches (re.search)")
    regex_field: str | None = Field(None, description="field for regex (default: all text fields joined)")
    field: str | None = Field(None, description="field compared with value")
    op: CompareOp = Field("==", description="comparison for field/value")
    value: str | int | float | bool | None = Field(None, description="value compared with field")
    rules: list[QualityRule] = Field(default_factory=list, description="quality rules every kept row satisfies")
    dedupe: bool = Field(False, description="drop near-duplicates (same text after lower-casing and collapsing whitespace)")
    dedupe_fields: list[str] | None = Field(None, description="fields that define a duplicate (default: all text fields)")


class TransformArgs(ToolArgs):
    """Map a dataset's fields into training examples: prompt and completion from templates such as '{instruction}\\n{input}'."""

    dataset: str = Field(..., description="input dataset")
    prompt_template: str = Field(..., max_length=4000, description="template of the user prompt; {field} inserts a field, {{ }} are literal braces")
    completion_template: str = Field(..., max_length=4000, description="template of the assistant answer")
    output: str | None = Field(None, pattern=NAME_PATTERN, description="name of the result (default: <dataset>_sft)")


class MixComponent(ToolArgs):
    name: str = Field(..., description="dataset name")
    weight: float = Field(1.0, gt=0, le=1000, description="relative weight")


class MixArgs(ToolArgs):
    """Weighted union of datasets, sampled to n rows (oversampling small ones) and shuffled."""

    datasets: list[MixComponent] = Field(..., min_length=1, max_length=20, description="datasets and weights")
    n: int = Field(..., ge=1, le=100_000, description="rows in the result")
    output: str = Field(..., pattern=NAME_PATTERN, description="name of the result")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="sampling seed")


# set_config: every TrainConfig field, optional; unspecified fields keep their value.
SetConfigArgs = create_model(  # type: ignore[call-overload]
    "SetConfigArgs",
    __base__=ToolArgs,
    __doc__="Update the training configuration (unspecified fields keep their current value).",
    **{
        name: (
            (Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation) | None,
            Field(None, description=field.description),
        )
        for name, field in TrainConfig.model_fields.items()
    },
)


class TrainArgs(ToolArgs):
    """Fine-tune the base model on a dataset with prompt/completion fields, using the current config."""

    dataset: str = Field(..., description="training dataset (needs 'prompt' and 'completion' fields)")
    debug: bool = Field(False, description="fail-fast run: about 100 samples, a few steps")
    max_samples: int = Field(MAX_TRAIN_SAMPLES, ge=1, le=MAX_TRAIN_SAMPLES,
                             description=f"use at most this many samples (the cap is {MAX_TRAIN_SAMPLES:,})")


class EvaluateArgs(ToolArgs):
    """Score a run (or 'base') on the visible validation split; returns metrics and up to 10 wrong answers."""

    run: str | None = Field(None, description="run id or 'base' (default: the latest successful run)")
    limit: int | None = Field(None, ge=1, le=100, description="score only the first items of the split (quick check)")


class SubmitArgs(ToolArgs):
    """End the episode: the submitted run is scored on the hidden test split."""

    run: str | None = Field(None, description="run id or 'base' (default: the best validated run)")


#: What a tool does: ``catalog`` reads the sources or workspace, ``data`` writes a
#: dataset, ``config`` changes the training config, ``train`` trains a run,
#: ``evaluate`` scores on the validation split, ``submit`` ends the episode.
ToolKind = Literal["catalog", "data", "config", "train", "evaluate", "submit"]


@dataclass(frozen=True)
class Tool:
    name: str
    args: type[BaseModel]
    kind: ToolKind

    @property
    def description(self) -> str:
        return (self.args.__doc__ or "").strip()


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("list_sources", ListSourcesArgs, "catalog"),
        Tool("inspect", InspectArgs, "catalog"),
        Tool("fetch", FetchArgs, "data"),
        Tool("filter", FilterArgs, "data"),
        Tool("transform", TransformArgs, "data"),
        Tool("mix", MixArgs, "data"),
        Tool("set_config", SetConfigArgs, "config"),
        Tool("train", TrainArgs, "train"),
        Tool("evaluate", EvaluateArgs, "evaluate"),
        Tool("submit", SubmitArgs, "submit"),
    )
}


@dataclass(frozen=True)
class Action:
    """A validated tool call."""

    tool: str
    args: BaseModel

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "args": self.args.model_dump(exclude_defaults=True)}


class ActionError(ValueError):
    """A malformed action; ``tool`` is set when the tool name was recognised."""

    def __init__(self, message: str, tool: str | None = None):
        super().__init__(message)
        self.tool = tool


def tools_of_kind(*kinds: ToolKind) -> tuple[str, ...]:
    """Names of the tools of the given kinds, in schema order."""
    return tuple(name for name, tool in TOOLS.items() if tool.kind in kinds)


def _clean_schema(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _clean_schema(v) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_clean_schema(v) for v in node]
    return node


def tool_schemas() -> list[dict[str, Any]]:
    """The OpenAI function-calling ``tools`` list for every tool."""
    out = []
    for tool in TOOLS.values():
        params = _clean_schema(tool.args.model_json_schema())
        params.pop("description", None)
        params.setdefault("properties", {})
        out.append({"type": "function", "function": {"name": tool.name, "description": tool.description, "parameters": params}})
    return out


def _constraints(field: Any) -> list[Any]:
    """Constraint objects of a field, including those inside Annotated[...] | None."""
    found = list(getattr(field, "metadata", []))
    stack = [getattr(field, "annotation", None)]
    while stack:
        ann = stack.pop()
        found += list(getattr(ann, "__metadata__", ()))
        stack += [a for a in get_args(ann) if a is not None]
    return found


def _type_text(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    if text is None:
        text = str(annotation).replace("typing.", "")
    text = re.sub(r"Annotated\[([^,\[]+), [^\]]*\]", r"\1", text)
    return re.sub(r"ftdojo_gym\.\w+\.", "", text)


def usage(tool: str | None = None) -> str:
    """Usage text of one tool, or the list of all tools."""
    if tool is None or tool not in TOOLS:
        lines = ["Tools (call as {\"tool\": name, \"args\": {...}}):"]
        lines += [f"  {t.name}: {t.description}" for t in TOOLS.values()]
        return "\n".join(lines)
    t = TOOLS[tool]
    lines = [f"usage: {t.name}(" + ", ".join(t.args.model_fields) + ")", f"  {t.description}"]
    for name, field in t.args.model_fields.items():
        req = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        bounds = "".join(
            f", {k} {getattr(m, k)}" for m in _constraints(field) for k in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern") if getattr(m, k, None) is not None
        )
        lines.append(f"  {name}: {_type_text(field.annotation)} ({req}{bounds}) - {field.description or ''}")
    return "\n".join(lines)


def _as_mapping(action: Any) -> tuple[Any, Any]:
    """Return (tool name, raw args) from any accepted action form."""
    if isinstance(action, (bytes, bytearray)):
        action = action.decode("utf-8", errors="replace")
    if isinstance(action, str):
        if len(action) > MAX_ACTION_CHARS:
            raise ActionError(f"action is {len(action)} characters long; the limit is {MAX_ACTION_CHARS}")
        try:
            action = json.loads(action)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ActionError(f"action is not valid JSON: {exc}") from None
    function = getattr(action, "function", None)  # openai SDK tool-call object
    if function is not None and not isinstance(action, dict):
        return getattr(function, "name", None), getattr(function, "arguments", None)
    if not isinstance(action, dict):
        raise ActionError(f"action must be an object with 'tool' and 'args', got {type(action).__name__}")
    if "function" in action and isinstance(action["function"], dict):
        fn = action["function"]
        return fn.get("name"), fn.get("arguments", {})
    unknown = set(action) - {"tool", "args"}
    if unknown:
        raise ActionError(f"unexpected keys {sorted(unknown)} in action; expected 'tool' and 'args'", action.get("tool") if isinstance(action.get("tool"), str) else None)
    return action.get("tool"), action.get("args", {})


def parse_action(action: Any) -> Action:
    """Validate any accepted action form; raises :class:`ActionError` with a precise message."""
    name, raw_args = _as_mapping(action)
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool) and 0 <= int(name) < len(TOOLS):
        name = list(TOOLS)[int(name)]
    if not isinstance(name, str):
        raise ActionError(f"'tool' must be a tool name (string), got {type(name).__name__}")
    if name not in TOOLS:
        import difflib

        close = difflib.get_close_matches(name, list(TOOLS), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ActionError(f"unknown tool {name[:80]!r}{hint}")
    if raw_args is None or raw_args == "":
        raw_args = {}
    if isinstance(raw_args, (str, bytes, bytearray)):
        if len(raw_args) > MAX_ACTION_CHARS:
            raise ActionError(f"args are {len(raw_args)} characters long; the limit is {MAX_ACTION_CHARS}", name)
        try:
            raw_args = json.loads(raw_args)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ActionError(f"args are not valid JSON: {exc}", name) from None
    if not isinstance(raw_args, dict):
        raise ActionError(f"'args' must be an object, got {type(raw_args).__name__}", name)
    try:
        args = TOOLS[name].args.model_validate(raw_args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'args'}: {err['msg']}" for err in exc.errors()[:8]
        )
        raise ActionError(f"invalid arguments for {name}: {problems}", name) from None
    except (RecursionError, TypeError, ValueError) as exc:
        raise ActionError(f"invalid arguments for {name}: {exc}", name) from None
    return Action(name, args)


@dataclass(frozen=True)
class _ConstraintView:
    metadata: tuple


class ToolCallSpace(spaces.Space[dict]):
    """Gymnasium space of tool calls, derived from :data:`TOOLS`.

    ``contains`` is schema validation; ``sample`` draws a tool uniformly and
    arguments of the right types within their bounds (names are random, so
    most sampled calls that refer to data fail cleanly inside the env).
    """

    def __init__(self, seed: int | np.random.Generator | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        try:
            parse_action(x)
        except ActionError:
            return False
        return True

    def _sample_value(self, annotation: Any, field: Any) -> Any:
        rng = self.np_random
        if hasattr(annotation, "__metadata__"):  # Annotated[T, constraints...]
            return self._sample_value(annotation.__origin__, _ConstraintView(annotation.__metadata__))
        args = getattr(annotation, "__args__", ())
        origin = getattr(annotation, "__origin__", None)
        if args and origin is Literal:
            return args[rng.integers(len(args))]
        if args:  # Union / Optional / list
            if origin is list:
                inner = args[0]
                lo_len = next((m.min_length for m in getattr(field, "metadata", []) if getattr(m, "min_length", None)), 0)
                count = int(rng.integers(lo_len, lo_len + 3))
                return [self._sample_value(inner, None) for _ in range(count)]
            options = [a for a in args if a is not type(None)]
            if not options or rng.random() < 0.3:
                return None
            return self._sample_value(options[int(rng.integers(len(options)))], field)
        lo, hi = 0, 50
        for m in getattr(field, "metadata", []) if field is not None else []:
            lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else lo
            hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else hi
        if annotation is bool:
            return bool(rng.integers(2))
        if annotation is int:
            return int(rng.integers(int(lo), int(min(hi, lo + 50)) + 1))
        if annotation is float:
            return float(rng.uniform(max(float(lo), 1e-6), min(float(hi), 1.0)))
        if annotation is str:
            n = int(rng.integers(1, 12))
            return "".join(rng.choice(list(string.ascii_lowercase + "_"), n))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return {k: self._sample_value(f.annotation, f) for k, f in annotation.model_fields.items()}
        return None

    def sample(self, mask: Any = None, probability: Any = None) -> dict:
        names = list(TOOLS)
        name = names[int(self.np_random.integers(len(names)))]
        args = {
            k: v
            for k, f in TOOLS[name].args.model_fields.items()
            if (v := self._sample_value(f.annotation, f)) is not None
        }
        return {"tool": name, "args": args}

    def __repr__(self) -> str:
        return f"ToolCallSpace({', '.join(TOOLS)})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ToolCallSpace)

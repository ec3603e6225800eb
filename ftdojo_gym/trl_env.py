"""An FT-Dojo env as a TRL ``environment_factory``: GRPO trains an LLM agent on FT-Dojo.

TRL's ``GRPOTrainer(environment_factory=...)`` takes a class whose public
methods are the tools the model may call (each with typed arguments and an
``Args:`` docstring, turned into the chat template's tool schema), a
``reset(**kwargs)`` that starts an episode and returns text appended to the
prompt, and an optional ``get_reward()`` read when a rollout ends.
:func:`environment_factory` builds that class from the one tool schema,
:data:`ftdojo_gym.actions.TOOLS`: one method per tool, its parameters and
docstring derived from the tool's argument model, so a new tool reaches TRL
with nothing written twice.

    from trl import GRPOConfig, GRPOTrainer
    from ftdojo_gym.trl_env import environment_factory

    FinanceIQ = environment_factory("FTDojo/FinanceIQ-v0", mode="tabular")
    trainer = GRPOTrainer(model=..., args=GRPOConfig(...), train_dataset=dataset, environment_factory=FinanceIQ)

A tool method returns the env's rendered result and status line (what the
log shows); a failed call returns its error and usage, like the env's log;
a call after the episode ended raises (TRL reports it to the model).
``reset`` returns the task text (the env's opening log). ``get_reward`` is the
env's reward, the submitted run's hidden-test score (``reward="hidden_test"``,
default), or the episode's best validation score (``reward="validation"``, so
the LLM never trains on the hidden test; the hidden-test score is then kept in
:attr:`last_submission` for evaluation). A rollout that ends without a
``submit`` is submitted when its reward is read, so its best validated run
counts, as when a budget runs out. No method imports TRL: this module works
with any trainer that follows the same protocol.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import gymnasium as gym
from pydantic import BaseModel

from ftdojo_gym.actions import TOOLS, Tool
from ftdojo_gym.observations import latest_result, metrics_dict, status_line

REWARDS = ("hidden_test", "validation")
_NO_DEFAULT = inspect.Parameter.empty


def _plain_type(annotation: Any) -> Any:
    """A type hint that ``transformers.utils.get_json_schema`` reads: constraints dropped, models as dicts."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _plain_type(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return dict
    if origin is Literal:
        return annotation
    if origin in (Union, types.UnionType):
        return Union[tuple(_plain_type(a) for a in args)]  # noqa: UP007 - built from a tuple
    if origin is list:
        return list[_plain_type(args[0])] if args else list
    return annotation


def _tool_method(tool: Tool):
    """The method of ``tool``: typed parameters and an ``Args:`` docstring from its argument model."""
    name = tool.name
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    doc_args = []
    for field_name, field in tool.args.model_fields.items():
        hint = _plain_type(field.annotation)
        default = _NO_DEFAULT if field.is_required() else field.get_default(call_default_factory=True)
        params.append(inspect.Parameter(field_name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                        annotation=hint))
        annotations[field_name] = hint
        doc_args.append(f"    {field_name}: {(field.description or field_name).replace(chr(10), ' ')}")
    annotations["return"] = str

    def method(self, **kwargs: Any) -> str:
        return self._call(name, kwargs)

    method.__name__ = method.__qualname__ = name
    method.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    method.__annotations__ = annotations
    method.__doc__ = tool.description + ("\n\nArgs:\n" + "\n".join(doc_args) if doc_args else "") + \
        "\n\nReturns:\n    The result as the env logs it, with the episode's status line."
    return method


class FTDojoToolEnv:
    """Base of the classes :func:`environment_factory` makes (one method per tool is added there)."""

    env_id: typing.ClassVar[str]
    make_kwargs: typing.ClassVar[dict[str, Any]]
    reward_mode: typing.ClassVar[str]
    max_chars: typing.ClassVar[int]

    def __init__(self) -> None:
        self.env = gym.make(self.env_id, **self.make_kwargs)
        self.done = True
        self.reward = 0.0
        self.last_submission: dict[str, Any] | None = None
        self._observation: dict[str, Any] = {}

    def reset(self, **kwargs: Any) -> str:
        """Start an episode; returns the task text. ``seed`` in the dataset row seeds it (other columns are ignored)."""
        seed = kwargs.get("seed")
        self._observation, _ = self.env.reset(seed=int(seed) if seed is not None else None)
        self.done, self.reward, self.last_submission = False, 0.0, None
        return str(self._observation["log"])

    def get_reward(self) -> float:
        """The episode's reward (see the module docstring); submits first when the model did not."""
        if not self.done:
            self._call("submit", {})
        if self.reward_mode == "validation":
            best = metrics_dict(self._observation).get("best_val_score", -1.0)
            return max(0.0, float(best))
        return float(self.reward)

    def _call(self, tool: str, args: dict[str, Any]) -> str:
        if self.done:
            raise RuntimeError("the episode is over (submitted or out of budget); no more tool calls")
        args = {k: v for k, v in args.items() if v is not None}
        self._observation, reward, terminated, truncated, info = self.env.step({"tool": tool, "args": args})
        self.reward += float(reward)
        if terminated or truncated:
            self.done = True
            self.last_submission = info.get("submission")
        result = latest_result(info)
        text = result.render() if result is not None else ""
        if len(text) > self.max_chars:
            text = text[: self.max_chars // 2] + "\n[...]\n" + text[-self.max_chars // 2:]
        return f"{text}\n{status_line(self._observation)}"


def environment_factory(env_id: str, *, reward: str = "hidden_test", max_chars: int = 4000,
                        **make_kwargs: Any) -> type[FTDojoToolEnv]:
    """A TRL ``environment_factory`` class for ``env_id`` (``make_kwargs`` go to ``gym.make``; see the module docstring)."""
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
    task = env_id.split("/")[-1].removesuffix("-v0").replace("-", "")
    namespace: dict[str, Any] = {"env_id": env_id, "make_kwargs": dict(make_kwargs), "reward_mode": reward,
                                 "max_chars": max_chars, "__doc__": f"FT-Dojo {env_id} as a TRL environment: "
                                 "one method per tool (see ftdojo_gym.trl_env)."}
    namespace.update({name: _tool_method(tool) for name, tool in TOOLS.items()})
    return type(f"FTDojo{task}Env", (FTDojoToolEnv,), namespace)

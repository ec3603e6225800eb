"""Running one agent through one env episode, and what agents read from observations.

:func:`run_episode` is the loop every driver uses (the CLI, tests, sweeps):
``env.reset`` -> ``agent.reset(task_info)`` -> ``agent.act`` / ``env.step``
until the episode ends, one :class:`StepRecord` a step. An exception raised by
the agent does not end the episode: it is recorded and replaced by a
``submit`` (the env then scores the best validated run), so a bug costs a
result, never the trajectory.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ftdojo_agents.base import Agent
from ftdojo_gym.observations import budget_dict, latest_result, metrics_dict, status_line
from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.tasks.base import Task

__all__ = ["SUBMIT", "EpisodeResult", "JsonlWriter", "StepRecord", "budget_dict", "clip_middle", "metrics_dict",
           "result_text", "run_episode", "status_line", "task_info"]

SUBMIT: dict[str, Any] = {"tool": "submit", "args": {}}


# --------------------------------------------------------------------------- observations
def result_text(info: dict[str, Any]) -> str:
    """The newest tool result as the env logged it (empty after ``reset``): read from the typed
    record in ``info``, never cut out of the log window."""
    result = latest_result(info)
    return "" if result is None else result.render()


def clip_middle(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters by removing its middle (heads and tails both carry signal)."""
    if len(text) <= limit:
        return text
    half = max(1, (limit - 40) // 2)
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def task_info(env: Any, reset_info: dict[str, Any], observation: dict[str, Any]) -> dict[str, Any]:
    """What ``agent.reset`` receives.

    ``description`` (the env's opening log: task, metric, budget, tools) and
    the public catalogue fields are for every agent. ``clean_sources`` and
    ``expert_template`` (:mod:`ftdojo_gym.recipes`) are the task author's oracle knowledge, meant for the
    scripted Manual SFT expert only; the LLM agents ignore them.
    """
    spec = getattr(env, "spec", None)
    task = getattr(getattr(env, "unwrapped", env), "task", None)
    recipes = task_recipes(task) if isinstance(task, Task) else None
    return {
        "task": reset_info.get("task"),
        "env_id": getattr(spec, "id", None),
        "domain": reset_info.get("domain", ""),
        "metric": reset_info.get("metric", ""),
        "task_version": reset_info.get("task_version", ""),
        "description": observation.get("log", ""),
        "tools": list(reset_info.get("tools", [])),
        "budget": budget_dict(observation),
        "versions": dict(reset_info.get("versions", {})),
        "clean_sources": list(recipes.clean_sources) if recipes else [],
        "expert_template": dict(recipes.expert_template) if recipes else None,
    }


# --------------------------------------------------------------------------- records
def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples, paths and infinities made JSON-safe."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump())
    return str(value)


@dataclass
class StepRecord:
    """One step of a trajectory: the action, what the env answered, and the LLM's usage so far."""

    step: int
    action: Any
    tool: str | None
    ok: bool
    error_class: str | None
    reward: float
    terminated: bool
    truncated: bool
    result: dict[str, Any]
    accounting: dict[str, Any]
    metrics: dict[str, float]
    budget: dict[str, float]
    seconds: float
    agent_seconds: float
    agent_error: str | None = None
    llm_usage: dict[str, Any] | None = None
    agent_state: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({"type": "step", **asdict(self)})


@dataclass
class EpisodeResult:
    """How an episode ended. ``submission`` is the env's submission record (None when interrupted)."""

    steps: int = 0
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    interrupted: bool = False
    submission: dict[str, Any] | None = None
    agent_errors: int = 0
    invalid_actions: int = 0
    seconds: float = 0.0
    llm_usage: dict[str, Any] | None = None
    records: list[StepRecord] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        sub = self.submission or {}
        return to_jsonable({
            "type": "summary", "steps": self.steps, "reward": self.reward, "terminated": self.terminated,
            "truncated": self.truncated, "interrupted": self.interrupted, "agent_errors": self.agent_errors,
            "invalid_actions": self.invalid_actions, "seconds": round(self.seconds, 2),
            "submitted_run": sub.get("run"), "hidden_test_score": sub.get("hidden_test_score"),
            "base_hidden_test_score": sub.get("base_hidden_test_score"),
            "validation_score": sub.get("validation_score"), "tokens_used": sub.get("tokens_used"),
            "llm_usage": self.llm_usage,
        })


def llm_usage_of(agent: Any) -> dict[str, Any] | None:
    """The agent's LLM usage this episode, when it has an LLM client (``agent.llm``)."""
    llm = getattr(agent, "llm", None)
    usage = getattr(llm, "usage", None)
    return usage.to_dict() if usage is not None else None


def llm_versions_of(agent: Any) -> dict[str, str]:
    llm = getattr(agent, "llm", None)
    return llm.versions() if llm is not None and hasattr(llm, "versions") else {}


# --------------------------------------------------------------------------- the loop
def run_episode(
    env: Any,
    agent: Agent,
    *,
    seed: int | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    on_reset: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    max_agent_errors: int = 3,
) -> EpisodeResult:
    """Play one episode of ``agent`` in ``env``; see the module docstring.

    ``on_reset(task_info, reset_info)`` and ``on_step(record)`` are called as
    the episode goes (the CLI writes the trajectory from them). A
    ``KeyboardInterrupt`` propagates after the records so far are returned
    through ``on_step``; the caller decides what to keep.
    """
    start = time.monotonic()
    obs, info = env.reset(seed=seed)
    tinfo = task_info(env, info, obs)
    agent.reset(tinfo)
    if on_reset is not None:
        on_reset(tinfo, info)
    result = EpisodeResult()
    while True:
        t0 = time.monotonic()
        agent_error = None
        try:
            action = agent.act(obs, info)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # an agent bug must not lose the episode: submit what is best so far
            result.agent_errors += 1
            agent_error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
            agent_error += "\n" + traceback.format_exc()[-3000:]
            action = SUBMIT if result.agent_errors >= max_agent_errors else {"tool": "inspect", "args": {}}
        t1 = time.monotonic()
        obs, reward, terminated, truncated, info = env.step(action)
        t2 = time.monotonic()
        result.steps += 1
        result.invalid_actions += int(not info.get("ok", True) and info.get("error_class") is None)
        record = StepRecord(
            step=result.steps, action=_action_json(action), tool=info.get("tool"), ok=bool(info.get("ok")),
            error_class=info.get("error_class"), reward=float(reward), terminated=bool(terminated),
            truncated=bool(truncated), result=_bounded(info.get("result", {})), accounting=info.get("accounting", {}),
            metrics=metrics_dict(obs), budget=budget_dict(obs), seconds=round(t2 - t1, 3),
            agent_seconds=round(t1 - t0, 3), agent_error=agent_error, llm_usage=llm_usage_of(agent),
            agent_state=_agent_state(agent),
        )
        result.records.append(record)
        if on_step is not None:
            on_step(record)
        if terminated or truncated:
            result.reward = float(reward)
            result.terminated, result.truncated = bool(terminated), bool(truncated)
            result.submission = to_jsonable(info.get("submission"))
            break
    result.seconds = time.monotonic() - start
    result.llm_usage = llm_usage_of(agent)
    return result


def _action_json(action: Any) -> Any:
    if isinstance(action, (dict, str)):
        return to_jsonable(action)
    return str(action)[:2000]


def _agent_state(agent: Any) -> dict[str, Any] | None:
    state = getattr(agent, "state", None)
    if callable(state):
        try:
            return to_jsonable(state())
        except Exception:  # diagnostics only
            return None
    return None


def _bounded(result: dict[str, Any], limit: int = 20_000) -> dict[str, Any]:
    """The result record, with over-long fields clipped so a trajectory line stays readable."""
    text = json.dumps(to_jsonable(result), ensure_ascii=False)
    if len(text) <= limit:
        return result
    out: dict[str, Any] = {}
    for k, v in result.items():
        t = json.dumps(to_jsonable(v), ensure_ascii=False)
        out[k] = v if len(t) <= limit // 4 else clip_middle(t, limit // 4)
    return out


class JsonlWriter:
    """A trajectory file: one JSON object a line, flushed (and fsync'ed) as it is written.

    Lines written before a crash or Ctrl-C stay on disk and parse on their own.
    """

    def __init__(self, path: str | Path, mode: str = "w"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = open(self.path, mode, encoding="utf-8")

    def write(self, obj: dict[str, Any]) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path} is closed")
        self._fh.write(json.dumps(to_jsonable(obj), ensure_ascii=False) + "\n")
        self._fh.flush()
        try:
            os.fsync(self._fh.fileno())
        except OSError:
            pass

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

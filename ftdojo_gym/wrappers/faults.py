"""Fault injection: the mistakes an agent makes in its configs and data, at a fixed rate.

:class:`FaultInjection` wraps an FT-Dojo env and, at the start of each
*experiment*, decides with probability ``rate`` to corrupt that experiment
with one fault of ``kinds``. The fault is written into the agent's own action
(the first ``set_config`` for a config fault, the first ``transform`` for a
data fault), as if the agent had got that detail wrong; training then goes
wrong the way it really does: a run with no usable sample fails with a DATA
error, while a learning rate 1000x too high usually does *not* fail -- on
SmolLM2 the loss jumps from 0.8 to 20 in a few steps and the run finishes
with a useless model (a silent fault that only the losses show). A repair
from the agent (a later ``set_config`` or ``transform`` in the same
experiment) passes through unchanged, so a fault costs exactly what finding
and fixing it costs.

An experiment starts with the first data, config or train action after a
successful full (non-debug) training run, or at the start of the episode. The
fault of the *i*-th experiment depends only on ``(seed, i)``: two agents run
with the same seed meet the same faults in the same experiments, which makes
loops comparable (``benchmarks/fail_fast.py``).

What was injected, every run trained while it was in effect (the env's
config still has the faulty value; the training set still has blank answers)
and the first run that failed on it, are kept in
:attr:`FaultInjection.records`, not in ``info``: the agent must find its
faults from the env's feedback alone.

    env = FaultInjection(gym.make("FTDojo/TableBench-v0"), rate=0.3, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from ftdojo_gym.actions import ActionError, parse_action, tools_of_kind


@dataclass(frozen=True)
class Fault:
    """One kind of fault: the tool whose arguments it corrupts and how."""

    name: str
    target: str  # category: "config" or "data"
    tool: str  # the action it rewrites: "set_config" or "transform"
    description: str
    mutate: Callable[[dict[str, Any]], dict[str, Any]]
    #: Whether a ``train`` call with these arguments would train under the fault (env not yet
    #: stepped); reads the env through its public views (``get_wrapper_attr``).
    in_effect: Callable[[Any, dict[str, Any]], bool]


def _blank_training_set(env: Any, train_args: dict[str, Any]) -> bool:
    try:
        rows = env.get_wrapper_attr("workspace").training_rows(train_args["dataset"], 50)
    except Exception:  # no such dataset, not transformed...: the env reports it, no training happens
        return False
    return bool(rows) and all(not r["completion"].strip() for r in rows)


#: The fault kinds. Each reaches the trainer: faults that the tool schemas reject
#: (an unknown LoRA target, a negative rate...) cost no training in any loop and
#: would not tell loops apart.
FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("lr_diverge", "config", "set_config",
              "learning rate 1.0 (1000x the usual LoRA rate): the loss explodes; often the run still finishes",
              lambda a: {**a, "learning_rate": 1.0},
              lambda env, _args: env.get_wrapper_attr("config").learning_rate == 1.0),
        Fault("max_len_too_short", "config", "set_config",
              "max_len 16: every prompt fills the sequence, no completion token is left to train on",
              lambda a: {**a, "max_len": 16},
              lambda env, _args: env.get_wrapper_attr("config").max_len == 16),
        Fault("blank_completions", "data", "transform",
              "the completion template renders blank answers (a field that is empty for every row)",
              lambda a: {**a, "completion_template": " "},
              _blank_training_set),
    )
}

#: Actions that belong to an experiment (the first one after a finished full run starts the next).
EXPERIMENT_TOOLS = frozenset(tools_of_kind("data", "config", "train"))


@dataclass
class FaultRecord:
    """A fault drawn for one experiment, and what became of it."""

    experiment: int
    kind: str
    target: str
    env_step: int | None = None  # env step at which it was written into an action (None: never applicable)
    runs: list[dict[str, Any]] = field(default_factory=list)  # every run trained while it was in effect

    @property
    def _first_failure(self) -> dict[str, Any] | None:
        return next((r for r in self.runs if not r["ok"]), None)

    @property
    def surfaced_in(self) -> str | None:
        """``"debug"`` or ``"full"``: the first run under the fault that failed with an error (None: none did)."""
        run = self._first_failure
        return None if run is None else ("debug" if run["debug"] else "full")

    @property
    def run_id(self) -> str | None:
        run = self._first_failure
        return None if run is None else run["run_id"]

    @property
    def error_class(self) -> str | None:
        run = self._first_failure
        return None if run is None else run["error_class"]

    @property
    def tokens_lost(self) -> int:
        """Tokens trained by the runs under the fault."""
        return sum(r["tokens"] for r in self.runs)

    @property
    def seconds_lost(self) -> float:
        return sum(r["seconds"] for r in self.runs)

    @property
    def reached_full_run(self) -> bool:
        """A full run trained under the fault: it cost a full run (failed, or finished useless)."""
        return any(not r["debug"] for r in self.runs)

    @property
    def caught_by_debug_run(self) -> bool:
        """Only debug runs trained under it: the agent fixed it before paying for a full run."""
        return bool(self.runs) and not self.reached_full_run


class FaultInjection(gym.Wrapper):
    """Inject one fault into a share ``rate`` of experiments (see the module docstring)."""

    def __init__(self, env: gym.Env, rate: float = 0.3, kinds: Sequence[str] | None = None, seed: int = 0):
        super().__init__(env)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        kinds = list(kinds) if kinds is not None else list(FAULTS)
        unknown = [k for k in kinds if k not in FAULTS]
        if unknown or not kinds:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {sorted(FAULTS)}")
        self.rate, self.kinds, self.seed = float(rate), kinds, int(seed)
        self.records: list[FaultRecord] = []
        self._reset_state()

    def _reset_state(self) -> None:
        self.records = []
        self.experiment = 0
        self._steps = 0
        self._new_experiment = True
        self._pending: FaultRecord | None = None  # drawn, not yet written into an action
        self._active: FaultRecord | None = None  # written, experiment not finished

    def fault_for(self, experiment: int) -> str | None:
        """The fault kind of the ``experiment``-th experiment (1-based), or None: a function of (seed, experiment)."""
        rng = np.random.default_rng([self.seed, experiment])
        hit = rng.random() < self.rate
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        return kind if hit else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._reset_state()
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any):
        self._steps += 1
        try:
            parsed = parse_action(action)
        except ActionError:
            return self.env.step(action)  # the env answers with the error and usage
        tool, args = parsed.tool, parsed.to_dict()["args"]
        if self._new_experiment and tool in EXPERIMENT_TOOLS:
            self._new_experiment = False
            self.experiment += 1
            kind = self.fault_for(self.experiment)
            self._active = None
            self._pending = FaultRecord(self.experiment, kind, FAULTS[kind].target) if kind else None
            if self._pending is not None:
                self.records.append(self._pending)
        pending = self._pending
        if pending is not None and FAULTS[pending.kind].tool == tool:
            args = FAULTS[pending.kind].mutate(dict(args))
            pending.env_step = self._steps
            self._pending, self._active = None, pending
            action = {"tool": tool, "args": args}
        elif pending is not None and tool == "train":
            self._pending = None  # the experiment trains without the action this fault needs: not applicable
        under_fault = (tool == "train" and self._active is not None
                       and FAULTS[self._active.kind].in_effect(self.env, args))
        obs, reward, terminated, truncated, info = self.env.step(action)
        if tool == "train":
            self._after_train(args, info, under_fault)
        return obs, reward, terminated, truncated, info

    def _after_train(self, args: dict[str, Any], info: dict[str, Any], under_fault: bool) -> None:
        result = info.get("result") or {}
        debug = bool(args.get("debug"))
        if under_fault and result.get("run_id"):
            self._active.runs.append({
                "run_id": result["run_id"], "debug": debug, "ok": bool(info.get("ok")),
                "error_class": info.get("error_class"), "tokens": int(result.get("train_tokens", 0) or 0),
                "seconds": float(result.get("seconds", 0.0) or 0.0)})
        if info.get("ok") and not debug:  # a full run finished: the experiment is over
            self._new_experiment, self._active = True, None

    def fault_summary(self) -> list[dict[str, Any]]:
        """The records as plain dicts (for JSON), with their derived fields."""
        derived = ("surfaced_in", "run_id", "error_class", "tokens_lost", "seconds_lost", "reached_full_run",
                   "caught_by_debug_run")
        return [{**asdict(r), **{k: getattr(r, k) for k in derived}} for r in self.records]

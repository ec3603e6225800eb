"""The episode's budget: training tokens, wall-clock seconds and env steps, in one place.

Training tokens are the hardware-independent compute budget (like a GPU-hour
budget); the wall-clock limit and the step limit are optional guards. Every
charge and every "is it spent?" question goes through :class:`Budget`.

A run is given the tokens left as its cap and stops after the optimizer step
that reaches it: that step completes, so the budget is overshot by at most one
batch (``batch_size`` sequences of at most ``max_len`` tokens). Tokens trained
by a run that fails, is killed or times out are charged too. Generating and
grading the hidden test split at submission is the env's own cost: it is on
neither the token budget nor the wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

#: ``seconds_left`` without a wall-clock limit: a finite bound (float32's
#: largest value) keeps the observation's Box space finite, which RL libraries
#: and Gymnasium's checker expect; the decoders turn it back into ``math.inf``.
NO_TIME_LIMIT = float(np.finfo(np.float32).max)


@dataclass
class Budget:
    """Limits of one episode and what has been spent of them."""

    tokens: int
    seconds: float | None
    steps: int
    tokens_used: int = 0
    steps_taken: int = 0
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens <= 0:
            raise ValueError(f"token_budget must be positive, got {self.tokens}")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"time_limit_s must be positive (or None for no limit), got {self.seconds}")
        if self.steps <= 0:
            raise ValueError(f"max_episode_steps must be positive, got {self.steps}")

    # -- spending
    def take_step(self) -> None:
        self.steps_taken += 1

    def charge_tokens(self, tokens: int) -> None:
        self.tokens_used += max(0, int(tokens))

    # -- what is left
    @property
    def tokens_left(self) -> int:
        return max(0, self.tokens - self.tokens_used)

    @property
    def steps_left(self) -> int:
        return max(0, self.steps - self.steps_taken)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def seconds_left(self) -> float | None:
        """Seconds of wall-clock time left, or None without a limit."""
        if self.seconds is None:
            return None
        return max(0.0, self.seconds - self.elapsed())

    def timeout_for_agent_work(self) -> float | None:
        """How long the next agent-paid operation (train, evaluate) may run: the time left, at least 1 s."""
        left = self.seconds_left()
        return None if left is None else max(1.0, left)

    def exhausted(self) -> str | None:
        """Which budget is spent (``"training tokens"``, ``"wall-clock time"``, ``"steps"``), or None."""
        if self.tokens_used >= self.tokens:
            return "training tokens"
        if self.seconds is not None and self.elapsed() >= self.seconds:
            return "wall-clock time"
        if self.steps_taken >= self.steps:
            return "steps"
        return None

    def vector(self) -> np.ndarray:
        """The ``budget`` observation: tokens, seconds and steps left."""
        left = self.seconds_left()
        seconds = NO_TIME_LIMIT if left is None else (left if self.steps_taken else float(self.seconds))
        return np.array([self.tokens_left, seconds, self.steps_left], dtype=np.float32)

    def used_fraction_left(self) -> float:
        return max(0.0, 1.0 - self.tokens_used / self.tokens)

    def describe(self) -> str:
        return (f"{self.tokens} training tokens" + (f", {self.seconds:g} s" if self.seconds else "")
                + f", {self.steps} steps")

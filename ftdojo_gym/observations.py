"""What the agent observes, and the decoders agents and wrappers read it with.

An observation is a dict:

* ``log``: the newest ``log_window`` characters of the episode log (the opening
  task description, each tool call as a ``> tool({...})`` line, its rendered
  result, training loss lines), escaped to :data:`LOG_CHARSET`;
* ``metrics``: float32, fields :data:`METRIC_FIELDS`, -1 when unknown;
* ``budget``: float32, fields :data:`BUDGET_FIELDS`.

Decoders: :func:`metrics_dict` and :func:`budget_dict` name the vectors'
entries; :func:`latest_result` rebuilds the typed record of the newest tool
call from ``info``; :func:`status_line` and :func:`show` give readable text.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from ftdojo_gym.budget import NO_TIME_LIMIT
from ftdojo_gym.results import RESULT_TYPES, ToolResult

#: Characters the ``log`` observation may hold; anything else is escaped as ``\\uXXXX``.
LOG_CHARSET = frozenset(string.printable)

#: Fields of the ``metrics`` observation vector, in order. Unknown values are -1.
METRIC_FIELDS: tuple[str, ...] = (
    "best_val_score",  # best validation score of any evaluated run, in [0, 1]
    "last_val_score",  # score of the latest evaluation
    "base_val_score",  # the base model's validation score, once evaluated
    "last_train_loss",  # final training loss of the latest run
    "budget_tokens_left_frac",  # share of the token budget left, in [0, 1]
    "steps_taken",  # env steps so far
    "train_runs_ok",  # runs that finished (including debug runs)
    "train_runs_failed",  # runs that failed with an error class
    "evaluations",  # evaluate calls that produced a score
    "datasets",  # datasets in the workspace
    "last_action_ok",  # 1 if the latest action succeeded, else 0
)

#: Fields of the ``budget`` observation vector. ``seconds_left`` is
#: :data:`NO_TIME_LIMIT` when the episode has no wall-clock limit.
BUDGET_FIELDS: tuple[str, ...] = ("tokens_left", "seconds_left", "steps_left")


#: Line prefix of each tool call in the log.
CALL_MARK = "\n> "


def escape_log(text: str) -> str:
    """Escape characters outside :data:`LOG_CHARSET` so the log fits its Text space."""
    if all(c in LOG_CHARSET for c in text):
        return text
    return "".join(c if c in LOG_CHARSET else c.encode("unicode_escape").decode("ascii") for c in text)


def observation_space(log_window: int) -> spaces.Dict:
    """The env's observation space for a log window of ``log_window`` characters."""
    finite_max = np.finfo(np.float32).max
    return spaces.Dict(
        {
            "log": spaces.Text(max_length=log_window, min_length=0, charset="".join(sorted(LOG_CHARSET))),
            "metrics": spaces.Box(-1.0, finite_max, shape=(len(METRIC_FIELDS),), dtype=np.float32),
            "budget": spaces.Box(0.0, finite_max, shape=(len(BUDGET_FIELDS),), dtype=np.float32),
        }
    )


class EpisodeLog:
    """The episode log: every line in memory (for the window) and appended to ``path`` on disk."""

    def __init__(self, path: Path, window: int) -> None:
        self.path = path
        self.window = window
        self._lines: list[str] = []

    def write(self, text: str) -> None:
        text = escape_log(text)
        self._lines.append(text)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")

    def resume(self) -> None:
        """Take up the log already in ``path`` (a resumed episode)."""
        if self.path.exists():
            self._lines = [self.path.read_text(encoding="utf-8").rstrip("\n")]

    def tail(self) -> str:
        """The newest ``window`` characters."""
        out: list[str] = []
        size = 0
        for line in reversed(self._lines):
            out.append(line)
            size += len(line) + 1
            if size >= self.window:
                break
        return "\n".join(reversed(out))[-self.window:]


# --------------------------------------------------------------------------- decoders
def metrics_dict(observation: dict[str, Any]) -> dict[str, float]:
    """The ``metrics`` vector as ``{field: value}`` (-1 means unknown)."""
    values = np.asarray(observation.get("metrics", [])).tolist()
    return {k: float(v) for k, v in zip(METRIC_FIELDS, values, strict=False)}


def budget_dict(observation: dict[str, Any]) -> dict[str, float]:
    """The ``budget`` vector as ``{field: value}``; no wall-clock limit reads as ``math.inf``."""
    values = np.asarray(observation.get("budget", [])).tolist()
    out = {k: float(v) for k, v in zip(BUDGET_FIELDS, values, strict=False)}
    if out.get("seconds_left", 0.0) >= NO_TIME_LIMIT:
        out["seconds_left"] = math.inf
    return out


def latest_result(info: dict[str, Any]) -> ToolResult | None:
    """The typed result of the newest tool call, rebuilt from ``info`` (None after ``reset``)."""
    kind = info.get("result_type")
    if kind is None:
        return None
    return RESULT_TYPES[kind].model_validate(info["result"])


def status_line(observation: dict[str, Any]) -> str:
    """One line of the numbers an agent needs: scores, loss and budget left."""
    m, b = metrics_dict(observation), budget_dict(observation)

    def pct(v: float) -> str:
        return "n/a" if v < 0 else f"{100 * v:.1f}"

    parts = [f"best val {pct(m.get('best_val_score', -1))}", f"last val {pct(m.get('last_val_score', -1))}",
             f"base val {pct(m.get('base_val_score', -1))}"]
    if m.get("last_train_loss", -1) >= 0:
        parts.append(f"last loss {m['last_train_loss']:.3f}")
    parts.append(f"tokens left {int(b.get('tokens_left', 0))} ({pct(m.get('budget_tokens_left_frac', 0))}%)")
    steps_left = b.get("steps_left", math.inf)
    if math.isfinite(steps_left):
        parts.append(f"steps left {int(steps_left)}")
    seconds_left = b.get("seconds_left", math.inf)
    if math.isfinite(seconds_left):
        parts.append(f"seconds left {int(seconds_left)}")
    return "Status: " + ", ".join(parts)


def format_observation(observation: dict[str, Any], max_chars: int | None = 4000) -> str:
    """A readable text of an observation: the status line, then the log's newest ``max_chars`` characters."""
    log = str(observation.get("log", ""))
    if max_chars is not None and len(log) > max_chars:
        log = "[...]\n" + log[-max_chars:]
    rule = "-" * 72
    return f"{status_line(observation)}\n{rule}\n{log}\n{rule}"


def show(observation: dict[str, Any], max_chars: int | None = 4000) -> None:
    """Print an observation readably (for notebooks and terminals): ``ftdojo_gym.show(obs)``."""
    print(format_observation(observation, max_chars))


def result_types_for(tool: str) -> Iterable[type[ToolResult]]:
    """The result types a tool may return (besides :class:`~ftdojo_gym.results.ErrorResult`)."""
    return [cls for cls in RESULT_TYPES.values() if tool in cls.tools]

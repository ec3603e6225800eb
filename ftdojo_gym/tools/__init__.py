"""The env's tools: one handler per tool of the schema (:data:`ftdojo_gym.actions.TOOLS`).

A handler is ``handler(state, args) -> ToolResult``: it reads and updates the
:class:`~ftdojo_gym.episode.EpisodeState`, and returns a typed result
(:mod:`ftdojo_gym.results`). Problems the agent can fix raise
:class:`~ftdojo_gym.errors.DataError` or come back as an
:class:`~ftdojo_gym.results.ErrorResult`; the env turns both into an error
observation with the tool's usage.

A new tool is a pydantic argument model in :mod:`ftdojo_gym.actions`, a result
type in :mod:`ftdojo_gym.results` and a handler here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ftdojo_gym.episode import EpisodeState
from ftdojo_gym.results import ToolResult
from ftdojo_gym.tools import data, evaluation, training

Handler = Callable[[EpisodeState, Any], ToolResult]

HANDLERS: dict[str, Handler] = {
    "list_sources": data.list_sources,
    "inspect": data.inspect,
    "fetch": data.fetch,
    "filter": data.filter,
    "transform": data.transform,
    "mix": data.mix,
    "set_config": training.set_config,
    "train": training.train,
    "evaluate": evaluation.evaluate,
    "submit": evaluation.submit,
}

__all__ = ["HANDLERS", "Handler"]

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

import json
from collections.abc import Callable
from typing import Any

from ftdojo_gym.actions import ActionError, parse_action, usage
from ftdojo_gym.episode import EpisodeState
from ftdojo_gym.errors import DataError, ErrorClass
from ftdojo_gym.results import ErrorResult, ToolResult
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



def run_tool(state: EpisodeState, action: Any) -> tuple[str | None, ToolResult]:
    """Validate and run one tool call (and log it); every failure becomes an error result.

    Returns the tool's name (``None`` when the action names no known tool) and its result:
    a malformed action an :class:`ErrorResult` with the usage, a :class:`DataError` a DATA
    error, any other exception an ENV error (a bug or a library error must not end the episode)."""
    tool: str | None = None
    try:
        parsed = parse_action(action)
        tool = parsed.tool
        args = json.dumps(parsed.args.model_dump(exclude_defaults=True), ensure_ascii=False)
        state.log.write(f"\n> {tool}({args[:500]})")
        return tool, HANDLERS[tool](state, parsed.args)
    except ActionError as exc:
        state.log.write("\n> invalid action")
        return exc.tool, ErrorResult(error=str(exc), usage=usage(exc.tool))
    except DataError as exc:
        return tool, ErrorResult(error=str(exc), error_class=ErrorClass.DATA, usage=usage(tool))
    except Exception as exc:
        return tool, ErrorResult(error=f"{type(exc).__name__}: {str(exc)[:1000]}", error_class=ErrorClass.ENV)


__all__ = ["HANDLERS", "Handler", "run_tool"]

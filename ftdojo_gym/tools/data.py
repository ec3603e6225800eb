"""Data tools: list and inspect the sources, and build training datasets in the workspace.

Each handler takes the episode state and the validated arguments of its tool
(:mod:`ftdojo_gym.actions`) and returns a typed result
(:mod:`ftdojo_gym.results`); data problems raise
:class:`~ftdojo_gym.errors.DataError`, which the env turns into an error result.
"""

from __future__ import annotations

import json
from typing import Any

from ftdojo_gym.actions import (
    FetchArgs,
    FilterArgs,
    InspectArgs,
    ListSourcesArgs,
    MixArgs,
    TransformArgs,
)
from ftdojo_gym.episode import EpisodeState
from ftdojo_gym.results import DatasetResult, RowsView, SourceCatalog, SourceEntry, WorkspaceView


def list_sources(state: EpisodeState, args: ListSourcesArgs) -> SourceCatalog:
    settings = state.settings
    if settings.source_catalog is None:  # token statistics cost seconds: once per env, sources never change
        descriptions = settings.task.source_descriptions()
        settings.source_catalog = [
            SourceEntry(**state.data.describe(name, ds), description=descriptions.get(name, ""))
            for name, ds in state.data.sources.items()
        ]
    return SourceCatalog(sources=list(settings.source_catalog))


def inspect(state: EpisodeState, args: InspectArgs) -> WorkspaceView | RowsView:
    if args.name is None:
        return WorkspaceView(
            datasets={n: len(d) for n, d in state.data.datasets.items()},
            dataset_fields={n: list(d.features) for n, d in state.data.datasets.items()},
            runs=list(state.runs.values()),
            config=state.config.model_dump(),
        )
    ds = state.data.get(args.name)
    end = min(len(ds), args.offset + args.n)
    rows = [ds[i] for i in range(min(args.offset, len(ds)), end)]
    return RowsView(name=args.name, rows=rows, total=len(ds), offset=args.offset, fields=list(ds.features))


def fetch(state: EpisodeState, args: FetchArgs) -> DatasetResult:
    lineage = [{"fetch": args.model_dump(exclude={"output"})}]
    ds = state.data.fetch(args.source, args.output, args.limit, args.offset, args.shuffle, args.seed,
                          memo_key=_memo_key(lineage))
    state.lineage[args.output or args.source] = lineage
    return DatasetResult(tool="fetch", dataset=args.output or args.source, rows=len(ds), source=args.source)


def filter(state: EpisodeState, args: FilterArgs) -> DatasetResult:  # noqa: A001 - the tool's name
    op = {"filter": args.model_dump(exclude={"dataset", "output"})}
    lineage = _derived(state, args.dataset, op)
    ds, dropped = state.data.filter(
        args.dataset, args.output, min_tokens=args.min_tokens, max_tokens=args.max_tokens, regex=args.regex,
        regex_field=args.regex_field, field=args.field, op=args.op, value=args.value, rules=args.rules,
        dedupe=args.dedupe, dedupe_fields=args.dedupe_fields, memo_key=_memo_key(lineage),
    )
    state.lineage[args.output or args.dataset] = lineage or [op]
    return DatasetResult(tool="filter", dataset=args.output or args.dataset, rows=len(ds), source=args.dataset,
                         dropped=dropped)


def transform(state: EpisodeState, args: TransformArgs) -> DatasetResult:
    op = {"transform": args.model_dump(exclude={"dataset", "output"})}
    lineage = _derived(state, args.dataset, op)
    ds = state.data.transform(args.dataset, args.prompt_template, args.completion_template, args.output,
                              memo_key=_memo_key(lineage))
    state.lineage[args.output or f"{args.dataset}_sft"] = lineage or [op]
    first = ds[0]
    return DatasetResult(tool="transform", dataset=args.output or f"{args.dataset}_sft", rows=len(ds),
                         source=args.dataset, first_prompt=first["prompt"][:400],
                         first_completion=first["completion"][:200])


def mix(state: EpisodeState, args: MixArgs) -> DatasetResult:
    lineage = [{"mix": {"parts": [[state.lineage.get(c.name, []), c.weight] for c in args.datasets],
                        "n": args.n, "seed": args.seed}}]
    known = all(c.name in state.lineage for c in args.datasets)
    ds = state.data.mix([(c.name, c.weight) for c in args.datasets], args.n, args.output, args.seed,
                        memo_key=_memo_key(lineage) if known else None)
    state.lineage[args.output] = lineage
    return DatasetResult(tool="mix", dataset=args.output, rows=len(ds), source=", ".join(c.name for c in args.datasets),
                         components=len(args.datasets))


def _derived(state: EpisodeState, source: str, op: dict) -> list[Any] | None:
    """The lineage of ``source`` after ``op`` (the lineage names a dataset by how it was made); None when
    ``source`` has none recorded (its result is then recorded as ``[op]`` and never memoised)."""
    return [*state.lineage[source], op] if source in state.lineage else None


def _memo_key(lineage: list[Any] | None) -> str | None:
    """The data memo's key of a dataset made by ``lineage``: the same lineage gives the same rows."""
    return None if lineage is None else json.dumps(lineage, sort_keys=True, ensure_ascii=False, default=str)

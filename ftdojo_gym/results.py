"""Typed results of the env's tools: what one tool call produced.

Every tool handler returns one of these records. The env writes
``record.render()`` into the episode log and ``record.model_dump()`` into
``info["result"]`` (with ``info["result_type"]`` naming the class), so agents,
wrappers and benchmarks read fields of a typed record, never log text:

    from ftdojo_gym.observations import latest_result
    result = latest_result(info)            # e.g. a RunResult
    if isinstance(result, RunResult) and result.ok: ...

A record's ``render()`` is exactly the text the env logged for it, so an LLM
agent can show its model the newest result without cutting the log window.
Nothing here holds a hidden-test item: submissions carry scores only.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ftdojo_gym.errors import ErrorClass


class ToolResult(BaseModel):
    """Base of every tool result. ``ok`` is False for errors; ``error_class`` says which kind."""

    model_config = ConfigDict(extra="forbid")

    #: tools whose results this type describes (documentation and decoding)
    tools: ClassVar[tuple[str, ...]] = ()

    @property
    def ok(self) -> bool:
        return True

    def failure(self) -> ErrorClass | None:
        """The error class when the call failed (None when it succeeded or the action was malformed)."""
        return None

    def render(self) -> str:
        """The log text of this result."""
        raise NotImplementedError


class ErrorResult(ToolResult):
    """A call that did nothing: an invalid action, a data error, an unexpected failure.

    ``error_class`` is None for a malformed action (the agent's call could not be
    read), else DATA, CONFIG or ENV. ``usage`` is the tool's usage text."""

    error: str
    error_class: ErrorClass | None = None
    usage: str = ""
    #: the run the call was about (evaluate, submit), when known
    run: str | None = None

    @property
    def ok(self) -> bool:
        return False

    def failure(self) -> ErrorClass | None:
        return self.error_class

    def render(self) -> str:
        head = f"ERROR ({self.error_class.value}): " if self.error_class else "ERROR: "
        return head + self.error + (f"\n{self.usage}" if self.usage else "")


class SourceEntry(BaseModel):
    """Catalogue entry of one raw source (shape and a first sample; never its hidden value)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    rows: int
    fields: list[str]
    tokens_p50: int
    tokens_p99: int
    first_sample: dict[str, Any]
    description: str = ""


class SourceCatalog(ToolResult):
    tools: ClassVar[tuple[str, ...]] = ("list_sources",)

    sources: list[SourceEntry]

    def render(self) -> str:
        lines = ["Sources (read-only; fetch one to work on it):"]
        if not self.sources:
            lines.append("- none: this task's data has no training source (evaluation only)")
        for e in self.sources:
            sample = json.dumps(e.first_sample, ensure_ascii=False)[:600]
            lines.append(
                f"- {e.name}: {e.rows} rows, fields {e.fields}, tokens p50 {e.tokens_p50} / p99 {e.tokens_p99}. "
                f"{e.description}\n  first sample: {sample}"
            )
        return "\n".join(lines)


class RunFields(BaseModel):
    """The fields of a training run (shared by :class:`RunRecord` and :class:`RunResult`)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    dataset: str
    config: dict[str, Any]
    debug: bool
    status: str  # "ok", "stopped_budget" or "error"
    error_class: ErrorClass | None = None
    train_tokens: int = 0
    seconds: float = 0.0
    final_loss: float | None = None
    model_dir: str | None = None
    samples: int = 0
    #: validation score on the whole validation split, once evaluated
    val_score: float | None = None
    #: the run's key in the outcome cache (None when the cache is off or the run is not cacheable)
    cache_key: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "error"


class RunRecord(RunFields):
    """One training run of the episode (debug or full), finished or failed."""


class WorkspaceView(ToolResult):
    """``inspect`` without a name: the datasets, the runs and the current config."""

    tools: ClassVar[tuple[str, ...]] = ("inspect",)

    datasets: dict[str, int]
    dataset_fields: dict[str, list[str]] = Field(default_factory=dict)
    runs: list[RunRecord]
    config: dict[str, Any]

    def render(self) -> str:
        ds_lines = [f"- {n}: {rows} rows, fields {self.dataset_fields.get(n, [])}" for n, rows in self.datasets.items()]
        run_lines = [
            f"- {r.run_id}: {'debug ' if r.debug else ''}{r.status}{' ' + r.error_class.value if r.error_class else ''}, "
            f"dataset {r.dataset}, {r.train_tokens} tokens, loss {r.final_loss}, val {r.val_score}"
            for r in self.runs
        ]
        text = "Datasets:\n" + ("\n".join(ds_lines) or "  none") + "\nRuns:\n" + ("\n".join(run_lines) or "  none")
        return text + "\nConfig: " + json.dumps(self.config)


class RowsView(ToolResult):
    """``inspect`` of a source or dataset: some of its rows."""

    tools: ClassVar[tuple[str, ...]] = ("inspect",)

    name: str
    rows: list[dict[str, Any]]
    total: int
    offset: int = 0
    fields: list[str] = Field(default_factory=list)

    def render(self) -> str:
        return f"{self.name}: {self.total} rows, fields {self.fields}\n" + "\n".join(
            f"[{self.offset + i}] " + json.dumps(r, ensure_ascii=False)[:1500] for i, r in enumerate(self.rows)
        )


class DatasetResult(ToolResult):
    """A dataset written into the workspace by ``fetch``, ``filter``, ``transform`` or ``mix``."""

    tools: ClassVar[tuple[str, ...]] = ("fetch", "filter", "transform", "mix")

    tool: str
    dataset: str
    rows: int
    #: the input dataset or source
    source: str = ""
    #: rows dropped (filter)
    dropped: int | None = None
    #: datasets mixed (mix)
    components: int | None = None
    #: the first prompt and completion (transform)
    first_prompt: str | None = None
    first_completion: str | None = None

    def render(self) -> str:
        if self.tool == "fetch":
            return f"Fetched {self.rows} rows of {self.source} into dataset {self.dataset!r}."
        if self.tool == "filter":
            before = self.rows + (self.dropped or 0)
            return (f"Filtered {self.source}: kept {self.rows} of {before} rows (dropped {self.dropped}) "
                    f"-> {self.dataset!r}.")
        if self.tool == "transform":
            return (f"Transformed {self.source} into {self.rows} prompt/completion rows -> {self.dataset!r}.\n"
                    f"  first prompt: {(self.first_prompt or '')[:400]!r}\n"
                    f"  first completion: {(self.first_completion or '')[:200]!r}")
        return f"Mixed {self.components} datasets into {self.rows} rows -> {self.dataset!r}."


class ConfigResult(ToolResult):
    tools: ClassVar[tuple[str, ...]] = ("set_config",)

    config: dict[str, Any]

    def render(self) -> str:
        return "Config: " + json.dumps(self.config)


def format_losses(points: list) -> str:
    """``[[step, loss], ...]`` as ``[0.812, 0.403]``."""
    out = []
    for p in points:
        loss = p[1] if isinstance(p, (list, tuple)) else p.get("loss") if isinstance(p, dict) else p
        out.append(f"{loss:.3f}" if isinstance(loss, (int, float)) else str(loss))
    return "[" + ", ".join(out) + "]"


class RunResult(ToolResult, RunFields):
    """A training run: the run's fields plus its loss curve (head and tail), warnings and, on failure, the error."""

    tools: ClassVar[tuple[str, ...]] = ("train",)

    steps: int = 0
    loss_head: list[list[float]] = Field(default_factory=list)
    loss_tail: list[list[float]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: str = ""
    traceback: str = ""
    tokens_left: int = 0
    #: replayed from the outcome cache (trained before with the same rows, config, model and task)
    cached: bool = False
    versions: dict[str, str] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "error"

    def failure(self) -> ErrorClass | None:
        return self.error_class if not self.ok else None

    def record(self) -> RunRecord:
        """The run's entry in the episode's run registry."""
        return RunRecord(**{k: getattr(self, k) for k in RunFields.model_fields})

    def render(self) -> str:
        r = self
        if not r.ok:
            return (f"Run {r.run_id} FAILED ({r.error_class.value if r.error_class else 'ENV'}): {self.error}\n"
                    f"Loss head {self.loss_head}, tail {self.loss_tail}\nTraceback (first):\n{self.traceback[:4000]}")
        stopped = " (stopped: token budget reached)" if r.status == "stopped_budget" else ""
        stopped += " (replayed from the outcome cache)" if self.cached else ""
        warn = ("\nWarnings: " + " | ".join(w[:200] for w in self.warnings[:5])) if self.warnings else ""
        return (f"Run {r.run_id} finished{stopped}: {self.steps} steps, {r.train_tokens} tokens, final loss {r.final_loss}, "
                f"loss head {format_losses(self.loss_head)} tail {format_losses(self.loss_tail)}. "
                f"Budget left: {self.tokens_left} tokens.{warn}")


class WrongAnswer(BaseModel):
    """A validation item the run got (partly) wrong: shown to the agent to diagnose."""

    model_config = ConfigDict(extra="forbid")

    id: str
    subset: str
    prompt: str
    reference: str
    output: str
    score: float


class EvaluationResult(ToolResult):
    """A validation score: the split's metric, per subset, and up to 10 wrong answers."""

    tools: ClassVar[tuple[str, ...]] = ("evaluate",)

    run: str
    score: float
    subsets: dict[str, float]
    n: int
    wrong_answers: list[WrongAnswer] = Field(default_factory=list)
    seconds: float = 0.0
    #: the outputs came from the outcome cache (generated before for the same run and split)
    cached: bool = False

    def render(self) -> str:
        lines = [f"Validation score of {self.run}: {100 * self.score:.1f} on {self.n} items ("
                 + ", ".join(f"{k} {100 * v:.1f}" for k, v in self.subsets.items()) + ")"
                 + (" (outputs replayed from the outcome cache)" if self.cached else "")]
        for w in self.wrong_answers:
            lines.append(f"  wrong [{w.subset}] {w.id}: expected {w.reference[:120]!r}, got {w.output[:200]!r}")
        return "\n".join(lines)


class SubmissionResult(ToolResult):
    """The end of an episode: the submitted run's hidden-test score (and the base model's)."""

    tools: ClassVar[tuple[str, ...]] = ("submit",)

    run: str
    hidden_test_score: float
    hidden_test_subsets: dict[str, float]
    base_hidden_test_score: float
    validation_score: float | None
    tokens_used: int
    #: True when the env submitted on its own because a budget ran out
    automatic: bool = False
    versions: dict[str, str] = Field(default_factory=dict)

    def render(self) -> str:
        return (f"Submitted {self.run}: hidden-test score {100 * self.hidden_test_score:.1f} "
                f"(base model {100 * self.base_hidden_test_score:.1f}). Episode over.")


#: Every result type by class name, for :func:`ftdojo_gym.observations.latest_result`.
RESULT_TYPES: dict[str, type[ToolResult]] = {
    cls.__name__: cls
    for cls in (ErrorResult, SourceCatalog, WorkspaceView, RowsView, DatasetResult, ConfigResult, RunResult,
                EvaluationResult, SubmissionResult)
}

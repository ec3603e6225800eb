"""Data operations of an episode, on ``datasets``.

:class:`DataWorkspace` holds the read-only raw sources of a task and the
agent's own datasets, and implements the data tools (fetch, filter, transform,
mix). Every derived dataset is also written, atomically, as JSON lines under
``<workdir>/datasets/`` so that an agent (or a human) can read it and a run can
be reproduced from the files.

A :class:`DataMemo` (one per env) remembers the result of each operation by
the lineage of the dataset it makes: the same lineage gives the same rows, so
an operation repeated in the env (the same recipe in a later experiment or
episode) takes its rows and their JSON-lines text from the memo instead of
recomputing them.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
import tempfile
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import regex as regex_engine
from datasets import Dataset, concatenate_datasets
from datasets.utils.logging import disable_progress_bar

from ftdojo_gym.errors import DataError
from ftdojo_gym.rules import MAX_TRAIN_SAMPLES

# Data ops here are small and many; per-op progress bars would flood the terminal.
disable_progress_bar()

#: Seconds all regex searches of one ``filter`` call may take together. Agent-written
#: patterns can backtrack catastrophically (``(a|aa)+$``: the cost doubles every few
#: characters); the ``regex`` engine's own timeout stops a search mid-way.
REGEX_TIMEOUT_S = 1.0
#: Seconds one data operation (filter, transform, mix) may take before it fails
#: with a DATA error: no tool call can stall the episode.
DATA_OP_TIMEOUT_S = 30.0

_TEMPLATE_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Deadline:
    """A time bound for one data operation; :meth:`check` raises :class:`DataError` once it has passed."""

    def __init__(self, what: str, seconds: float | None = None) -> None:
        self.what = what
        self.seconds = DATA_OP_TIMEOUT_S if seconds is None else seconds
        self.end = time.monotonic() + self.seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise DataError(f"{self.what} took longer than {self.seconds:g} s and was stopped; "
                            "work on fewer rows or a simpler condition")


def text_fields(ds: Dataset) -> list[str]:
    return [name for name, feat in ds.features.items() if getattr(feat, "dtype", None) in ("string", "large_string")]


def render_template(template: str, row: dict[str, Any]) -> str:
    """Fill ``{field}`` placeholders from ``row``; ``{{``/``}}`` are literal braces.

    Only bare field names are allowed (no attribute or index access), so a
    template cannot reach into Python objects.
    """

    def sub(match: re.Match) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1).strip()
        if name not in row:
            raise DataError(f"template field {{{name}}} is not a field of the dataset (fields: {', '.join(row)})")
        value = row[name]
        return "" if value is None else str(value)

    return _TEMPLATE_FIELD.sub(sub, template)


def _normalise(text: str) -> str:
    # Mutation testing: the joiner and the case direction (lower/upper) give the same duplicates, so
    # their mutants are equivalent (no observable change); excluded.
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())  # pragma: no mutate


def _compare(left: Any, op: str, right: Any) -> bool:
    if op in ("contains", "not_contains"):
        found = str(right) in str(left)
        return found if op == "contains" else not found
    if isinstance(right, (int, float)) and not isinstance(right, bool):
        try:
            left = float(left)
        except (TypeError, ValueError):
            return False
        if math.isnan(left):
            return False
    elif isinstance(right, str):
        left = "" if left is None else str(left)
    try:  # only the asked operator: one that cannot compare the pair (None > None) must not spoil ==
        return bool(_COMPARISONS[op](left, right))
    except TypeError:
        return False


_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}


_RULES: dict[str, Callable[[list[str]], bool]] = {
    "non_empty": lambda texts: all(t.strip() for t in texts),
    "has_final_answer": lambda texts: any("final answer:" in t.lower() for t in texts),
    "ascii_only": lambda texts: all(t.isascii() for t in texts),
    "no_url": lambda texts: not any(re.search(r"https?://|www\.", t) for t in texts),
}


class DataMemo:
    """Results of data operations by a key that determines them (the lineage of the dataset they make).

    Kept for an env's life (its sources and tokenizer never change); the least
    recently used of at most ``max_entries`` results are kept: ``(Dataset, its
    JSON-lines text, extra)``, or a run's training rows. A ``datasets`` Dataset
    is immutable, so one result can back datasets of several episodes."""

    def __init__(self, max_entries: int = 128) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Any, str, Any]] = OrderedDict()

    def get(self, key: str) -> tuple[Any, str, Any] | None:
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
        return hit

    def put(self, key: str, value: tuple[Any, str, Any]) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class DataWorkspace:
    """Sources (read-only) and datasets (the agent's) of one episode.

    The data operations take an optional ``memo_key``, a key that determines
    their result (the tools pass the result's lineage); with a ``memo``, an
    operation whose key was computed before returns the remembered result."""

    def __init__(self, sources: dict[str, Dataset], token_counter: Any, workdir: Path, memo: DataMemo | None = None):
        self.sources = sources
        self.datasets: dict[str, Dataset] = {}
        self._tok = token_counter
        self.workdir = Path(workdir)
        self.memo = memo
        self._memo_keys: dict[str, str] = {}  # dataset name -> the memo key of its rows

    # ---- lookups -------------------------------------------------------
    def get(self, name: str) -> Dataset:
        if name in self.datasets:
            return self.datasets[name]
        if name in self.sources:
            return self.sources[name]
        raise DataError(
            f"no dataset or source named {name[:80]!r}; datasets: {sorted(self.datasets) or 'none'}; "
            f"sources: {sorted(self.sources)}"
        )

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            hint = " (it is a source: fetch it first)" if name in self.sources else ""
            raise DataError(f"no dataset named {name[:80]!r}{hint}; datasets: {sorted(self.datasets) or 'none'}")
        return self.datasets[name]

    def token_lengths(self, ds: Dataset, fields: list[str] | None = None) -> np.ndarray:
        fields = fields or text_fields(ds)
        if not len(ds) or not fields:
            return np.zeros(len(ds), dtype=np.int64)
        texts = ["\n".join(str(row[f] or "") for f in fields) for row in ds.select_columns(fields)]
        return np.array([len(e.ids) for e in self._tok.encode_batch(texts)], dtype=np.int64)

    def describe(self, name: str, ds: Dataset, sample_chars: int = 400) -> dict[str, Any]:
        lengths = self.token_lengths(ds.select(range(min(len(ds), 500))))
        first = {k: (v[:sample_chars] + "..." if isinstance(v, str) and len(v) > sample_chars else v) for k, v in ds[0].items()} if len(ds) else {}
        return {
            "name": name,
            "rows": len(ds),
            "fields": list(ds.features),
            "tokens_p50": int(np.percentile(lengths, 50)) if len(lengths) else 0,
            "tokens_p99": int(np.percentile(lengths, 99)) if len(lengths) else 0,
            "first_sample": first,
        }

    # ---- writes ---------------------------------------------------------
    def _store(self, name: str, ds: Dataset, memo_key: str | None = None, extra: Any = None) -> Dataset:
        if len(ds) == 0:
            raise DataError(f"the result {name!r} would be empty; nothing was stored (loosen the conditions)")
        self.datasets[name] = ds
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ds)
        atomic_write_text(self.workdir / "datasets" / f"{name}.jsonl", lines)
        self._memo_keys.pop(name, None)
        if memo_key is not None and self.memo is not None:
            self.memo.put(memo_key, (ds, lines, extra))
            self._memo_keys[name] = memo_key
        return ds

    def _recall(self, name: str, memo_key: str | None) -> tuple[Dataset, Any] | None:
        """Store the remembered result of ``memo_key`` as ``name`` (rows and file); None when there is none."""
        hit = self.memo.get(memo_key) if memo_key is not None and self.memo is not None else None
        if hit is None:
            return None
        ds, lines, extra = hit
        self.datasets[name] = ds
        atomic_write_text(self.workdir / "datasets" / f"{name}.jsonl", lines)
        self._memo_keys[name] = memo_key
        return ds, extra

    def fetch(self, source: str, output: str | None, limit: int | None, offset: int, shuffle: bool, seed: int,
              memo_key: str | None = None) -> Dataset:
        if source not in self.sources:
            raise DataError(f"no source named {source[:80]!r}; sources: {sorted(self.sources)}")
        if (hit := self._recall(output or source, memo_key)) is not None:
            return hit[0]
        ds = self.sources[source]
        if shuffle:
            ds = ds.shuffle(seed=seed)
        end = len(ds) if limit is None else min(len(ds), offset + limit)
        if offset >= len(ds):
            raise DataError(f"offset {offset} is past the end of {source!r} ({len(ds)} rows)")
        ds = ds.select(range(offset, end)).flatten_indices()
        return self._store(output or source, ds, memo_key)

    def filter(self, dataset: str, output: str | None, *, min_tokens=None, max_tokens=None, regex=None,
               regex_field=None, field=None, op="==", value=None, rules=(), dedupe=False,
               dedupe_fields=None, memo_key: str | None = None) -> tuple[Dataset, int]:
        ds = self.dataset(dataset)
        if (hit := self._recall(output or dataset, memo_key)) is not None:
            return hit
        fields = text_fields(ds)
        for f in [regex_field, field, *(dedupe_fields or [])]:
            if f is not None and f not in ds.features:
                raise DataError(f"field {f[:80]!r} is not in {dataset!r} (fields: {', '.join(ds.features)})")
        if field is not None and value is None and op not in ("==", "!="):
            raise DataError("a field condition needs a value")
        keep = np.ones(len(ds), dtype=bool)
        if min_tokens is not None or max_tokens is not None:
            lengths = self.token_lengths(ds)
            if min_tokens is not None:
                keep &= lengths >= min_tokens
            if max_tokens is not None:
                keep &= lengths <= max_tokens
        deadline = Deadline(f"filter of {dataset!r}")
        if regex is not None:
            try:
                pattern = regex_engine.compile(regex)
            except (regex_engine.error, OverflowError, RecursionError, ValueError) as exc:
                raise DataError(f"invalid regex {regex[:80]!r}: {exc}") from None
            cols = [regex_field] if regex_field else fields
            regex_deadline = Deadline(f"the regex {regex[:80]!r} (catastrophic backtracking?)", REGEX_TIMEOUT_S)
            for i, row in enumerate(ds.select_columns(cols)):
                if keep[i]:
                    text = "\n".join(str(row[c] or "") for c in cols)
                    try:
                        keep[i] = pattern.search(text, timeout=max(0.01, regex_deadline.left())) is not None
                    except TimeoutError:
                        regex_deadline.end = 0.0
                    regex_deadline.check()
        if field is not None:
            for i, v in enumerate(ds[field]):
                if keep[i]:
                    keep[i] = _compare(v, op, value)
                    deadline.check()
        if rules:
            for i, row in enumerate(ds.select_columns(fields)):
                if keep[i]:
                    texts = [str(row[c] or "") for c in fields]
                    keep[i] = all(_RULES[r](texts) for r in rules)
                    deadline.check()
        if dedupe:
            cols = dedupe_fields or fields
            seen: set[str] = set()
            for i, row in enumerate(ds.select_columns(cols)):
                if keep[i]:
                    key = "\x1f".join(_normalise(str(row[c] or "")) for c in cols)
                    keep[i] = key not in seen
                    seen.add(key)
                    deadline.check()
        kept = np.flatnonzero(keep)
        result = ds.select(kept).flatten_indices()
        dropped = len(ds) - len(kept)
        return self._store(output or dataset, result, memo_key, dropped), dropped

    def transform(self, dataset: str, prompt_template: str, completion_template: str, output: str | None,
                  memo_key: str | None = None) -> Dataset:
        ds = self.dataset(dataset)
        if (hit := self._recall(output or f"{dataset}_sft", memo_key)) is not None:
            return hit[0]
        if not len(ds):
            raise DataError(f"{dataset!r} is empty")
        # Fail fast on the first row, with the field list, before mapping everything.
        render_template(prompt_template, ds[0])
        render_template(completion_template, ds[0])
        deadline = Deadline(f"transform of {dataset!r}")

        def render(row: dict[str, Any]) -> dict[str, str]:
            deadline.check()
            return {"prompt": render_template(prompt_template, row), "completion": render_template(completion_template, row)}

        # The two cache flags only keep ``datasets`` off its disk cache, which in-memory datasets
        # (all of ours) do not have: their mutants are equivalent; excluded from mutation testing.
        result = ds.map(
            render,
            remove_columns=list(ds.features),
            load_from_cache_file=False,  # pragma: no mutate
            keep_in_memory=True,  # pragma: no mutate
        )
        return self._store(output or f"{dataset}_sft", result, memo_key)

    def mix(self, components: list[tuple[str, float]], n: int, output: str, seed: int,
            memo_key: str | None = None) -> Dataset:
        parts = [(self.dataset(name), weight) for name, weight in components]
        if (hit := self._recall(output, memo_key)) is not None:
            return hit[0]
        common = set(parts[0][0].features)
        for ds, _ in parts[1:]:
            common &= set(ds.features)
        if not common:
            raise DataError("the datasets share no field; transform them to prompt/completion first")
        cols = [c for c in parts[0][0].features if c in common]
        total = sum(w for _, w in parts)
        counts = [int(round(n * w / total)) for _, w in parts]
        counts[-1] += n - sum(counts)
        rng = np.random.default_rng(seed)
        chosen = []
        # counts is built from parts: the lengths always match and `strict` changes nothing (its
        # mutants are equivalent; excluded from mutation testing)
        for (ds, _), count in zip(parts, counts, strict=False):  # pragma: no mutate
            if count <= 0 or not len(ds):
                continue
            ds = ds.select_columns(cols)
            reps = -(-count // len(ds))  # ceil: oversample small datasets
            idx = np.concatenate([rng.permutation(len(ds)) for _ in range(reps)])[:count]
            chosen.append(ds.select(idx))
        if not chosen:
            raise DataError("the mix is empty")
        result = concatenate_datasets(chosen).shuffle(seed=seed).flatten_indices()
        return self._store(output, result, memo_key)

    def training_rows(self, name: str, max_samples: int) -> list[dict[str, str]]:
        """Rows ``{prompt, completion}`` for a run, capped at ``min(max_samples, MAX_TRAIN_SAMPLES)``."""
        ds = self.dataset(name)
        missing = {"prompt", "completion"} - set(ds.features)
        if missing:
            raise DataError(
                f"{name!r} lacks {sorted(missing)}; map its fields with transform(prompt_template=..., completion_template=...)"
            )
        n = min(len(ds), max_samples, MAX_TRAIN_SAMPLES)
        key = self._memo_keys.get(name)
        remembered = self.memo.get(f"rows:{n}:{key}") if key is not None and self.memo is not None else None
        if remembered is not None:
            return [dict(r) for r in remembered[0]]
        rows = [{"prompt": str(r["prompt"] or ""), "completion": str(r["completion"] or "")} for r in ds.select(range(n))]
        if key is not None and self.memo is not None:
            self.memo.put(f"rows:{n}:{key}", (rows, "", None))
        return [dict(r) for r in rows]

"""Shipped tables of real outcomes over a recipe grid: the env's tabular mode.

Like NAS-Bench-201 for architecture search, a table holds what real training
gave for every recipe of a grid (:mod:`ftdojo_gym.recipe_grid`), so that an RL
policy can run thousands of episodes in seconds: ``gym.make(id,
mode="tabular")`` serves ``train``, ``evaluate`` and ``submit`` only from the
table; data tools still run for real (they are cheap) so that the training
rows and config hash to the table's keys. A recipe outside the table is an
error that names the nearest entries, never a guess.

File format (JSON lines, written by ``benchmarks/build_outcome_table.py``):

* line 1, the manifest: ``{"kind": "manifest", "format": 1, "task", "task_version",
  "data_seed", "base_model", "base_model_fingerprint", "eval_limit", "grid": {...},
  "grader": <hash of the task's grading code, :mod:`ftdojo_gym.tasks.fingerprint`>, "versions": {...}, "base":
  {"validation": {"score", "subsets"}, "hidden_test": {"score", "subsets"}}}``;
* one line per recipe: ``{"kind": "recipe", "recipe": {factor: value}, "key": <run key,
  libraries left out>, "lineage": <the data operations>, "config": {...}, "train":
  {tokens, seconds, loss curve, ...}, "validation": {"score", "subsets", "n"},
  "hidden_test": {"score", "subsets", "n"}}``.

The ``fingerprint`` of a table (a hash of its manifest and records) is checked
at load against the ``<name>.sha256`` file beside it; a table whose task
version, data seed, split size or grader differ from the env's is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ftdojo_gym.tasks.base import Task
from ftdojo_gym.tasks.fingerprint import grader_fingerprint

FORMAT = 1
#: The generation precision of a table whose manifest does not say (built before it was recorded).
UNRECORDED_EVAL_PRECISION = "fp32"
#: The training path's revision (``sft.TRAIN_PATH_REVISION``) of a table whose manifest does not
#: say (built before it was recorded).
UNRECORDED_TRAIN_PATH = 1
#: ``model_dir`` of a run served from a table (it has no weights).
TABLE_MODEL_PREFIX = "outcome-table:"
#: Folder of the tables shipped with the package.
SHIPPED = "ftdojo_gym.outcome_tables"


class OutcomeTableError(ValueError):
    """A table that cannot be used: missing, corrupt, or built for another task, split or grader."""


def fingerprint_of(lines: list[str]) -> str:
    return hashlib.sha256("".join(line.strip() + "\n" for line in lines if line.strip()).encode()).hexdigest()


@dataclass(frozen=True)
class TableEntry:
    recipe: dict[str, Any]
    key: str
    lineage: list[Any]
    config: dict[str, Any]
    train: dict[str, Any]
    validation: dict[str, Any]
    hidden_test: dict[str, Any]


class OutcomeTable:
    """A loaded, checked outcome table."""

    def __init__(self, manifest: Mapping[str, Any], entries: list[TableEntry], path: Path | None = None) -> None:
        self.manifest = dict(manifest)
        self.entries = entries
        self.path = path
        self._by_key = {e.key: e for e in entries}

    @classmethod
    def load(cls, path: str | Path, *, check_fingerprint: bool = True) -> OutcomeTable:
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise OutcomeTableError(f"cannot read the outcome table {path}: {exc}") from None
        if check_fingerprint:
            sha = path.with_name(path.name + ".sha256")
            if not sha.is_file():
                raise OutcomeTableError(f"{path} has no fingerprint file {sha.name}")
            if sha.read_text().split()[0] != fingerprint_of(lines):
                raise OutcomeTableError(f"{path} does not match its fingerprint {sha.name}: it was changed or is corrupt")
        records = []
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise OutcomeTableError(f"{path}:{n} is not JSON: {exc}") from None
        if not records or records[0].get("kind") != "manifest" or records[0].get("format") != FORMAT:
            raise OutcomeTableError(f"{path} does not start with a format-{FORMAT} manifest")
        entries = [TableEntry(r["recipe"], r["key"], r["lineage"], r["config"], r["train"], r["validation"],
                              r["hidden_test"]) for r in records[1:] if r.get("kind") == "recipe"]
        return cls(records[0], entries, path)

    @classmethod
    def shipped(cls, task_name: str) -> OutcomeTable:
        """The table shipped with the package for ``task_name``."""
        file = resources.files(SHIPPED) / f"{task_name}.jsonl"
        if not file.is_file():
            available = sorted(p.name.removesuffix(".jsonl") for p in resources.files(SHIPPED).iterdir()
                               if p.name.endswith(".jsonl"))
            raise OutcomeTableError(f"no outcome table ships for {task_name}; tables: {available}. Build one with "
                                    "python -m ftdojo_benchmarks.build_outcome_table")
        return cls.load(Path(str(file)))

    @property
    def eval_precision(self) -> str:
        """The generation precision its evaluations ran in (tables built before it was recorded: fp32)."""
        return str(self.manifest.get("eval_precision", UNRECORDED_EVAL_PRECISION))

    def check_for(self, task: Task, data_seed: int, validation_items: int, base_model_fingerprint: str) -> None:
        """Refuse a table built for another task version, data seed, split size, base model or grader."""
        m = self.manifest
        wanted = {"task": task.name, "task_version": task.version, "data_seed": data_seed,
                  "eval_limit": validation_items, "base_model_fingerprint": base_model_fingerprint,
                  "grader": grader_fingerprint(task)}
        wrong = {k: (m.get(k), v) for k, v in wanted.items() if m.get(k) != v}
        if wrong:
            detail = "; ".join(f"{k}: table {a!r}, env {b!r}" for k, (a, b) in wrong.items())
            raise OutcomeTableError(f"the outcome table {self.path} was built for other settings ({detail}); "
                                    "rebuild it or make the env with the table's settings")

    def get(self, key: str) -> TableEntry | None:
        return self._by_key.get(key)

    def nearest(self, lineage: list[Any], config: Mapping[str, Any], k: int = 3) -> list[TableEntry]:
        """The ``k`` entries closest to a request: fewest differing config fields and data operations."""

        def distance(e: TableEntry) -> int:
            config_diff = sum(e.config.get(f) != v for f, v in config.items()) + sum(f not in config for f in e.config)
            ops_a = {json.dumps(op, sort_keys=True) for op in _flatten(e.lineage)}
            ops_b = {json.dumps(op, sort_keys=True) for op in _flatten(lineage)}
            return config_diff + len(ops_a ^ ops_b)

        return sorted(self.entries, key=distance)[:k]

    @property
    def grid_size(self) -> int:
        """How many recipes the table's grid has (a complete table has an entry for each)."""
        from ftdojo_gym.recipe_grid import RecipeGrid  # the grid module imports the tasks' recipes

        return len(RecipeGrid.from_dict(self.manifest["grid"]))

    @property
    def complete(self) -> bool:
        """Whether every recipe of the grid has its outcome (a table still being built has not)."""
        return len({json.dumps(e.recipe, sort_keys=True) for e in self.entries}) >= self.grid_size

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[TableEntry]:
        return iter(self.entries)


def _flatten(lineage: Any) -> Iterator[Any]:
    """The data operations of a lineage, mixes opened up."""
    for op in lineage or []:
        if isinstance(op, Mapping) and "mix" in op:
            for part, _weight in op["mix"]["parts"]:
                yield from _flatten(part)
            yield {"mix": {k: v for k, v in op["mix"].items() if k != "parts"}}
        else:
            yield op

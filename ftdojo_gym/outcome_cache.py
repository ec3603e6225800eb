"""The outcome cache: real training and evaluation results, replayed instead of recomputed.

A run's outcome depends only on what went into it: the training rows, the
config (seed included), the base model, the task (name, version, data seed)
and the libraries that train. :func:`run_key` hashes exactly those; an entry
holds the run's train result (tokens, seconds, loss curve, the LoRA adapter's
files) and, per evaluated split, the generated outputs and scores (scores only
for the hidden test split). A hit replays the result without training or
generation and is charged the same training tokens as the original run.

Storage is one SQLite file in WAL mode (safe for several env processes at
once). Every entry carries a checksum of its content; a corrupt entry (or one
written by another cache format) is ignored, never served, and deleted.
:func:`export_entries` writes entries to a JSON-lines file and
:meth:`OutcomeCache.merge` adds such a file (or another cache) to this one, so
caches can be shared and combined.

The cache lives in ``$FTDOJO_CACHE`` (never in the agent's workspace); no tool
reads it. Hidden-test outputs are never stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftdojo_gym import versions
from ftdojo_gym.model_process.resident import resolve_precision
from ftdojo_gym.model_process.sft import TRAIN_PATH_REVISION
from ftdojo_gym.models import cache_dir

#: Bump when the meaning of keys or entries changes: older entries are then ignored.
FORMAT = 1
#: Libraries whose versions shape a training outcome (they are part of every key).
_SHAPING_LIBRARIES = ("torch", "transformers", "peft", "trl")
#: Largest adapter stored with a run (a LoRA adapter of a 135M model is a few MB; full weights are not stored).
MAX_ADAPTER_BYTES = 64 * 1024**2
#: Runs kept decoded in memory after their checksum was verified (a warm hit then skips hashing megabytes).
_VERIFIED_RUNS = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY, format INTEGER NOT NULL, result TEXT NOT NULL, adapter BLOB,
    checksum TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    run_key TEXT NOT NULL, split TEXT NOT NULL, format INTEGER NOT NULL, value TEXT NOT NULL,
    checksum TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (run_key, split));
"""


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _run_checksum(result: str, adapter: bytes | None) -> str:
    """``_digest(result, adapter.hex())``, computed without building the JSON of a hex string of the
    adapter (megabytes: most of a cache hit's time). The value is the same, so entries stay valid."""
    if not adapter:
        return _digest(result, None)
    h = hashlib.sha256()
    h.update(b"[" + json.dumps(result, ensure_ascii=False).encode() + b', "')
    h.update(binascii.hexlify(adapter))  # hex digits need no JSON escaping
    h.update(b'"]')
    return h.hexdigest()


def run_key(*, rows: Sequence[Mapping[str, str]], config: Mapping[str, Any], debug: bool, base_model: str,
            task: str, task_version: str, data_seed: int, libraries: bool = True) -> str:
    """The key of a training run: a hash of everything that determines its outcome.

    With ``libraries`` (the default) the key holds the versions of the libraries that
    shape a run, :data:`~ftdojo_gym.model_process.sft.TRAIN_PATH_REVISION` and the
    precision training runs in on this machine (bf16 autocast or fp32, see
    :func:`~ftdojo_gym.model_process.resident.resolve_precision`): a run cached on a
    machine with fast bf16 is not served on one that trains in fp32.
    ``libraries=False`` leaves them out: the key of a
    shipped outcome table (:mod:`ftdojo_gym.outcome_table`), whose outcomes were
    measured once with the versions its manifest records."""
    libs = versions.library_versions()
    shaping: Any = "table"
    if libraries:  # the training path's revision too: a change of numerics is a change of outcome
        shaping = {**{k: libs.get(k) for k in _SHAPING_LIBRARIES}, "train_path": TRAIN_PATH_REVISION,
                   "precision": resolve_precision("auto")}
    return _digest("run", FORMAT, list(rows), dict(config), debug, base_model, task, task_version, data_seed, shaping)


def split_key(name: str, items: Iterable[Any], max_new_tokens: Sequence[int]) -> str:
    """The identity of an evaluated split: its name, items (ids and prompts) and generation limits."""
    return f"{name}:" + _digest([(it.id, it.prompt, it.reference) for it in items], list(max_new_tokens))[:32]


@dataclass(frozen=True)
class CachedRun:
    """A training outcome from the cache: the train result's fields and the adapter's files."""

    result: dict[str, Any]
    adapter: dict[str, bytes] | None


class OutcomeCache:
    """A persistent store of run and evaluation outcomes (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self.hits = 0
        self.misses = 0
        # Runs this process verified and decoded: served again only while the stored bytes are identical.
        self._verified: OrderedDict[str, tuple[str, bytes | None, CachedRun]] = OrderedDict()

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    # -- runs
    def get_run(self, key: str) -> CachedRun | None:
        row = self._connect().execute(
            "SELECT format, result, adapter, checksum FROM runs WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        fmt, result, adapter, checksum = row
        known = self._verified.get(key)
        if fmt == FORMAT and known is not None and known[0] == result and known[1] == adapter:
            self.hits += 1  # the same bytes as an entry checked before: its checksum holds
            self._verified.move_to_end(key)
            run = known[2]
            return CachedRun(dict(run.result), dict(run.adapter) if run.adapter is not None else None)
        if fmt != FORMAT or checksum != _run_checksum(result, adapter):
            self._drop("runs", "key = ?", (key,))
            self.misses += 1
            return None
        self.hits += 1
        files = {k: base64.b64decode(v) for k, v in json.loads(adapter).items()} if adapter else None
        run = CachedRun(json.loads(result), files)
        self._verified[key] = (result, adapter, run)
        while len(self._verified) > _VERIFIED_RUNS:
            self._verified.popitem(last=False)
        return CachedRun(dict(run.result), dict(files) if files is not None else None)

    def put_run(self, key: str, result: Mapping[str, Any], adapter_dir: Path | None) -> None:
        text = json.dumps(dict(result), sort_keys=True, default=str)
        blob = _adapter_blob(adapter_dir)
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                       (key, FORMAT, text, blob, _run_checksum(text, blob), time.time()))

    # -- evaluations
    def get_evaluation(self, key: str, split: str) -> dict[str, Any] | None:
        row = self._connect().execute(
            "SELECT format, value, checksum FROM evaluations WHERE run_key = ? AND split = ?", (key, split)).fetchone()
        if row is None:
            self.misses += 1
            return None
        fmt, value, checksum = row
        if fmt != FORMAT or checksum != _digest(value):
            self._drop("evaluations", "run_key = ? AND split = ?", (key, split))
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(value)

    def put_evaluation(self, key: str, split: str, value: Mapping[str, Any]) -> None:
        if split.startswith("hidden_test") and "outputs" in value:
            raise ValueError("hidden-test outputs are never stored")
        text = json.dumps(dict(value), sort_keys=True, default=str)
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?, ?)",
                       (key, split, FORMAT, text, _digest(text), time.time()))

    def _drop(self, table: str, where: str, args: tuple) -> None:
        with self._connect() as db:
            db.execute(f"DELETE FROM {table} WHERE {where}", args)  # noqa: S608 - fixed table names

    # -- sharing
    def entries(self) -> Iterator[dict[str, Any]]:
        """Every valid entry as a JSON-able record (runs, then evaluations)."""
        db = self._connect()
        for key, fmt, result, adapter, checksum, created in db.execute("SELECT * FROM runs"):
            if fmt == FORMAT and checksum == _run_checksum(result, adapter):
                yield {"kind": "run", "key": key, "result": json.loads(result),
                       "adapter": adapter.decode() if adapter else None, "created": created}
        for run, split, fmt, value, checksum, created in db.execute("SELECT * FROM evaluations"):
            if fmt == FORMAT and checksum == _digest(value):
                yield {"kind": "evaluation", "key": run, "split": split, "value": json.loads(value), "created": created}

    def merge(self, source: str | Path) -> int:
        """Add the entries of a JSON-lines export or another cache file; returns how many were added.

        Entries already here are kept (an outcome does not change); malformed lines are skipped."""
        source = Path(source)
        records = OutcomeCache(source).entries() if source.suffix in (".sqlite", ".db") else _read_export(source)
        added = 0
        with self._connect() as db:
            for rec in records:
                if rec.get("kind") == "run":
                    text = json.dumps(rec["result"], sort_keys=True, default=str)
                    blob = rec["adapter"].encode() if rec.get("adapter") else None
                    cur = db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                                     (rec["key"], FORMAT, text, blob, _run_checksum(text, blob),
                                      rec.get("created", time.time())))
                elif rec.get("kind") == "evaluation":
                    if str(rec["split"]).startswith("hidden_test") and "outputs" in rec["value"]:
                        continue
                    text = json.dumps(rec["value"], sort_keys=True, default=str)
                    cur = db.execute("INSERT OR IGNORE INTO evaluations VALUES (?, ?, ?, ?, ?, ?)",
                                     (rec["key"], rec["split"], FORMAT, text, _digest(text),
                                      rec.get("created", time.time())))
                else:
                    continue
                added += cur.rowcount
        return added

    def stats(self) -> dict[str, int]:
        db = self._connect()
        return {"runs": db.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
                "evaluations": db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0],
                "hits": self.hits, "misses": self.misses}


def export_entries(cache: OutcomeCache, path: str | Path) -> int:
    """Write every valid entry of ``cache`` to a JSON-lines file (atomically); returns the count."""
    from ftdojo_gym.data.workspace import atomic_write_text

    lines = [json.dumps(rec, sort_keys=True) for rec in cache.entries()]
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)


def _read_export(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("key"), str):
            yield rec


def _adapter_blob(adapter_dir: Path | None) -> bytes | None:
    """The files of a LoRA adapter folder as JSON of base64 (None for no adapter or full weights)."""
    if adapter_dir is None or not (adapter_dir / "adapter_config.json").is_file():
        return None
    files = [p for p in sorted(adapter_dir.iterdir()) if p.is_file()]
    if sum(p.stat().st_size for p in files) > MAX_ADAPTER_BYTES:
        return None
    return json.dumps({p.name: base64.b64encode(p.read_bytes()).decode() for p in files}).encode()


def restore_adapter(files: Mapping[str, bytes], folder: Path) -> Path:
    """Write a cached adapter's files into ``folder`` (for generation); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad file name in a cached adapter: {name!r}")
        (folder / name).write_bytes(data)
    return folder


def open_cache(option: bool | str | Path | None) -> OutcomeCache | None:
    """The outcome cache an env uses: ``True`` the shared one in the cache folder, a path that file,
    ``False`` none; ``None`` (the default) the shared one unless ``FTDOJO_OUTCOME_CACHE=0``."""
    if option is None:
        option = os.environ.get("FTDOJO_OUTCOME_CACHE", "1") not in ("0", "false", "no", "off")
    if option is False:
        return None
    return OutcomeCache(cache_dir() / "outcomes.sqlite" if option is True else Path(option))

"""The task contract: what every FT-Dojo task provides to the env.

A task is data plus a grader. It builds, deterministically from a seed,

* a raw-data repository: named sources (``datasets.Dataset``) of mixed quality
  that the agent may fetch, filter, transform and mix;
* a list of evaluation items, which :meth:`Task.split` divides into the
  visible validation split and the hidden test split;
* a grader that scores a model output for an item in ``[0, 1]``.

A task declares its sources as data (:class:`SourceSpec`: name, description,
how the rows are built); the base class derives :meth:`Task.sources` and
:meth:`Task.source_descriptions` from the declarations. The benchmark's
scripted recipes are not part of the task: see :mod:`ftdojo_gym.recipes`.

Tasks never see models or training: the env sends prompts to the worker and
grades the outputs it gets back, in the env process.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

_Item = TypeVar("_Item")

#: The most items in each of the validation and hidden test splits.
MAX_SPLIT_ITEMS = 100


@dataclass(frozen=True)
class EvalItem:
    """One evaluation question. ``prompt`` is the user message given to the model."""

    id: str
    subset: str
    prompt: str
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)


#: ``build(task, rng, held_out)``: the rows of one source, deterministic in ``rng``.
SourceBuilder = Callable[[Any, random.Random, Any], list[dict[str, Any]]]


@dataclass(frozen=True)
class SourceSpec:
    """The declaration of one raw source.

    ``description`` is the neutral catalogue line shown to the agent (never the
    source's hidden value). ``build(task, rng, held_out)`` returns the source's
    rows (dicts with the same keys), drawing only from ``rng``; ``held_out`` is
    :meth:`Task.held_out` of the seed, what no row may contain.
    """

    name: str
    description: str
    build: SourceBuilder


class Task:
    """Base class of a task. Subclasses set the class attributes and implement the methods.

    Offline sources are declared in :attr:`source_specs` (in order) and built by
    :meth:`sources`; a task with another kind of repository overrides
    :meth:`sources` and :meth:`source_descriptions` instead.
    """

    name: str = ""
    version: str = "0"
    domain: str = ""
    metric: str = ""
    #: Default max new tokens when generating answers for this task.
    max_new_tokens: int = 64
    #: Default compute budget in training tokens.
    default_token_budget: int = 200_000
    #: The offline sources, in catalogue order.
    source_specs: tuple[SourceSpec, ...] = ()
    #: The ``random.Random`` seed string of each source, formatted with ``seed``
    #: (the data seed) and ``source`` (its name): every source has its own stream.
    source_seed: str = "{seed}/{source}"
    #: Public datasets behind ``data="hub"``: ``{key: HubDataset(...)}``. Empty when
    #: the task has no real-data loader.
    hub_datasets: dict[str, HubDataset] = {}
    #: Whether grading runs model-written code (in :mod:`ftdojo_gym.grading.sandbox`);
    #: the env warns at construction when that sandbox is unavailable.
    executes_model_output: bool = False

    def sources(self, seed: int) -> dict[str, Any]:
        """Raw sources ``{name: datasets.Dataset}``, deterministic in ``seed``: each
        declared :attr:`source_specs` built with its own seeded ``random.Random``
        and :meth:`held_out` of ``seed``."""
        from datasets import Dataset

        if not self.source_specs:
            raise NotImplementedError(f"{type(self).__name__} declares no source_specs")
        held_out = self.held_out(seed)
        return {
            spec.name: Dataset.from_list(
                spec.build(self, random.Random(self.source_seed.format(seed=seed, source=spec.name)), held_out))
            for spec in self.source_specs
        }

    def source_descriptions(self) -> dict[str, str]:
        """One neutral line per source, shown in the catalogue."""
        return {spec.name: spec.description for spec in self.source_specs}

    def held_out(self, seed: int) -> Any:
        """What no source of ``seed`` may contain (the evaluation questions, tables,
        molecules... in whatever form the builders test), passed to every builder."""
        return None

    def eval_items(self, seed: int) -> list[EvalItem]:
        """All evaluation items, deterministic in ``seed``."""
        raise NotImplementedError

    def split(self, items: Sequence[_Item], limit: int | None = None) -> tuple[list[_Item], list[_Item]]:
        """``(validation, hidden_test)``: ``k`` items each, ``k = min(MAX_SPLIT_ITEMS,
        len(items) // 2)``, at most ``limit`` when given; the two never overlap and
        both keep the input order.

        Stratified by ``item.subset`` (items without one form a single subset):
        each split takes from every subset its share of ``k`` in proportion to
        the subset's size (largest remainders; every subset of two or more items
        gets at least one item in each split when ``k`` allows), validation the
        *first* items of each subset and the hidden test the *last* ones. So any
        input order and any subset sizes give both splits every subset in
        proportion. With one subset this is simply the first and the last ``k``
        items; on subsets interleaved round-robin with equal sizes (the offline
        tasks) it is exactly that too, since a tied remainder goes to the subset
        whose next item lies nearest the split's end of the list."""
        k = min(MAX_SPLIT_ITEMS, len(items) // 2)
        if limit is not None:
            k = min(k, limit)
        groups: dict[Any, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(getattr(item, "subset", None), []).append(index)
        validation = _stratified_take(groups, k, len(items), from_end=False, caps={})
        taken = {s: sum(i in validation for i in idx) for s, idx in groups.items()}
        hidden = _stratified_take(groups, k, len(items), from_end=True,
                                  caps={s: len(idx) - taken[s] for s, idx in groups.items()})
        return [items[i] for i in sorted(validation)], [items[i] for i in sorted(hidden)]

    def max_new_tokens_for(self, item: EvalItem) -> int:
        return self.max_new_tokens

    def grade(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        """Score each output against its item, in ``[0, 1]``."""
        raise NotImplementedError

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[float], outputs: Sequence[str]) -> float:
        """The split score from the per-item scores of :meth:`grade`: their mean.

        Override for a split-level metric (e.g. macro-F1 over classes); the env
        calls it for the whole split and for each subset."""
        return float(sum(scores) / len(scores)) if scores else 0.0

    def extra_scores(self, items: Sequence[EvalItem], scores: Sequence[float], outputs: Sequence[str]
                     ) -> dict[str, float]:
        """Secondary split-level metrics, reported next to the per-subset scores
        under ``"<subset>/<metric>"`` keys (e.g. ``"DataAnalysis/Mix"``); they never
        enter the score. Default: none."""
        return {}

    def map_hub_records(self, records: Mapping[str, Any]) -> tuple[dict[str, Any], list[EvalItem]]:
        """Map the real datasets (``{key: datasets.Dataset}`` for the keys of
        :attr:`hub_datasets`) to ``(sources, eval_items)`` in this task's schema:
        the same source fields and the same ``EvalItem.meta`` keys the grader reads."""
        raise NotImplementedError(f"{self.name} has no real-data loader")

    def with_data(self, data: str) -> Task:
        """This task on other data: ``"offline"`` (itself), ``"hub"`` (the public
        datasets through ``datasets.load_dataset``) or a local folder holding one
        file per :attr:`hub_datasets` key in the real schema (``<key>.jsonl``,
        ``.json``, ``.csv`` or ``.parquet``), e.g. a copy downloaded elsewhere."""
        if data == "offline":
            return self
        if not self.hub_datasets:
            raise ValueError(f"{self.name} has no real-data loader; use data='offline'")
        records = {key: load_dataset_records(spec, data, key) for key, spec in self.hub_datasets.items()}
        sources, items = self.map_hub_records(records)
        if not items:
            raise ValueError(f"the real data of {self.name} produced no evaluation items")
        return RealDataTask(self, sources, items, _fingerprint(records))


def _stratified_take(groups: Mapping[Any, list[int]], k: int, n: int, *, from_end: bool,
                     caps: Mapping[Any, int]) -> set[int]:
    """``k`` indices drawn from ``groups`` (subset -> its item indices in order),
    the first (or, ``from_end``, the last) of each subset, allotted one at a time
    (see :meth:`Task.split`). A subset gives at most ``caps[subset]`` items (all,
    when absent) and, for the validation, at most half of its items rounded up."""
    from fractions import Fraction

    limit = {s: min(caps.get(s, len(idx)), len(idx) if from_end else (len(idx) + 1) // 2)
             for s, idx in groups.items()}
    quota = dict.fromkeys(groups, 0)

    def next_position(s: Any) -> int:
        # How near the split's end the subset's next item lies (larger: nearer).
        idx = groups[s]
        return idx[len(idx) - 1 - quota[s]] if from_end else -idx[quota[s]]

    # Every subset of two or more items first gets one, when k covers them all.
    small = [s for s, idx in groups.items() if len(idx) >= 2 and limit[s] > 0]
    if k >= len(small):
        for s in small:
            quota[s] = 1
    share = {s: Fraction(k * len(idx), n) if n else Fraction(0) for s, idx in groups.items()}
    for _ in range(k - sum(quota.values())):
        open_ = [s for s in groups if quota[s] < limit[s]]
        if not open_:
            break
        best = max(open_, key=lambda s: (share[s] - quota[s], next_position(s)))
        quota[best] += 1
    return {i for s, idx in groups.items() for i in (idx[len(idx) - quota[s]:] if from_end else idx[:quota[s]])}


class HubUnavailableError(RuntimeError):
    """The dataset hub cannot be reached (offline machine) or the dataset is missing."""


@dataclass(frozen=True)
class HubDataset:
    """A public dataset: hub repo ``path``, optional config ``name``, ``split``, and
    ``data_dir``/``data_files`` inside the repo (as in ``datasets.load_dataset``)."""

    path: str
    name: str | None = None
    split: str = "train"
    data_dir: str | None = None
    data_files: str | tuple[str, ...] | None = None
    #: Keep at most this many rows (large training sets; ``None``: all).
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit <= 0:
            raise ValueError("limit must be positive")


_LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def load_dataset_records(spec: HubDataset, data: str, key: str) -> Any:
    """Load ``spec`` from the hub or from a local folder; never hangs offline."""
    import datasets

    if data == "hub":
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get(
            "HF_DATASETS_OFFLINE", "0") not in ("", "0")
        if not offline and not _hub_reachable():
            raise HubUnavailableError(
                f"data='hub' needs the Hugging Face hub to load {spec.path!r}, and it cannot be reached "
                "from this machine. Use data='offline' (the shipped offline repository), or download the "
                f"dataset elsewhere and pass data='<folder>' with a file named {key}.jsonl (or .json/.csv/.parquet) "
                "in the dataset's own schema.")
        try:
            files = list(spec.data_files) if isinstance(spec.data_files, tuple) else spec.data_files
            ds = datasets.load_dataset(spec.path, spec.name, split=spec.split, data_dir=spec.data_dir,
                                       data_files=files)
        except Exception as exc:  # noqa: BLE001 - datasets raises many types here
            raise HubUnavailableError(f"could not load {spec.path!r} ({spec.name}, {spec.split}): {exc}") from exc
    else:
        folder = Path(data)
        if not folder.is_dir():
            raise ValueError(f"data must be 'offline', 'hub' or a folder of dataset files; {data!r} is none of these")
        files = [folder / f"{key}{suffix}" for suffix in _LOCAL_SUFFIXES if (folder / f"{key}{suffix}").is_file()]
        if not files:
            raise FileNotFoundError(
                f"no file for dataset {key!r} ({spec.path}) in {folder}: expected {key}.jsonl, .json, .csv or .parquet")
        builder = _LOCAL_SUFFIXES[files[0].suffix]
        ds = datasets.load_dataset(builder, data_files=str(files[0]), split="train")
    if spec.limit is not None and len(ds) > spec.limit:
        ds = ds.select(range(spec.limit))
    return ds


def _fingerprint(records: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    for key in sorted(records):
        digest.update(key.encode())
        digest.update(str(getattr(records[key], "_fingerprint", len(records[key]))).encode())
    return digest.hexdigest()[:10]


class RealDataTask(Task):
    """A task whose sources and evaluation items come from real datasets; grading
    and formats are those of the offline task it wraps. The items keep their
    dataset order (no seed); :meth:`Task.split` takes each subset's first items
    for validation and its last ones for the hidden test, in proportion."""

    def __init__(self, base: Task, sources: dict[str, Any], items: list[EvalItem], fingerprint: str) -> None:
        self.base = base
        self._real_sources = sources
        self._items = items
        self.name = base.name
        self.version = f"{base.version}+real-{fingerprint}"
        self.domain, self.metric = base.domain, base.metric
        self.max_new_tokens = base.max_new_tokens
        self.executes_model_output = base.executes_model_output
        self.default_token_budget = base.default_token_budget

    def sources(self, seed: int) -> dict[str, Any]:
        return dict(self._real_sources)

    def source_descriptions(self) -> dict[str, str]:
        described = self.base.source_descriptions()
        return {name: described.get(name, f"Real dataset source {name}.") for name in self._real_sources}

    def eval_items(self, seed: int) -> list[EvalItem]:
        return list(self._items)

    def max_new_tokens_for(self, item: EvalItem) -> int:
        """The limit the real data set for the item (``meta["max_new_tokens"]``, from its
        gold answer's length), else the offline task's."""
        return int(item.meta.get("max_new_tokens") or self.base.max_new_tokens_for(item))

    def split(self, items: Sequence[_Item], limit: int | None = None) -> tuple[list[_Item], list[_Item]]:
        return self.base.split(items, limit)

    def grade(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        return self.base.grade(items, outputs)

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[float], outputs: Sequence[str]) -> float:
        return self.base.aggregate(items, scores, outputs)

    def extra_scores(self, items: Sequence[EvalItem], scores: Sequence[float], outputs: Sequence[str]
                     ) -> dict[str, float]:
        return self.base.extra_scores(items, scores, outputs)

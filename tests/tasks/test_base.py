"""The task base class: sources derived from declarations, the split rule, off-domain chat."""

from __future__ import annotations

import random

import pytest

from ftdojo_gym.tasks.base import MAX_SPLIT_ITEMS, EvalItem, SourceSpec, Task
from ftdojo_gym.tasks.offdomain import ADVICE_CHAT, HOBBY_CHAT, WEB_CHAT, OffDomainChat, SmallTalk


def _numbers(task: Task, rng: random.Random, held_out: frozenset[int]) -> list[dict[str, int]]:
    return [{"n": n} for n in (rng.randint(0, 99) for _ in range(20)) if n not in held_out]


class DeclaredTask(Task):
    """A task that only declares its sources."""

    name = "Declared"
    source_specs = (SourceSpec("numbers", "Numbers.", _numbers), SourceSpec("chat", "Chat.", WEB_CHAT))
    source_seed = "declared/{seed}/{source}"

    def held_out(self, seed: int) -> frozenset[int]:
        return frozenset(range(50))


def test_sources_and_descriptions_are_derived_from_the_declarations():
    task = DeclaredTask()
    sources = task.sources(0)
    assert list(sources) == ["numbers", "chat"] == list(task.source_descriptions())
    assert task.source_descriptions()["numbers"] == "Numbers."
    assert all(row["n"] >= 50 for row in sources["numbers"])  # held_out reaches the builders
    # each source draws from its own seeded stream: same seed, same rows; another seed, others
    assert sources["numbers"].to_list() == DeclaredTask().sources(0)["numbers"].to_list()
    expected = _numbers(task, random.Random("declared/0/numbers"), task.held_out(0))
    assert sources["numbers"].to_list() == expected
    assert sources["chat"].to_list() != task.sources(1)["chat"].to_list()


def test_a_task_without_declarations_must_build_its_own_sources():
    with pytest.raises(NotImplementedError):
        Task().sources(0)


@pytest.mark.parametrize(("n", "limit", "k"), [(200, None, 100), (500, None, MAX_SPLIT_ITEMS), (9, None, 4),
                                               (200, 8, 8), (6, 50, 3), (1, None, 0)])
def test_split_takes_the_first_and_the_last_k_items(n, limit, k):
    items = [EvalItem(f"i{i}", "all", f"p{i}", "r") for i in range(n)]
    validation, hidden_test = Task().split(items, limit)
    assert validation == items[:k] and hidden_test == items[n - k:]
    assert not {i.id for i in validation} & {i.id for i in hidden_test}


def test_off_domain_chat_is_one_generator_over_several_corpora():
    for chat in (WEB_CHAT, ADVICE_CHAT, HOBBY_CHAT):
        rows = chat(None, random.Random(0), None)
        assert 600 <= len(rows) <= 800 and set(rows[0]) == {"prompt", "response"}
        assert rows == chat(None, random.Random(0), None)
    with pytest.raises(ValueError, match="1.0"):
        OffDomainChat(((0.5, SmallTalk((("a", "b"),))),))


def _items(subsets: list[str]) -> list[EvalItem]:
    return [EvalItem(f"i{i}", s, f"p{i}", "r") for i, s in enumerate(subsets)]


@pytest.mark.parametrize("n_subsets", [2, 3, 4])
def test_split_of_round_robin_subsets_is_the_first_and_the_last_k(n_subsets):
    """Offline tasks interleave equal subsets: stratifying changes nothing there, for any limit."""
    items = _items([f"s{i % n_subsets}" for i in range(n_subsets * 50)])
    for limit in (None, *range(1, 101)):
        k = min(MAX_SPLIT_ITEMS, len(items) // 2, limit or len(items))
        assert Task().split(items, limit) == (items[:k], items[len(items) - k:]), limit


@pytest.mark.parametrize("seed", range(6))
def test_split_keeps_skewed_subsets_in_proportion_on_any_order(seed):
    rng = random.Random(seed)
    sizes = {"big": rng.randint(150, 400), "mid": rng.randint(40, 120), "small": rng.randint(8, 30),
             "tiny": rng.randint(2, 3)}
    subsets = [s for s, n in sizes.items() for _ in range(n)]
    if seed % 2:
        rng.shuffle(subsets)  # otherwise grouped by subset: the old rule lost whole subsets here
    items = _items(subsets)
    for limit in (None, 50, 20):
        validation, hidden = Task().split(items, limit)
        k = min(MAX_SPLIT_ITEMS, len(items) // 2, limit or len(items))
        assert len(validation) == len(hidden) == k
        assert not {i.id for i in validation} & {i.id for i in hidden}
        for split in (validation, hidden):
            assert split == sorted(split, key=lambda i: int(i.id[1:]))  # input order kept
            got = {s: sum(i.subset == s for i in split) for s in sizes}
            assert all(got[s] >= 1 for s in sizes)  # every subset present
            for s, n in sizes.items():
                assert abs(got[s] - k * n / len(items)) <= 1.5, (limit, s, got)
        # validation takes each subset's first items, the hidden test its last ones
        for s in sizes:
            members = [i for i in items if i.subset == s]
            v = [i for i in validation if i.subset == s]
            h = [i for i in hidden if i.subset == s]
            assert v == members[: len(v)] and h == members[len(members) - len(h):]


def test_split_never_overlaps_on_small_odd_subsets():
    items = _items(["a", "b", "c", "d", "a", "b", "c", "a", "e"])  # k = 4; e has one item
    validation, hidden = Task().split(items)
    assert len(validation) == len(hidden) == 4
    assert not {i.id for i in validation} & {i.id for i in hidden}


def test_split_of_items_without_subsets():
    assert Task().split(list(range(10))) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])

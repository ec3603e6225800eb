"""The data tools' semantics in detail: each filter operator, None and NaN values, mix proportions,
the memo, training rows and the catalogue statistics.

Written against mutation testing (``tools/mutation.sh ftdojo_gym/data/workspace.py``): each test
names the wrong behaviour it catches."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from ftdojo_gym.data.workspace import DataMemo, DataWorkspace
from ftdojo_gym.errors import DataError

ROWS = [
    {"name": "a", "x": 1.0, "s": "10", "t": "apple pie"},
    {"name": "b", "x": 2.0, "s": "9", "t": "banana"},
    {"name": "c", "x": 3.0, "s": "abc", "t": None},
    {"name": "d", "x": math.nan, "s": "2", "t": "cherry apple"},
    {"name": "e", "x": None, "s": "", "t": ""},
]


@pytest.fixture
def ws(tmp_path, token_counter):
    ws = DataWorkspace({"src": Dataset.from_list(ROWS)}, token_counter, tmp_path)
    ws.fetch("src", None, None, 0, False, 0)
    return ws


def kept(ws, **condition) -> list[str]:
    try:
        ds, dropped = ws.filter("src", "out", **condition)
    except DataError as exc:
        assert "would be empty" in str(exc)
        return []
    assert dropped == len(ROWS) - len(ds)
    return list(ds["name"])


@pytest.mark.parametrize(("field", "op", "value", "names"), [
    # numbers: NaN, None and text that is not a number never match, whatever the operator
    ("x", "==", 2, ["b"]),
    ("x", "!=", 2, ["a", "c"]),
    ("x", ">", 2, ["c"]),
    ("x", ">=", 2, ["b", "c"]),
    ("x", "<", 2, ["a"]),
    ("x", "<=", 2, ["a", "b"]),
    ("s", ">", 9.5, ["a"]),  # "10" is read as the number 10 when the value is a number
    ("s", "<=", 9, ["b", "d"]),
    # text: compared as text ("10" < "9"), a missing value is the empty text
    ("s", ">", "9", ["c"]),  # "abc" > "9" > "10"
    ("s", "<", "9", ["a", "d", "e"]),
    ("t", "==", "", ["c", "e"]),
    ("t", "!=", "banana", ["a", "c", "d", "e"]),
    ("t", "==", "banana", ["b"]),
    ("t", "contains", "apple", ["a", "d"]),
    ("t", "not_contains", "apple", ["b", "c", "e"]),
    ("x", "contains", "2", ["b"]),  # contains compares the text of any value
    # a missing value: == and != need no value (they find the missing ones), the order operators do
    ("t", "==", None, ["c"]),
    ("t", "!=", None, ["a", "b", "d", "e"]),
    # a boolean is not a number; text cannot be ordered against it
    ("t", ">", True, []),
])
def test_each_field_operator_keeps_exactly_the_matching_rows(ws, field, op, value, names):
    """Catches: an operator swapped for its neighbour, NaN/None/non-numbers kept, text compared as numbers."""
    assert kept(ws, field=field, op=op, value=value) == names


def test_an_order_operator_without_a_value_is_an_error(ws):
    with pytest.raises(DataError, match="a field condition needs a value"):
        ws.filter("src", "out", field="x", op=">")


def test_conditions_combine_and_the_result_replaces_the_named_output(ws):
    assert kept(ws, field="x", value=2) == ["b"]  # the operator defaults to ==
    assert kept(ws, regex="an", op=">") == ["b"]  # an operator without a field changes nothing
    assert kept(ws, field="x", op=">=", value=2, regex="an") == ["b"]
    assert ws.dataset("out")["name"] == ["b"]
    assert len(ws.dataset("src")) == len(ROWS)


def test_dedupe_ignores_case_and_spacing_only(tmp_path, token_counter):
    rows = [{"q": "Same Question"}, {"q": "  same   question "}, {"q": "same questions"}, {"q": "samequestion"}]
    ws = DataWorkspace({"d": Dataset.from_list(rows)}, token_counter, tmp_path)
    ws.fetch("d", None, None, 0, False, 0)
    ds, dropped = ws.filter("d", "u", dedupe=True)
    assert ds["q"] == ["Same Question", "same questions", "samequestion"] and dropped == 1
    assert ws.filter("d", "all", regex="s")[1] == 0  # no dedupe unless asked


def test_token_bounds_are_inclusive_and_combine(tmp_path, token_counter):
    rows = [{"q": "a " * n} for n in (1, 5, 10, 20)]
    ws = DataWorkspace({"d": Dataset.from_list(rows)}, token_counter, tmp_path)
    ws.fetch("d", None, None, 0, False, 0)
    lengths = ws.token_lengths(ws.dataset("d")).tolist()
    assert lengths == sorted(lengths) and len(set(lengths)) == 4
    assert ws.filter("d", "o", min_tokens=lengths[1])[0]["q"] == [r["q"] for r in rows[1:]]
    assert ws.filter("d", "o", max_tokens=lengths[2])[0]["q"] == [r["q"] for r in rows[:3]]
    assert ws.filter("d", "o", min_tokens=lengths[1], max_tokens=lengths[2])[0]["q"] == [r["q"] for r in rows[1:3]]


def test_names_echoed_in_errors_are_cut_to_80_characters(ws):
    for call in (lambda: ws.get("n" * 200), lambda: ws.filter("src", "o", field="n" * 200, value=1),
                 lambda: ws.filter("src", "o", regex="n" * 200 + "(")):
        with pytest.raises(DataError) as err:
            call()
        assert repr("n" * 80) in str(err.value) and "n" * 81 not in str(err.value)
    with pytest.raises(DataError, match=r"field 'y' is not in 'src' \(fields: name, x, s, t\)"):
        ws.filter("src", "o", field="y", value=1)


def test_templates_render_missing_values_as_empty_and_list_the_fields_on_error(ws):
    ds = ws.transform("src", "[{t}]", "{name}", "sft")
    assert ds["prompt"][2] == "[]" and ds["prompt"][0] == "[apple pie]"
    with pytest.raises(DataError, match="fields: name, x, s, t"):
        ws.transform("src", "{nope}", "{name}", "sft2")
    ws.datasets["empty"] = Dataset.from_dict({"q": []})
    with pytest.raises(DataError, match="'empty' is empty"):
        ws.transform("empty", "{q}", "{q}", None)
    ws.datasets["one"] = Dataset.from_list([{"q": "only"}])
    assert ws.transform("one", "{q}", "{q}!", None)[0] == {"prompt": "only", "completion": "only!"}


def test_a_slow_operation_names_itself(ws, monkeypatch):
    from ftdojo_gym.data import workspace as workspace_module

    monkeypatch.setattr(workspace_module, "DATA_OP_TIMEOUT_S", 0.0)
    with pytest.raises(DataError, match="transform of 'src' took longer than 0 s and was stopped; work on fewer rows"):
        ws.transform("src", "{name}", "{name}", "sft")
    with pytest.raises(DataError, match="filter of 'src' took longer than 0 s"):
        ws.filter("src", "o", rules=["non_empty"])
    monkeypatch.setattr(workspace_module, "REGEX_TIMEOUT_S", 0.0)
    with pytest.raises(DataError) as err:
        ws.filter("src", "o", regex="n" * 200)
    assert f"the regex {'n' * 80!r} (catastrophic backtracking?) took longer than 0 s" in str(err.value)


def test_a_regex_searches_the_text_fields_joined_by_newlines_or_the_one_named(ws):
    assert kept(ws, regex=r"^a\n10\napple") == ["a"]  # name, s, t (x is a number, not text)
    assert kept(ws, regex=r"abc\n$") == ["c"]  # a missing text is empty
    assert kept(ws, regex="apple") == ["a", "d"]
    assert kept(ws, regex="^apple", regex_field="t") == ["a"]
    assert kept(ws, regex="^b", regex_field="name") == ["b"]
    assert kept(ws, regex="banana", regex_field="name") == []


def _sft(ws, name, prefix, n, extra=False):
    rows = [{"prompt": f"{prefix}{i}", "completion": "c", **({"extra": "e"} if extra else {})} for i in range(n)]
    ws.datasets[name] = Dataset.from_list(rows)


def _origins(ds) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in ds["prompt"]:
        counts[p[0]] = counts.get(p[0], 0) + 1
    return counts


def test_mix_takes_the_common_fields_of_all_parts_and_rounds_to_exactly_n(ws):
    """Catches: fields of only some parts, rounding left over on the wrong part, n not met."""
    _sft(ws, "a", "A", 5, extra=True)
    _sft(ws, "b", "B", 5)
    _sft(ws, "c", "C", 5, extra=True)
    mixed = ws.mix([("a", 1.0), ("b", 1.0), ("c", 1.0)], 10, "m", seed=0)
    assert set(mixed.features) == {"prompt", "completion"}
    assert _origins(mixed) == {"A": 3, "B": 3, "C": 4}  # round(10/3) = 3 each, the last part takes the rest
    assert ws.dataset("m")["prompt"] == mixed["prompt"]
    written = [json.loads(line) for line in (ws.workdir / "datasets" / "m.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in written] == mixed["prompt"]


def test_mix_skips_parts_whose_share_rounds_to_zero_and_keeps_one_row_shares(ws):
    _sft(ws, "a", "A", 5)
    _sft(ws, "b", "B", 5)
    assert _origins(ws.mix([("b", 0.01), ("a", 100.0)], 10, "m", seed=0)) == {"A": 10}
    assert _origins(ws.mix([("a", 9.0), ("b", 1.0)], 10, "m2", seed=0)) == {"A": 9, "B": 1}


def test_mix_errors(ws):
    ws.datasets["x"] = Dataset.from_list([{"u": "1"}])
    ws.datasets["y"] = Dataset.from_list([{"v": "1"}])
    with pytest.raises(DataError, match="share no field; transform them to prompt/completion"):
        ws.mix([("x", 1.0), ("y", 1.0)], 4, "m", seed=0)
    with pytest.raises(DataError, match="the mix is empty"):
        ws.mix([("x", 1.0)], 0, "m", seed=0)


def test_the_memo_returns_the_remembered_result_of_a_key_under_the_new_name(tmp_path, token_counter):
    """Catches: a memo hit stored under the wrong name, not written to disk, or not remembered at all.

    The second workspace's sources differ: a memo hit must not recompute (the key determines the result)."""
    memo = DataMemo()
    first = DataWorkspace({"src": Dataset.from_list(ROWS)}, token_counter, tmp_path / "one", memo=memo)
    first.fetch("src", None, None, 0, False, 0, memo_key="f")
    first.transform("src", "{name}", "{t}", None, memo_key="t")
    _sft(first, "other", "O", 3)
    mixed = first.mix([("src_sft", 1.0), ("other", 1.0)], 6, "m", seed=0, memo_key="m")
    filtered, dropped = first.filter("src", "kept", field="x", op=">", value=1, memo_key="k")

    changed = [dict(r, name=r["name"].upper()) for r in ROWS]
    second = DataWorkspace({"src": Dataset.from_list(changed)}, token_counter, tmp_path / "two", memo=memo)
    assert second.fetch("src", "copy", None, 0, False, 0, memo_key="f")["name"] == ["a", "b", "c", "d", "e"]
    assert second.dataset("copy")["name"] == ["a", "b", "c", "d", "e"]
    second.fetch("src", "upper", None, 0, False, 0)  # no key: computed, from the changed source
    assert second.transform("upper", "{name}", "{t}", "sft", memo_key="t")["prompt"] == ["a", "b", "c", "d", "e"]
    assert second.dataset("sft")["prompt"] == ["a", "b", "c", "d", "e"]
    _sft(second, "other", "P", 3)  # other rows than the first workspace's: only the memo gives the same mix
    again = second.mix([("sft", 1.0), ("other", 1.0)], 6, "mix2", seed=0, memo_key="m")
    assert again["prompt"] == mixed["prompt"] and second.dataset("mix2")["prompt"] == mixed["prompt"]
    assert (tmp_path / "two" / "datasets" / "mix2.jsonl").read_text() == (tmp_path / "one" / "datasets" / "m.jsonl").read_text()
    assert second.filter("upper", "k2", field="x", op=">", value=1, memo_key="k") == (filtered, dropped)
    assert second.dataset("k2")["name"] == ["b", "c"]


def test_training_rows_are_prompt_completion_text_capped_by_the_dataset_size(ws):
    ws.datasets["sft"] = Dataset.from_list([{"prompt": "p0", "completion": None, "other": 1},
                                            {"prompt": None, "completion": "c1", "other": 2}])
    assert ws.training_rows("sft", 100) == [{"prompt": "p0", "completion": ""}, {"prompt": "", "completion": "c1"}]
    assert ws.training_rows("sft", 1) == [{"prompt": "p0", "completion": ""}]


def test_training_rows_are_remembered_by_lineage_and_returned_as_copies(tmp_path, token_counter, monkeypatch):
    """Catches: rows recomputed on every run (or remembered under a key that ignores the count)."""
    memo = DataMemo()
    ws = DataWorkspace({"src": Dataset.from_list(ROWS)}, token_counter, tmp_path, memo=memo)
    ws.fetch("src", None, None, 0, False, 0, memo_key="f")
    ws.transform("src", "{name}", "{s}", "sft", memo_key="t")
    rows = ws.training_rows("sft", 3)
    rows[0]["prompt"] = "changed by the caller"
    selects = []
    real_select = Dataset.select
    monkeypatch.setattr(Dataset, "select", lambda self, *a, **k: selects.append(a) or real_select(self, *a, **k))
    assert ws.training_rows("sft", 3) == [{"prompt": n, "completion": s} for n, s in (("a", "10"), ("b", "9"), ("c", "abc"))]
    assert selects == []  # served from the memo
    assert len(ws.training_rows("sft", 2)) == 2 and selects  # another count is another result


def test_training_rows_of_datasets_without_lineage_are_never_mixed_up(tmp_path, token_counter):
    ws = DataWorkspace({}, token_counter, tmp_path, memo=DataMemo())
    ws.datasets["a"] = Dataset.from_list([{"prompt": "a", "completion": "1"}])
    ws.datasets["b"] = Dataset.from_list([{"prompt": "b", "completion": "2"}])
    assert ws.training_rows("a", 5) == [{"prompt": "a", "completion": "1"}]
    assert ws.training_rows("b", 5) == [{"prompt": "b", "completion": "2"}]


def test_token_lengths_count_the_text_fields_joined_by_newlines(ws, token_counter):
    ds = Dataset.from_list([{"q": "What is two plus two?", "a": "four", "n": 3}, {"q": "Why?", "a": None, "n": 4}])
    expected = [len(token_counter.encode(t).ids) for t in ("What is two plus two?\nfour", "Why?\n")]
    assert ws.token_lengths(ds).tolist() == expected
    numbers_only = Dataset.from_list([{"n": 1}, {"n": 2}])
    assert ws.token_lengths(numbers_only).tolist() == [0, 0]
    assert ws.token_lengths(Dataset.from_dict({"q": []})).tolist() == []


def test_describe_reports_size_fields_token_percentiles_and_a_truncated_first_sample(ws, token_counter):
    ds = Dataset.from_list([{"q": "x" * 500, "n": 1}] + [{"q": "short", "n": i} for i in range(9)])
    info = ws.describe("d", ds, sample_chars=10)
    lengths = ws.token_lengths(ds)
    assert info["name"] == "d" and info["rows"] == 10 and info["fields"] == ["q", "n"]
    assert info["tokens_p50"] == int(np.percentile(lengths, 50)) == lengths[1]
    assert info["tokens_p99"] == int(np.percentile(lengths, 99)) > lengths[1]
    assert info["first_sample"] == {"q": "x" * 10 + "...", "n": 1}
    assert ws.describe("d", ds)["first_sample"]["q"] == "x" * 400 + "..."
    assert ws.describe("d", ds, sample_chars=500)["first_sample"]["q"] == "x" * 500
    two = Dataset.from_list([{"q": "x"}, {"q": "y " * 100}])
    a, b = ws.token_lengths(two).tolist()
    assert ws.describe("t", two)["tokens_p50"] == (a + b) // 2  # the median of two lengths is their mean
    counted = []
    real = ws.token_lengths
    ws.token_lengths = lambda d, *args: counted.append(len(d)) or real(d, *args)
    ws.describe("m", Dataset.from_list([{"q": "x"}] * 600))
    ws.describe("m", Dataset.from_list([{"q": "x"}] * 20))
    assert counted == [500, 20]  # a big source: the statistics read its first 500 rows
    del ws.token_lengths
    empty = ws.describe("e", Dataset.from_dict({"q": []}))
    assert (empty["rows"], empty["tokens_p50"], empty["tokens_p99"], empty["first_sample"]) == (0, 0, 0, {})


def test_get_prefers_the_agents_dataset_and_names_what_exists(ws):
    assert ws.get("src")["name"] == ws.dataset("src")["name"]
    ws.datasets["src"] = Dataset.from_list([{"name": "mine"}])
    assert ws.get("src")["name"] == ["mine"]  # the agent's dataset, not the raw source
    del ws.datasets["src"]
    assert len(ws.get("src")) == len(ROWS)  # falls back to the source
    with pytest.raises(DataError, match=r"no dataset or source named 'zz'; datasets: none; sources: \['src'\]"):
        ws.get("zz")
    with pytest.raises(DataError, match="it is a source: fetch it first"):
        ws.dataset("src")
    with pytest.raises(DataError, match=r"^no dataset named 'zz'; datasets: none$"):
        ws.dataset("zz")
    ws.datasets["mine"] = Dataset.from_list([{"name": "mine"}])
    with pytest.raises(DataError, match=r"^no dataset named 'zz'; datasets: \['mine'\]$"):
        ws.dataset("zz")
    with pytest.raises(DataError) as err:
        ws.dataset("n" * 200)
    assert repr("n" * 80) in str(err.value) and "n" * 81 not in str(err.value)


def test_memo_keeps_the_most_recently_used_entries():
    memo = DataMemo(max_entries=2)
    memo.put("a", (1, "", None))
    memo.put("b", (2, "", None))
    assert memo.get("a") == (1, "", None)  # a is now the most recent
    memo.put("c", (3, "", None))
    assert (memo.get("a"), memo.get("b"), memo.get("c"), len(memo)) == ((1, "", None), None, (3, "", None), 2)
    assert DataMemo().max_entries == 128


def test_text_fields_are_the_string_columns_large_or_not(ws, token_counter):
    from datasets import Value

    from ftdojo_gym.data.workspace import text_fields

    ds = Dataset.from_list([{"q": "hello there", "big": "a b c", "n": 1, "tags": ["x"], "meta": {"k": "v"}}])
    ds = ds.cast_column("big", Value("large_string"))
    assert text_fields(ds) == ["q", "big"]
    assert ws.token_lengths(ds).tolist() == [len(token_counter.encode("hello there\na b c").ids)]


def test_fetch_shuffles_by_seed_and_checks_its_arguments(tmp_path, token_counter):
    rows = [{"i": str(i)} for i in range(30)]
    ws = DataWorkspace({"src": Dataset.from_list(rows)}, token_counter, tmp_path)
    plain = ws.fetch("src", "p", None, 0, False, 0)["i"]
    a = ws.fetch("src", "a", 10, 0, True, 1)["i"]
    assert plain == [r["i"] for r in rows] and a != plain[:10] and sorted(a) != a
    assert ws.fetch("src", "b", 10, 0, True, 1)["i"] == a and ws.fetch("src", "c", 10, 0, True, 2)["i"] != a
    assert ws.fetch("src", "last", None, 29, False, 0)["i"] == ["29"]
    with pytest.raises(DataError, match=r"offset 30 is past the end of 'src' \(30 rows\)"):
        ws.fetch("src", "x", None, 30, False, 0)
    with pytest.raises(DataError, match=r"no source named 'zz'; sources: \['src'\]"):
        ws.fetch("zz", None, None, 0, False, 0)


def test_dataset_files_keep_non_ascii_text_readable(ws, tmp_path):
    ws.datasets["u"] = Dataset.from_list([{"q": "Quel café ?"}])
    ws.transform("u", "{q}", "≥ {q}", "sft")
    assert '"completion": "≥ Quel café ?"' in (tmp_path / "datasets" / "sft.jsonl").read_text(encoding="utf-8")


def test_operations_with_memo_keys_work_without_a_memo(ws):
    ws.fetch("src", "f", None, 0, False, 0, memo_key="k1")
    ws.transform("f", "{name}", "{s}", "sft", memo_key="k2")
    assert ws.training_rows("sft", 2) == [{"prompt": "a", "completion": "10"}, {"prompt": "b", "completion": "9"}]


def test_a_dataset_overwritten_without_a_key_forgets_its_remembered_rows(tmp_path, token_counter):
    ws = DataWorkspace({"src": Dataset.from_list(ROWS)}, token_counter, tmp_path, memo=DataMemo())
    ws.fetch("src", None, None, 0, False, 0, memo_key="f")
    ws.transform("src", "{name}", "{s}", "sft", memo_key="t")
    assert ws.training_rows("sft", 1) == [{"prompt": "a", "completion": "10"}]
    ws.transform("src", "{name}!", "{s}", "sft")  # same name, new rows, no lineage
    assert ws.training_rows("sft", 1) == [{"prompt": "a!", "completion": "10"}]


def test_a_recalled_dataset_keeps_its_lineage_for_its_training_rows(tmp_path, token_counter, monkeypatch):
    memo = DataMemo()
    first = DataWorkspace({"src": Dataset.from_list(ROWS)}, token_counter, tmp_path / "1", memo=memo)
    first.fetch("src", None, None, 0, False, 0, memo_key="f")
    first.transform("src", "{name}", "{s}", "sft", memo_key="t")
    rows = first.training_rows("sft", 3)
    second = DataWorkspace({"src": Dataset.from_list(ROWS)}, token_counter, tmp_path / "2", memo=memo)
    second.fetch("src", None, None, 0, False, 0, memo_key="f")
    second.transform("src", "{name}", "{s}", "sft", memo_key="t")
    selects = []
    real_select = Dataset.select
    monkeypatch.setattr(Dataset, "select", lambda self, *a, **k: selects.append(a) or real_select(self, *a, **k))
    assert second.training_rows("sft", 3) == rows and selects == []


def test_rules_and_dedupe_read_a_missing_text_as_empty(tmp_path, token_counter, ws):
    assert kept(ws, rules=["non_empty"]) == ["a", "b", "d"]
    dup = DataWorkspace({"d": Dataset.from_list([{"q": None, "n": "1"}, {"q": "", "n": "1"}])}, token_counter, tmp_path)
    dup.fetch("d", None, None, 0, False, 0)
    assert dup.filter("d", "u", dedupe=True)[1] == 1


def test_atomic_write_leaves_the_old_file_and_no_temporary_one_when_it_fails(tmp_path, monkeypatch):
    """The temporary file sits beside the target (same file system: the rename is atomic), hidden
    by a dot prefix from readers that list ``*.jsonl``; a failed write leaves the old file."""
    import os

    from ftdojo_gym.data import workspace as workspace_module

    target = tmp_path / "datasets" / "d.jsonl"
    workspace_module.atomic_write_text(target, "old é\n")
    assert target.read_bytes() == "old é\n".encode()
    seen = []

    def failing_replace(src, dst):
        seen.append(Path(src))
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        workspace_module.atomic_write_text(target, "new\n")
    assert seen[0].parent == target.parent and seen[0].name.startswith(".d.jsonl.")
    assert target.read_text(encoding="utf-8") == "old é\n" and sorted(p.name for p in target.parent.iterdir()) == ["d.jsonl"]

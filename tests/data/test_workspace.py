import json

import pytest
from datasets import Dataset

from ftdojo_gym.data.workspace import DataWorkspace, render_template
from ftdojo_gym.errors import DataError


@pytest.fixture
def ws(tmp_path, token_counter):
    sources = {
        "clean": Dataset.from_list(
            [{"q": f"What is {i}+{i}?", "a": f"Final Answer: {2 * i}", "score": i / 10} for i in range(10)]
        ),
        "dupes": Dataset.from_list(
            [{"q": "Same  question", "a": "x"}, {"q": "same question ", "a": "X"}, {"q": "other", "a": "y"}]
        ),
    }
    return DataWorkspace(sources, token_counter, tmp_path)


def test_fetch_writes_an_atomic_jsonl_copy_and_keeps_sources_read_only(ws, tmp_path):
    ds = ws.fetch("clean", None, limit=4, offset=2, shuffle=False, seed=0)
    assert ds["q"] == [f"What is {i}+{i}?" for i in range(2, 6)]
    rows = [json.loads(line) for line in (tmp_path / "datasets" / "clean.jsonl").read_text().splitlines()]
    assert [r["q"] for r in rows] == ds["q"]
    assert not list((tmp_path / "datasets").glob(".*"))  # no temp files left behind
    ws.filter("clean", None, field="score", op=">", value=0.3)  # overwrites the dataset, never the source
    assert len(ws.dataset("clean")) == 2 and len(ws.sources["clean"]) == 10


def test_filter_by_field_regex_tokens_rules_and_dedupe(ws):
    ws.fetch("clean", None, None, 0, False, 0)
    ds, dropped = ws.filter("clean", "hi", field="score", op=">=", value=0.5)
    assert len(ds) == 5 and dropped == 5
    ds, _ = ws.filter("clean", "re", regex=r"What is [12]\+")
    assert len(ds) == 2
    ds, _ = ws.filter("clean", "fa", rules=["has_final_answer"])
    assert len(ds) == 10
    lengths = ws.token_lengths(ws.dataset("clean"))
    ds, _ = ws.filter("clean", "short", max_tokens=int(lengths.min()))
    assert 1 <= len(ds) < 10
    ws.fetch("dupes", None, None, 0, False, 0)
    ds, dropped = ws.filter("dupes", "dd", dedupe=True)
    assert ds["q"] == ["Same  question", "other"] and dropped == 1
    with pytest.raises(DataError, match="would be empty"):
        ws.filter("clean", "none", field="score", op=">", value=99)
    with pytest.raises(DataError, match="not in 'clean'"):
        ws.filter("clean", "x", field="nope", value=1)
    with pytest.raises(DataError, match="invalid regex"):
        ws.filter("clean", "x", regex="(")


def test_transform_renders_templates_and_rejects_unknown_fields(ws):
    ws.fetch("clean", None, None, 0, False, 0)
    ds = ws.transform("clean", "Q: {q}\n{{literal}}", "{a}", None)
    assert ds[0] == {"prompt": "Q: What is 0+0?\n{literal}", "completion": "Final Answer: 0"}
    with pytest.raises(DataError, match="not a field"):
        ws.transform("clean", "{missing}", "{a}", None)
    with pytest.raises(DataError, match="not a field"):  # no attribute access into Python objects
        render_template("{q.__class__}", {"q": "x"})


def test_mix_respects_weights_and_oversamples(ws):
    ws.fetch("clean", None, None, 0, False, 0)
    ws.fetch("dupes", None, None, 0, False, 0)
    a = ws.transform("clean", "{q}", "{a}", "a")
    b = ws.transform("dupes", "{q}", "{a}", "b")
    mixed = ws.mix([("a", 3.0), ("b", 1.0)], 40, "m", seed=1)
    assert len(mixed) == 40 and set(mixed.features) == {"prompt", "completion"}
    from_b = sum(p in set(b["prompt"]) for p in mixed["prompt"])
    assert from_b == 10  # 1/4 of 40, oversampled from 3 rows
    assert ws.mix([("a", 3.0), ("b", 1.0)], 40, "m2", seed=1)["prompt"] == mixed["prompt"]
    assert len(a) == 10


def test_training_rows_need_prompt_and_completion_and_cap_at_2000(ws):
    ws.fetch("clean", None, None, 0, False, 0)
    with pytest.raises(DataError, match="transform"):
        ws.training_rows("clean", 2000)
    ws.transform("clean", "{q}", "{a}", "sft")
    assert len(ws.training_rows("sft", 3)) == 3
    big = Dataset.from_list([{"prompt": str(i), "completion": "x"} for i in range(2500)])
    ws.datasets["big"] = big
    assert len(ws.training_rows("big", 5000)) == 2000


def test_each_quality_rule_drops_exactly_the_rows_that_break_it(tmp_path, token_counter):
    """Catches: filter ``rules`` doing nothing (each rule here has one row that breaks it)."""
    rows = [
        {"q": "What is 1+1?", "a": "Final Answer: 2"},  # passes every rule
        {"q": "   ", "a": "Final Answer: 3"},  # non_empty
        {"q": "What is 2+2?", "a": "It is four."},  # has_final_answer
        {"q": "Quel café ?", "a": "Final Answer: 5"},  # ascii_only
        {"q": "See https://example.org", "a": "Final Answer: 6"},  # no_url
    ]
    ws = DataWorkspace({"mixed": Dataset.from_list(rows)}, token_counter, tmp_path)
    ws.fetch("mixed", None, None, 0, False, 0)
    broken_by = {"non_empty": 1, "has_final_answer": 2, "ascii_only": 3, "no_url": 4}
    for rule, bad in broken_by.items():
        ds, dropped = ws.filter("mixed", f"only_{rule}", rules=[rule])
        assert dropped == 1 and ds["q"] == [r["q"] for i, r in enumerate(rows) if i != bad], rule
    ds, dropped = ws.filter("mixed", "all_rules", rules=list(broken_by))
    assert ds["q"] == [rows[0]["q"]] and dropped == 4
    assert len(ws.dataset("mixed")) == 5  # the input dataset is left as it was

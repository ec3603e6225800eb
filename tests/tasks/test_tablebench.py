"""TableBenchTask: determinism, splits, leakage, source schemas and quality, self-consistency."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from datasets import Dataset

from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.tasks.tablebench import FORMAT_LINE, INSTRUCTION, SUBSETS, TableBenchTask

from .conftest import CachedTask

SEED = 3
SCHEMAS = {
    "tableinstruct": {"instruction", "input", "output", "subset"},
    "crowd_tableqa": {"instruction", "input", "output", "subset", "annotator_agreement"},
    "tableqa_mirror": {"instruction", "input", "output", "subset"},
    "table_chat": {"question", "table", "response", "answer", "subset"},
    "web_text": {"prompt", "response"},
    "long_tables": {"instruction", "input", "output", "subset"},
    "wiki_table_lookup": {"topic", "question", "table", "answer"},
}


_CACHED = CachedTask(TableBenchTask, seed=SEED)
task, items, sources = _CACHED.task, _CACHED.items, _CACHED.sources


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def split_input(text: str) -> tuple[str, str]:
    """(table csv, question) of an ``input`` field in the evaluation format."""
    table, rest = text.split("\nQuestion: ", 1)
    return table, rest.split("\n", 1)[0]


def test_names_and_attributes() -> None:
    assert task().name == "TableBench"
    assert task().domain == "Table QA"
    assert task().metric == "mean of EM / EM / ROUGE-L / Pass@1"
    single = TableBenchTask(["Visualization"])
    assert single.name == "TableBench-Visualization"
    assert TableBenchTask(["Visualization", "FactChecking"]).subsets == (
        "FactChecking",
        "Visualization",
    )
    for bad in ([], ["Nope"]):
        with pytest.raises(ValueError):
            TableBenchTask(bad)


def test_determinism_and_seed_dependence() -> None:
    fresh = TableBenchTask()
    assert fresh.eval_items(SEED) == items()
    assert fresh.eval_items(SEED + 1) != items()
    same, other = fresh.sources(SEED), fresh.sources(SEED + 1)
    for name, dataset in sources().items():
        assert same[name].to_list() == dataset.to_list()
        assert other[name].to_list() != dataset.to_list()


def test_split_coverage() -> None:
    n = len(items())
    assert n == 200
    for split in task().split(items()):
        assert Counter(item.subset for item in split) == {s: 25 for s in SUBSETS}
        facts = Counter(item.meta["answer"] for item in split if item.subset == "FactChecking")
        assert abs(facts["Yes"] - facts["No"]) <= 1
    assert len({item.id for item in items()}) == n
    tables = {split_input(item.prompt.split("\n", 1)[1])[0] for item in items()}
    assert len(tables) == n  # no table is shared between validation and test


@pytest.mark.parametrize("subset", SUBSETS)
def test_single_subset_task(subset: str) -> None:
    single = TableBenchTask([subset])
    single_items = single.eval_items(SEED)
    assert len(single_items) == 200 and {item.subset for item in single_items} == {subset}
    assert set(single.sources(SEED)["tableinstruct"]["subset"]) == {subset}
    assert single.max_new_tokens_for(single_items[0]) == single.max_new_tokens


def test_eval_prompt_format() -> None:
    for item in items():
        lines = item.prompt.split("\n")
        assert lines[0] == INSTRUCTION and lines[-1] == FORMAT_LINE
        assert lines[-2].startswith("Question: ")
        assert item.reference == f"Final Answer: {item.meta['answer']}"
        assert item.meta["table_csv"] == "\n".join(lines[1:-2]) + "\n"
        if item.subset == "Visualization":
            assert item.meta["chart_type"] in ("bar", "line", "pie")
            assert len(item.meta["y_values"]) == len(lines) - 4


def test_references_score_one() -> None:
    """The generator and the graders agree: every reference gets full marks.

    Also a speed check: 50 Visualization items run in seconds, not a second each.
    """
    start = time.monotonic()
    assert task().grade(items(), [item.reference for item in items()]) == [1.0] * len(items())
    assert time.monotonic() - start < 20


def test_wrong_format_scores_zero() -> None:
    chatty = [f"Sure! The answer is {item.meta['answer']}." for item in items()]
    assert task().grade(items(), chatty) == [0.0] * len(items())


def test_source_sizes_and_schemas() -> None:
    assert set(sources()) == set(SCHEMAS) == set(task().source_descriptions())
    for name, dataset in sources().items():
        assert set(dataset.column_names) == SCHEMAS[name], name
        assert 300 <= len(dataset) <= 3000, name


def test_no_eval_table_or_question_in_sources() -> None:
    texts = []
    for dataset in sources().values():
        for column in dataset.column_names:
            if isinstance(dataset[0][column], str):
                texts += dataset[column]
    corpus = normalise("\n\x1e".join(texts))
    for item in items():
        table, question = split_input(item.prompt.split("\n", 1)[1])
        assert normalise(table) not in corpus, item.id
        assert normalise(f"{table}\nQuestion: {question}") not in corpus, item.id


def test_expert_template_reproduces_eval_format() -> None:
    template = task_recipes(task()).expert_template
    for row in sources()["tableinstruct"].select(range(40)):
        prompt = template["prompt"].format(**row)
        completion = template["completion"].format(**row)
        lines = prompt.split("\n")
        assert lines[0] == INSTRUCTION
        assert lines[-1] == FORMAT_LINE and lines[-2].startswith("Question: ")
        assert completion.startswith("Final Answer: ")
    # The format is exactly the one of an evaluation item built the same way.
    item = items()[0]
    instruction, rest = item.prompt.split("\n", 1)
    assert template["prompt"].format(instruction=instruction, input=rest) == item.prompt


def solve(table_csv: str, question: str) -> str | None:
    """Independent answers to the FactChecking / NumericalReasoning templates (None if not one)."""
    header, *rows = [line.split(",") for line in table_csv.split("\n")]
    table = {row[0]: dict(zip(header[1:], map(int, row[1:]), strict=True)) for row in rows}

    def col(c: str) -> list[int]:
        return [r[c] for r in table.values()]

    patterns = [
        (
            r"Is the (\w+) of (\w+) equal to (\d+)\?",
            lambda c, a, v: "Yes" if table[a][c] == int(v) else "No",
        ),
        (r"Which (\w+) has a (\w+) of (\d+)\?",
         lambda _, c, v: next(name for name, row in table.items() if row[c] == int(v))),
        (r"What is the (\w+) of (\w+)\?", lambda c, a: str(table[a][c])),
        (
            r"What is the difference in (\w+) between (\w+) and (\w+)\?",
            lambda c, a, b: str(table[a][c] - table[b][c]),
        ),
        (r"What is the total (\w+) of all rows\?", lambda c: str(sum(col(c)))),
        (r"What is the highest (\w+) in the table\?", lambda c: str(max(col(c)))),
    ]
    for pattern, answer in patterns:
        match = re.fullmatch(pattern, question)
        if match:
            return answer(*match.groups())
    return None


def label_accuracy(dataset: Dataset) -> list[tuple[bool, float]]:
    """(label correct, agreement) for each solvable row."""
    out = []
    for row in dataset:
        truth = solve(*split_input(row["input"]))
        if truth is not None:
            out.append(
                (row["output"] == f"Final Answer: {truth}", row.get("annotator_agreement", 1.0))
            )
    return out


def test_clean_source_is_correct() -> None:
    checked = label_accuracy(sources()["tableinstruct"])
    assert len(checked) > 500 and all(ok for ok, _ in checked)
    for item in items():
        truth = solve(*split_input(item.prompt.split("\n", 1)[1]))
        assert truth is None or truth == item.meta["answer"]


def test_crowd_labels_are_noisy_but_filterable() -> None:
    checked = label_accuracy(sources()["crowd_tableqa"])
    wrong = [agreement for ok, agreement in checked if not ok]
    right = [agreement for ok, agreement in checked if ok]
    assert 0.38 < len(wrong) / len(checked) < 0.6  # 45 % at random, 65 % of the fact-checking rows
    assert sum(a < 0.6 for a in wrong) / len(wrong) > 0.8
    assert sum(a >= 0.6 for a in right) / len(right) > 0.9


def test_harmful_and_helpful_sources() -> None:
    mirror = sources()["tableqa_mirror"]
    unique = {normalise("\n".join((r["instruction"], r["input"], r["output"]))) for r in mirror}
    assert 20 <= len(unique) <= 60 and len(mirror) >= 10 * len(unique)

    chat = sources()["table_chat"]
    assert not any("final answer" in r.lower() for r in chat["response"])
    assert all(r["answer"] in r["response"] for r in chat)

    assert not any("final answer" in r.lower() for r in sources()["web_text"]["response"])

    long_inputs = sources()["long_tables"]["input"]
    assert sum(len(x) > 2500 for x in long_inputs) / len(long_inputs) > 0.85
    assert sum(len(x) < 400 for x in long_inputs) >= 5  # a few usable after a length filter

    wiki = sources()["wiki_table_lookup"]
    eval_headers = {item.prompt.split("\n")[1].split(",")[0] for item in items()}
    assert not {t.split(",")[0] for t in wiki["table"]} & eval_headers  # other topics


def test_max_new_tokens_per_subset() -> None:
    by_subset = {item.subset: task().max_new_tokens_for(item) for item in items()}
    assert by_subset == {
        "FactChecking": 16,
        "NumericalReasoning": 16,
        "DataAnalysis": 48,
        "Visualization": 80,
    }
    assert task().max_new_tokens == 80


# -- FactChecking: claims a lookup verifies


def test_fact_checking_is_a_match_based_lookup() -> None:
    """Which row holds a value: one right row label, found without arithmetic, on any row."""
    fc = TableBenchTask(["FactChecking"])
    fc_items = fc.eval_items(SEED)
    positions = Counter()
    for item in fc_items:
        table, question = split_input(item.prompt.split("\n", 1)[1])
        assert solve(table, question) == item.meta["answer"], question
        labels = [line.split(",", 1)[0] for line in table.split("\n")[1:]]
        positions[labels.index(item.meta["answer"])] += 1
        assert [o.removeprefix("Final Answer: ") for o in fc.chance_outputs(item)] == labels
    assert len(positions) == 5 and min(positions.values()) >= 10  # every row position is asked


def test_crowd_fact_checking_labels_are_systematically_wrong() -> None:
    rows = list(TableBenchTask(["FactChecking"]).sources(SEED)["crowd_tableqa"])
    shifted = right = 0
    for r in rows:
        table, question = split_input(r["input"])
        labels = [line.split(",", 1)[0] for line in table.split("\n")[1:]]
        truth, given = solve(table, question), r["output"].removeprefix("Final Answer: ")
        right += given == truth
        shifted += given == labels[(labels.index(truth) + 1) % len(labels)]
    assert right + shifted == len(rows) and 0.6 < shifted / len(rows) < 0.7  # one systematic error


# -- real data (data="<folder>" in TableBench's own schema)

OFFICIAL = Path(__file__).resolve().parents[1] / "fixtures" / "hub" / "tablebench_official"


def _real_rows() -> list[dict]:
    return [json.loads(line) for line in (OFFICIAL / "tablebench.jsonl").read_text(encoding="utf-8").splitlines()]


def _write(folder: Path, rows: list[dict], name: str = "tablebench.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return folder


ORDERS = {
    "file": lambda rows: rows,
    "by_type": lambda rows: sorted(rows, key=lambda r: r["qtype"]),
    "by_type_reversed": lambda rows: sorted(rows, key=lambda r: r["qtype"], reverse=True),
    "shuffled": lambda rows: random.Random(7).sample(rows, len(rows)),
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_real_splits_keep_every_subset_in_proportion(order: str, tmp_path: Path) -> None:
    """Skewed real subsets (6 / 24 / 21 / 3 items) in any file order: both splits hold each in proportion."""
    real = TableBenchTask().with_data(str(_write(tmp_path, ORDERS[order](_real_rows()))))
    real_items = real.eval_items(0)
    sizes = Counter(item.subset for item in real_items)
    assert sizes == {"FactChecking": 6, "NumericalReasoning": 24, "DataAnalysis": 21, "Visualization": 3}
    for limit in (None, 10, 4):
        validation, hidden = real.split(real_items, limit)
        k = len(validation)
        assert k == len(hidden) == min(27, limit or 27)
        assert not {i.id for i in validation} & {i.id for i in hidden}
        for split in (validation, hidden):
            got = Counter(item.subset for item in split)
            assert set(got) == set(SUBSETS)  # every subset present
            for subset, n in sizes.items():
                assert abs(got[subset] - k * n / len(real_items)) < 1.5, (order, limit, subset)


def test_real_tables_keep_their_exact_cell_text(tmp_path: Path) -> None:
    """JSON objects with mixed cell types, and JSON text, give the cells as written."""
    row = {"id": "x1", "qtype": "NumericalReasoning", "qsubtype": "Aggregation", "instruction_type": "DP",
           "question": "What is the total?", "answer": "3",
           "table": {"columns": ["name", "a", "b"], "data": [["aymara", 3.405, "0.3"], ["total", "-", 2.50]]}}
    as_text = {**row, "id": "x2", "table": json.dumps(row["table"]).replace("2.5", "2.50")}
    real = TableBenchTask(["NumericalReasoning"]).with_data(str(_write(tmp_path, [row, as_text])))
    for item, last in zip(real.eval_items(0), ("2.5", "2.50"), strict=True):  # as the file writes them
        assert item.meta["table_csv"] == f"name,a,b\naymara,3.405,0.3\ntotal,-,{last}\n"
        assert f"name,a,b\naymara,3.405,0.3\ntotal,-,{last}\nQuestion:" in item.prompt
    # The official example tables (16 of 54 hold mixed cell types) keep every cell as the file writes it.
    examples = TableBenchTask().with_data(str(OFFICIAL)).eval_items(0)
    lines = (OFFICIAL / "tablebench.jsonl").read_text(encoding="utf-8").splitlines()
    raw = {r["id"]: r["table"] for r in (json.loads(line, parse_float=str, parse_int=str) for line in lines)}
    for item in examples:
        table = raw[item.id.rsplit("/", 1)[1]]
        parsed = list(csv.reader(io.StringIO(item.meta["table_csv"])))
        assert parsed == [table["columns"], *([("" if c is None else str(c)) for c in row] for row in table["data"])]


def test_a_folder_without_training_data_evaluates(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        real = TableBenchTask().with_data(str(OFFICIAL))
    assert real.sources(0) == {} and "no training source" in caplog.text
    assert len(real.eval_items(0)) == 54


def test_real_visualization_gets_a_training_source_from_the_data(tmp_path: Path) -> None:
    rows = _real_rows()
    train = [{**r, "id": "train-" + r["id"]} for r in rows if r["qtype"] == "Visualization"]
    folder = _write(_write(tmp_path, rows), train, "tableinstruct.jsonl")
    real = TableBenchTask(["Visualization"]).with_data(str(folder))
    source = real.sources(0)["tableinstruct"]
    assert len(source) == 3 and set(source["subset"]) == {"Visualization"}
    assert all(o.startswith("Final Answer: import matplotlib.pyplot as plt") for o in source["output"])


def test_unknown_chart_types_are_left_out_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [r for r in _real_rows() if r["qtype"] == "Visualization"]
    rows.append({**rows[0], "id": "heat", "chart_type": "heatmap"})
    with caplog.at_level("WARNING"):
        real = TableBenchTask(["Visualization"]).with_data(str(_write(tmp_path, rows)))
    assert len(real.eval_items(0)) == 3
    assert "chart type 'heatmap' unknown to the official parser" in caplog.text


_CHART_TABLE = {"columns": ["Name", "A", "B"], "data": [["x", 1, 10], ["y", 2, 20], ["z", 3, 30]]}
#: Real-shaped Visualization rows, one per chart type the official parser knows
#: (several series where the type allows), plus edge values a real file holds.
GRADABLE_CHARTS = {
    **{t: (t, "y_references = [[1, 2, 3], [10, 20, 30]]")
       for t in ("line", "bar", "hbar", "area", "radar", "scatter", "waterfall")},
    "pie": ("pie", "y_references = [[1, 2, 3]]"),
    "pie_two_series": ("pie", "y_references = [[1, 2], [3, 4]]"),
    "flat_list": ("scatter", "y_references = [1, 2, 3]"),
    "negative_bar": ("bar", "y_references = [[-1.5, 2, 3]]"),
    "negative_hbar": ("hbar", "y_references = [[-3, 2]]"),
    "negative_area": ("area", "y_references = [[-1, 2, 3]]"),
    "zero_pie_wedge": ("pie", "y_references = [[0, 2, 3]]"),
    "one_point": ("line", "y_references = [[5]]"),
}
#: Rows no chart can pass under the official check: left out, each with its reason.
UNGRADABLE_CHARTS = {
    "area_with_zero": ("area", "y_references = [[0, 2, 3]]", "area chart with a 0 reference value"),
    "negative_pie": ("pie", "y_references = [[-1, 2, 3]]", "pie chart with a negative reference value"),
    "empty_pie": ("pie", "y_references = [[0, 0]]", "pie chart with a negative reference value or a total of 0"),
    "heatmap": ("heatmap", "y_references = [[1, 2]]", "chart type 'heatmap' unknown to the official parser"),
    "no_numbers": ("bar", "y_references = [['a', 'b']]", "reference values are not a list of numbers"),
}


def _chart_row(row_id: str, chart: str, answer: str) -> dict:
    return {"id": row_id, "qtype": "Visualization", "qsubtype": "ChartGeneration", "instruction_type": "DP",
            "question": "Draw the chart.", "answer": answer, "chart_type": chart, "table": _CHART_TABLE}


def test_every_official_chart_type_is_graded_or_rejected_with_its_reason(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Real-shaped rows of all eight official chart types load, and their gold code scores 1.0
    through the task's grading path (the sandbox); rows no chart could pass are left out
    with a warning that names why, never silently."""
    from ftdojo_gym.grading.sandbox import sandbox_unavailable
    from ftdojo_gym.grading.tablebench_grading import CHART_TYPES

    assert {chart for chart, _ in GRADABLE_CHARTS.values()} == set(CHART_TYPES)
    rows = [_chart_row(k, c, a) for k, (c, a) in GRADABLE_CHARTS.items()]
    rows += [_chart_row(k, c, a) for k, (c, a, _) in UNGRADABLE_CHARTS.items()]
    with caplog.at_level("WARNING"):
        real = TableBenchTask(["Visualization"]).with_data(str(_write(tmp_path, rows)))
    its = real.eval_items(0)
    assert sorted(i.id.rsplit("/", 1)[1] for i in its) == sorted(GRADABLE_CHARTS)
    assert f"{len(UNGRADABLE_CHARTS)} TableBench rows left out" in caplog.text
    for _, _, reason in UNGRADABLE_CHARTS.values():
        assert reason in caplog.text
    if sandbox_unavailable() is None:
        scores = real.grade(its, [i.reference for i in its])
        assert dict(zip((i.id for i in its), scores, strict=True)) == {i.id: 1.0 for i in its}
        # The gold code of one item does not pass another item's reference.
        shifted = [its[-1].reference, *(i.reference for i in its[:-1])]
        assert sum(real.grade(its, shifted)) < len(its) / 2


def test_real_gold_answers_fit_their_limits_and_score_one_through_the_env(
        tiny_model, isolated_cache, token_counter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that writes each gold answer, cut at the item's token limit (SmolLM2's
    tokenizer), scores 1.0 on validation and on the hidden test; the longest gold
    answers are the plotting code of multi-series charts."""
    import gymnasium as gym

    from ftdojo_gym.grading.sandbox import sandbox_unavailable
    from ftdojo_gym.model_process.client import ModelWorker
    from ftdojo_gym.model_process.protocol import GenerateResult

    real = TableBenchTask().with_data(str(OFFICIAL))
    gold = {item.prompt: item.reference for item in real.eval_items(0)}
    for item in real.eval_items(0):
        assert len(token_counter.encode(item.reference).ids) <= real.max_new_tokens_for(item), item.id
    assert max(real.max_new_tokens_for(i) for i in real.eval_items(0) if i.subset == "Visualization") > 200

    def gold_model(self, model, adapter, prompts, max_new_tokens, **kwargs):
        outputs = []
        for prompt, limit in zip(prompts, max_new_tokens, strict=True):
            ids = token_counter.encode(gold[prompt]).ids
            outputs.append(gold[prompt] if len(ids) <= limit else token_counter.decode(ids[:limit]))
        return GenerateResult(status="ok", outputs=outputs, seconds=0.0)

    monkeypatch.setattr(ModelWorker, "generate", gold_model)
    env = gym.make("FTDojo/TableBench-v0", data=str(OFFICIAL), workdir=tmp_path / "ws", base_model="tiny")
    try:
        env.reset(seed=0)
        _, _, _, _, info = env.step({"tool": "list_sources", "args": {}})
        assert info["ok"] and info["result"]["sources"] == []
        _, _, _, _, info = env.step({"tool": "evaluate", "args": {"run": "base"}})
        assert info["ok"], info
        subsets = info["result"]["subsets"]
        assert set(subsets) == {*SUBSETS, "DataAnalysis/Mix"}
        if sandbox_unavailable() is None:
            assert info["result"]["score"] == 1.0 and subsets["DataAnalysis/Mix"] == 1.0
        _, reward, terminated, _, info = env.step({"tool": "submit", "args": {}})
        assert terminated and info["ok"], info
        if sandbox_unavailable() is None:
            assert reward == 1.0
    finally:
        env.close()

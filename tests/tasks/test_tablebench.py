"""TableBenchTask: determinism, splits, leakage, source schemas and quality, self-consistency."""

from __future__ import annotations

import re
import time
from collections import Counter

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
    assert task().metric == "mean of EM / numeric-10% / ROUGE-L / Pass@1"
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
            r"Is the (\w+) of (\w+) greater than that of (\w+)\?",
            lambda c, a, b: "Yes" if table[a][c] > table[b][c] else "No",
        ),
        (
            r"Is the (\w+) of (\w+) equal to (\d+)\?",
            lambda c, a, v: "Yes" if table[a][c] == int(v) else "No",
        ),
        (
            r"Does (\w+) have the highest (\w+)\?",
            lambda a, c: "Yes" if table[a][c] == max(col(c)) else "No",
        ),
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
    assert 0.38 < len(wrong) / len(checked) < 0.52
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

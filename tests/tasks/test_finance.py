"""FinanceIQTask: determinism, splits, leakage, source schemas and quality, real-data mapping."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from datasets import Dataset

from ftdojo_gym.data.workspace import render_template
from ftdojo_gym.grading.finance_grading import LETTERS, extract_choice
from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.tasks.base import EvalItem
from ftdojo_gym.tasks.finance import (
    FACTS,
    HUB_SUBJECTS,
    PROMPT_TEMPLATE,
    SUBJECTS,
    FinanceIQTask,
)

from .conftest import CachedTask

SEED = 3
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hub" / "FinanceIQ"
EXAM = {"subject", "Question", "A", "B", "C", "D", "Answer", "answer_text"}
SCHEMAS = {
    "finexam_train": EXAM,
    "crowd_answer_key": EXAM | {"annotator_confidence"},
    "exam_mirror": EXAM,
    "study_notes": EXAM - {"Answer"} | {"note"},
    "web_chat": {"prompt", "response"},
    "regulation_excerpts": EXAM,
    "finance_glossary": {"term", "definition", "subject"},
}
_PROMPT = re.compile(
    r"The following is a single-choice question from the (?P<subject>.+) exam\.\n"
    r"Question: (?P<Question>.*)\n(?P<A>.*) \[A\]\n(?P<B>.*) \[B\]\n(?P<C>.*) \[C\]\n(?P<D>.*) \[D\]\n"
    r"Quote the correct option with its letter, then reply with Answer: followed by the letter\.",
    re.DOTALL,
)


_CACHED = CachedTask(FinanceIQTask, seed=SEED)
task, items, sources = _CACHED.task, _CACHED.items, _CACHED.sources


def norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def identity(question: str, options: list[str]) -> tuple[str, frozenset[str]]:
    return norm(question), frozenset(norm(o) for o in options)


def parse(prompt: str) -> dict[str, str]:
    match = _PROMPT.fullmatch(prompt)
    assert match, prompt
    return match.groupdict()


# Independent answer key from the knowledge base (not the generator's code).
TERM_OF = {norm(d): norm(t) for facts in FACTS.values() for t, d in facts}
DEF_OF = {norm(t): norm(d) for facts in FACTS.values() for t, d in facts}


def solve(record: dict[str, str]) -> str | None:
    """The correct letter of a knowledge-base or calculation question, or None if not one."""
    options = [norm(record[x]) for x in LETTERS]
    question = norm(record["Question"])
    for definition, term in TERM_OF.items():
        if definition in question and term in options:
            return LETTERS[options.index(term)]
    for term, definition in DEF_OF.items():
        if re.search(rf"\b{re.escape(term)}\b", question) and definition in options:
            return LETTERS[options.index(definition)]
    numbers = [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", question)]
    if "rule of 72" in question:
        value = f"{72 // int(numbers[1])} years"
    elif "simple interest" in question:
        principal, rate, years = (numbers[0], numbers[1], numbers[2]) if question.startswith("what") else (
            numbers[0], numbers[1], numbers[2])
        value = f"{principal * rate * years / 100:,.0f}"
    elif "flat tax" in question:
        principal, rate = (numbers[0], numbers[1]) if question.startswith("taxable") else (numbers[1], numbers[0])
        value = f"{principal * rate / 100:,.0f}"
    else:
        return None
    return LETTERS[options.index(norm(value))] if norm(value) in options else "?"


def test_names_and_attributes() -> None:
    assert task().name == "FinanceIQ" and task().domain == "Finance"
    assert task().metric == "accuracy over subjects (multiple choice)"
    assert len(SUBJECTS) == 10 and set(HUB_SUBJECTS.values()) == set(SUBJECTS)
    assert task_recipes(task()).clean_sources == ("finexam_train",)
    assert len(task_recipes(task()).harmful.templates) >= 2


def test_determinism_and_seed_dependence() -> None:
    fresh = FinanceIQTask()
    assert fresh.eval_items(SEED) == items()
    assert fresh.eval_items(SEED + 1) != items()
    same, other = fresh.sources(SEED), fresh.sources(SEED + 1)
    for name, dataset in sources().items():
        assert same[name].to_list() == dataset.to_list()
        assert other[name].to_list() != dataset.to_list()


def test_sources_are_fast() -> None:
    start = time.monotonic()
    FinanceIQTask().sources(SEED + 7)
    assert time.monotonic() - start < 3


def test_split_coverage_and_letter_balance() -> None:
    n = len(items())
    assert n == 200 and len({item.id for item in items()}) == n
    for split in task().split(items()):
        assert Counter(item.subset for item in split) == {s: 10 for s in SUBJECTS}
        assert Counter(item.meta["answer"] for item in split) == {x: 25 for x in LETTERS}
    for subject in SUBJECTS:
        letters = Counter(i.meta["answer"] for i in items() if i.subset == subject)
        assert set(letters) == set(LETTERS)
    identities = {identity(parse(i.prompt)["Question"], list(i.meta["options"].values())) for i in items()}
    assert len(identities) == n


def test_eval_prompt_format_and_length() -> None:
    for item in items():
        fields = parse(item.prompt)
        assert fields["subject"] == item.subset
        letter = item.meta["answer"]
        # Version 2: the reference quotes the gold option line of the prompt, then answers.
        assert item.reference == f"Option: {fields[letter]} [{letter}]\nAnswer: {letter}"
        assert f"\n{fields[letter]} [{letter}]\n" in item.prompt
        assert [fields[x] for x in LETTERS] == [item.meta["options"][x] for x in LETTERS]
        assert len(set(item.meta["options"].values())) == 4
        assert len(item.prompt.split()) < 150  # well under 300 tokens


def test_references_score_one_and_eval_key_is_correct() -> None:
    assert task().grade(items(), [item.reference for item in items()]) == [1.0] * len(items())
    for item in items():
        fields = parse(item.prompt)
        assert solve(fields) == item.meta["answer"], item.prompt
    chatty = [f"The answer is {item.meta['answer']}." for item in items()]
    assert task().grade(items(), chatty) == [0.0] * len(items())
    texts = [f"Answer: {item.meta['options'][item.meta['answer']]}" for item in items()]
    assert sum(task().grade(items(), texts)) == 0.0  # option text instead of the letter


def test_answer_follows_from_the_wording() -> None:
    """Knowledge-base questions are learnable: only the correct option shares a content word with the question."""
    from ftdojo_gym.tasks.finance import _cue_words

    rows = [parse(i.prompt) | {"Answer": i.meta["answer"]} for i in items() if i.subset in FACTS]
    rows += sources()["finexam_train"].select(range(300)).to_list()
    for row in rows:
        if row["subject"] not in FACTS:
            continue
        question = _cue_words(row["Question"])
        shared = {x: bool(question & _cue_words(row[x])) for x in LETTERS}
        assert shared == {x: x == row["Answer"] for x in LETTERS}, row


def test_source_sizes_and_schemas() -> None:
    assert set(sources()) == set(SCHEMAS) == set(task().source_descriptions())
    for name, dataset in sources().items():
        assert set(dataset.column_names) == SCHEMAS[name], name
        assert 300 <= len(dataset) <= 3000, name
    for description in task().source_descriptions().values():
        assert "noisy" not in description.lower() and "harmful" not in description.lower()


def test_no_eval_question_in_sources() -> None:
    eval_ids = {identity(parse(i.prompt)["Question"], list(i.meta["options"].values())) for i in items()}
    for name, dataset in sources().items():
        if "Question" not in dataset.column_names:
            continue
        for row in dataset:
            assert identity(row["Question"], [row[x] for x in LETTERS]) not in eval_ids, name
    prompts = {norm(i.prompt) for i in items()}
    rendered = sources()["finexam_train"].map(
        lambda r: {"p": norm(render_template(PROMPT_TEMPLATE, r))})["p"]
    assert not prompts & set(rendered)


def test_expert_template_reproduces_eval_format() -> None:
    template = task_recipes(task()).expert_template
    train = sources()["finexam_train"]
    for row in train.select(range(50)):
        prompt = render_template(template["prompt"], row)
        completion = render_template(template["completion"], row)
        fields = parse(prompt)
        assert fields["Question"] == row["Question"]
        assert completion == f"Option: {row[row['Answer']]} [{row['Answer']}]\nAnswer: {row['Answer']}"
        assert row["answer_text"] == row[row["Answer"]]
        assert task().grade([EvalItem("x", row["subject"], prompt, completion, {"answer": row["Answer"]})],
                            [completion]) == [1.0]
    assert Counter(train["Answer"]).most_common()[-1][1] >= 0.24 * len(train)  # letters balanced
    assert set(train["subject"]) == set(SUBJECTS)


def test_harmful_recipes_render_eval_prompts_with_answers_the_grader_marks_wrong() -> None:
    """The harmful recipes look right (evaluation-format prompts) but teach wrong answers:
    about 40 % wrong letters from the crowd key, answer text instead of a letter from the notes."""
    wrong_share = {}
    for name, template in task_recipes(task()).harmful.templates.items():
        rows = sources()[name].select(range(200))
        wrong = 0
        for row in rows:
            prompt = render_template(template["prompt"], row)
            completion = render_template(template["completion"], row)
            assert parse(prompt)["Question"] == row["Question"]
            key = solve(row)
            assert key is not None
            item = EvalItem("x", row["subject"], prompt, f"Answer: {key}", {"answer": key})
            wrong += task().grade([item], [completion]) == [0.0]
        wrong_share[name] = wrong / len(rows)
    assert 0.25 <= wrong_share["crowd_answer_key"] <= 0.6, wrong_share
    assert wrong_share["study_notes"] == 1.0, wrong_share


def test_clean_source_is_correct() -> None:
    train = sources()["finexam_train"]
    assert all(solve(row) == row["Answer"] for row in train)


def test_crowd_labels_are_noisy_but_filterable() -> None:
    crowd = sources()["crowd_answer_key"]
    # A wrong row quotes the option of its own (wrong) letter: the quote and the answer agree.
    assert all(row["answer_text"] == row[row["Answer"]] for row in crowd)
    checked = [(solve(row) == row["Answer"], row["annotator_confidence"]) for row in crowd]
    wrong = [c for ok, c in checked if not ok]
    right = [c for ok, c in checked if ok]
    assert 0.33 < len(wrong) / len(checked) < 0.47
    assert sum(c < 0.6 for c in wrong) / len(wrong) > 0.8
    assert sum(c >= 0.6 for c in right) / len(right) > 0.9


def test_other_sources() -> None:
    mirror = sources()["exam_mirror"]
    unique = {norm("\n".join(str(r[k]) for k in sorted(EXAM))) for r in mirror}
    assert 20 <= len(unique) <= 40 and len(mirror) >= 10 * len(unique)

    notes = sources()["study_notes"]
    for row in notes.select(range(100)):
        assert row["answer_text"] in [row[x] for x in LETTERS]
        assert extract_choice(row["note"]) is None  # never a letter in the answer format

    assert not any("Answer:" in r for r in sources()["web_chat"]["response"])

    regulations = sources()["regulation_excerpts"]
    lengths = [len(q.split()) for q in regulations["Question"]]
    assert sum(n > 800 for n in lengths) / len(lengths) > 0.85
    assert sum(n < 80 for n in lengths) >= 5  # a few usable after a length filter
    last_lines = ({**row, "Question": row["Question"].rsplit("\n", 1)[-1]} for row in regulations.select(range(50)))
    assert all(solve(row) == row["Answer"] for row in last_lines)

    glossary = sources()["finance_glossary"]
    terms = set(glossary["term"])
    assert {t for facts in FACTS.values() for t, _ in facts} < terms
    assert "Business" in set(glossary["subject"])


# ------------------------------------------------------------------ real data


def test_hub_datasets_are_the_subject_files() -> None:
    specs = task().hub_datasets
    assert len(specs) == 20
    for key, spec in specs.items():
        assert spec.path == "Duxiaoman-DI/FinanceIQ" and spec.data_files == f"data/{key}.csv"
        split, name = key.split("/")
        assert split in ("test", "dev") and name in HUB_SUBJECTS


def test_fixture_is_in_the_real_schema() -> None:
    files = sorted(FIXTURES.rglob("*.csv"))
    assert {f"{f.parent.name}/{f.stem}" for f in files} == set(task().hub_datasets)
    for path in files:
        with path.open(encoding="utf-8") as f:
            assert f.readline().strip() == ",Question,A,B,C,D,Answer"  # pandas index, then the fields
        rows = Dataset.from_csv(str(path))
        assert rows.column_names == ["Unnamed: 0", "Question", "A", "B", "C", "D", "Answer"]
        assert set(rows["Answer"]) <= set(LETTERS)


def test_hub_fixture_end_to_end() -> None:
    real = task().with_data(str(FIXTURES))
    real_items = real.eval_items(0)
    # Each test file holds two questions: the last one is evaluated.
    assert len(real_items) == 10
    assert sorted(i.subset for i in real_items) == sorted(SUBJECTS)
    assert real.grade(real_items, [i.reference for i in real_items]) == [1.0] * len(real_items)
    assert real.grade(real_items, ["Answer: " + "ABCD"[(LETTERS.index(i.meta["answer"]) + 1) % 4]
                                   for i in real_items]) == [0.0] * len(real_items)
    for item in real_items:
        assert parse(item.prompt)["subject"] == item.subset
    train = real.sources(0)["finexam_train"]
    assert set(train.column_names) == EXAM
    assert len(train) == 10 + 10  # the first question of each test file, and the dev files
    assert not {norm(q) for q in train["Question"]} & {norm(parse(i.prompt)["Question"]) for i in real_items}
    assert task_recipes(real).clean_sources == ("finexam_train",) and task_recipes(real).harmful.templates == {}
    row = train[0]
    assert parse(render_template(task_recipes(real).expert_template["prompt"], row))["Question"] == row["Question"]


def test_hub_records_split_per_subject() -> None:
    def rows(n: int, subject: str) -> Dataset:
        return Dataset.from_list([{"Unnamed: 0": i, "Question": f"{subject} question {i}?", "A": "w", "B": "x",
                                   "C": "y", "D": "z", "Answer": "ABCD"[i % 4]} for i in range(n)])

    records = {"test/经济师": rows(60, "econ"), "test/精算师-金融数学": rows(9, "act"), "dev/经济师": rows(5, "dev")}
    sources_, items_ = task().map_hub_records(records)
    assert Counter(i.subset for i in items_) == {"Economics": 20, "Actuarial Math": 4}
    assert items_[0].subset == "Economics" and items_[1].subset == "Actuarial Math"  # interleaved
    assert parse(items_[0].prompt)["Question"] == "econ question 40?"  # from the end of the file
    assert len(sources_["finexam_train"]) == 40 + 5 + 5


def test_real_long_options_get_a_generation_limit_that_fits_their_quote(token_counter) -> None:
    """Real options can be long statements (in Chinese, several tokens a character): the
    reference quotes the gold option, so a real item's limit comes from its length."""
    long_option = "企业应当在资产负债表日对以摊余成本计量的金融资产进行减值测试，并确认预期信用损失准备" * 2
    rows = Dataset.from_list([{"Unnamed: 0": i, "Question": f"下列说法正确的是？{i}", "A": long_option, "B": "短",
                               "C": "较短的说法", "D": "另一个说法", "Answer": "A"} for i in range(2)])
    real = task().with_data(str(FIXTURES))
    _, items_ = task().map_hub_records({"test/注册会计师（CPA）": rows})
    (item,) = items_
    needed = len(token_counter.encode(item.reference).ids)
    assert needed > task().max_new_tokens  # the offline limit would cut the quote
    assert needed <= real.max_new_tokens_for(item) == item.meta["max_new_tokens"]
    assert task().grade([item], [item.reference]) == [1.0]
    for short in real.eval_items(0):  # never below the offline limit, and bounded by the quote's bytes
        assert real.max_new_tokens_for(short) == max(task().max_new_tokens, len(short.reference.encode()) + 32)


def test_hub_offline_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    from ftdojo_gym.tasks.base import HubUnavailableError

    start = time.monotonic()
    with pytest.raises(HubUnavailableError, match="offline|reached|load"):
        task().with_data("hub")
    assert time.monotonic() - start < 30


def test_chance_outputs_are_one_letter_each_and_a_constant_scores_a_quarter() -> None:
    t = task()
    hidden = t.split(items(), 100)[1]
    for item in hidden[:10]:
        outputs = t.chance_outputs(item)
        assert t.grade([item] * 4, outputs) == [float(x == item.meta["answer"]) for x in LETTERS]
    for letter in LETTERS:
        outputs = [f"Answer: {letter}"] * len(hidden)
        assert t.aggregate(hidden, t.grade(hidden, outputs), outputs) == pytest.approx(0.25)

"""PatentTask (PANORAMA PAR4PC / PI4PC / NOC4PC): determinism, splits, leakage, source
schemas and quality, the split-level metric, and the real-data mapping on fixtures."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from ftdojo_gym.data.workspace import render_template
from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.tasks import make_task
from ftdojo_gym.tasks.base import RealDataTask, Task
from ftdojo_gym.tasks.patent import EVAL_SIZE, INSTRUCTIONS, PAR_LETTERS, SUBTASKS, PatentTask

from .conftest import CachedTask

SEED = 3
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hub"
EVAL_FORMAT = {"instruction", "input", "output", "field"}
COMMON_SCHEMAS = {
    "examiner_records": EVAL_FORMAT,
    "crowd_labels": EVAL_FORMAT | {"annotator_agreement"},
    "citation_mirror": EVAL_FORMAT,
    "examiner_notes": {"claim", "prior_art", "rationale", "answer", "field"},
    "web_text": {"prompt", "response"},
    "full_specifications": EVAL_FORMAT,
}
CROSS_DOMAIN = {
    "PAR4PC": ("product_search", {"request", "catalogue", "matches", "category"}),
    "PI4PC": ("manual_sections", {"query", "title", "manual", "section", "product"}),
    "NOC4PC": ("foreign_decisions", {"claim_text", "citations", "outcome", "technology"}),
}
#: How each cross-domain source becomes training pairs in the evaluation format.
CROSS_TEMPLATES = {
    "PAR4PC": f"{INSTRUCTIONS['PAR4PC']}\nClaim 1: {{request}}\nCandidates:\n{{catalogue}}",
    "PI4PC": f"{INSTRUCTIONS['PI4PC']}\nClaim 2: {{query}}\nPrior art: {{title}}\n{{manual}}",
    "NOC4PC": f"{INSTRUCTIONS['NOC4PC']}\nClaim 1: {{claim_text}}\n{{citations}}",
}
CROSS_ANSWER = {"PAR4PC": "Answer: {matches}", "PI4PC": "Answer: {section}", "NOC4PC": "Answer: {outcome}"}


_CACHED = CachedTask(PatentTask, seed=SEED, n_config=1)
task, items, sources = _CACHED.task, _CACHED.items, _CACHED.sources


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


# ------------------------------------------------------- independent solvers

_PHRASE = re.compile(r"\b(?:an?) ([a-zA-Z0-9 -]+?) ((?:made of|configured to) [^,;.]+?)(?=,| and an? |;|\.|$)")


_TAG = re.compile(r" \[[A-H]\]")  # PAR4PC version 3: each disclosed feature is followed by its letter


def claim_features(claim_line: str) -> set[tuple[str, str]]:
    body = claim_line.split(": ", 1)[1].split(" comprising ", 1)[1]
    return set(_PHRASE.findall(re.sub(r"\(\d\) ", "", body)))


def solve(subtask: str, prompt_input: str) -> str:
    """The answer by the examiner's rule, re-derived from the text of an ``input`` field."""
    claim, rest = prompt_input.split("\n", 1)
    if subtask == "PAR4PC":
        feats = claim_features(claim)
        cited = [line[0] for line in rest.split("\n")[1:]
                 if set(_PHRASE.findall(_TAG.sub("", line.split(" - ", 1)[1]))) & feats]
        return ", ".join(cited)
    if subtask == "PI4PC":
        component, qualifier = re.search(r"wherein the (.+?) is ((?:made of|configured to) .+)\.$", claim).groups()
        hits = [m.group(2) for m in re.finditer(r"^(.*) \[(\d+)\]$", rest, re.MULTILINE)
                if m.group(1).lower().startswith(f"the {component} is {qualifier},".lower())]
        assert len(hits) == 1, (claim, rest)
        return hits[0]
    # NOC4PC: the claim's numbered features, and which ones each document's quoted phrases disclose.
    numbered = dict(re.findall(r"\((\d)\) an? ([^,]+?)(?=, \(\d\)| and \(\d\)|\.$)", claim))
    docs = [line.split(": ", 1)[1].split(": ", 1)[1] for line in rest.split("\n")]
    disclosed = [{n for n, phrase in numbered.items() if re.search(rf"\ban? {re.escape(phrase)}(?=;|\.)", d)} for d in docs]
    if any(d == set(numbered) for d in disclosed):
        return "102"
    return "103" if set().union(*disclosed) == set(numbered) else "ALLOW"


def completion_for(subtask: str, prompt_input: str) -> str:
    """The examiner's full answer, re-derived from an ``input`` field: version 3 of PI4PC
    quotes the cited paragraph line, NOC4PC the two mapping heads, before ``Answer:``."""
    answer = solve(subtask, prompt_input)
    if subtask == "PI4PC":
        (line,) = [x for x in prompt_input.split("\n") if x.endswith(f" [{answer}]")]
        return f"Cited: {line}\nAnswer: {answer}"
    if subtask == "PAR4PC":  # each claim feature, in claim order, with the letter of the passage quoting it
        body = prompt_input.split("\n", 1)[0].split(" comprising ", 1)[1].rstrip(".")
        phrases = re.split(r", | and (?=an? )", body)
        quoted = [next(m.group(0) for line in prompt_input.split("\n")
                       if (m := re.search(re.escape(p) + r" \[[A-F]\]", line))) for p in phrases]
        assert ", ".join(sorted({q[-2] for q in quoted})) == answer
        return "; ".join(quoted) + f"\nAnswer: {answer}"
    if subtask == "NOC4PC":
        heads = [": ".join(x.split(": ", 2)[:2]) for x in prompt_input.split("\n")[1:]]
        assert all(re.fullmatch(r"D\d \[\d+\]: discloses (all claimed features|features? [\d-]+ only)", h) for h in heads)
        return "; ".join(heads) + f"\nAnswer: {answer}"
    return f"Answer: {answer}"


# --------------------------------------------------------------------- tests


def test_names_and_attributes() -> None:
    for subtask in SUBTASKS:
        t = task(subtask)
        assert t.name == f"Patent-{subtask}" and t.domain == "Patent" and t.metric
        assert task_recipes(t).clean_sources == ("examiner_records",)
        assert set(task_recipes(t).harmful.templates) == {"crowd_labels", "examiner_notes"}
        assert make_task(f"FTDojo/Patent-{subtask}-v0").name == t.name
    with pytest.raises(ValueError):
        PatentTask("PAR5PC")


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_determinism_and_seed_dependence(subtask: str) -> None:
    fresh = PatentTask(subtask)
    assert fresh.eval_items(SEED) == items(subtask)
    assert [i.prompt for i in fresh.eval_items(SEED + 1)] != [i.prompt for i in items(subtask)]
    same, other = fresh.sources(SEED), fresh.sources(SEED + 1)
    for name, dataset in sources(subtask).items():
        assert same[name].to_list() == dataset.to_list(), name
        assert other[name].to_list() != dataset.to_list(), name


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_generation_is_fast(subtask: str) -> None:
    start = time.monotonic()
    PatentTask(subtask).sources(SEED + 7)
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("subtask", SUBTASKS)
@pytest.mark.parametrize("k", [100, 50])
def test_split_coverage(subtask: str, k: int) -> None:
    """Validation and hidden test (also the smaller eval_limit splits) cover every field and answer kind."""
    all_items = items(subtask)
    assert len(all_items) == EVAL_SIZE and len({i.id for i in all_items}) == EVAL_SIZE
    assert len({i.prompt.split("\n")[1].split(": ", 1)[1] for i in all_items}) == EVAL_SIZE  # claims unique
    for split in (all_items[:k], all_items[-k:]):
        assert len(Counter(i.meta["field"] for i in split)) == 8
        if subtask == "PAR4PC":
            sizes = Counter(len(i.meta["gold"]) for i in split)
            assert set(sizes) == {1, 2, 3} and sizes[1] >= k // 3
            letters = Counter(letter for i in split for letter in i.meta["gold"])
            assert set(letters) == set(PAR_LETTERS)
        elif subtask == "NOC4PC":
            labels = Counter(i.meta["label"] for i in split)
            assert set(labels) == {"ALLOW", "102", "103"} and max(labels.values()) - min(labels.values()) <= 1


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_eval_prompt_format_and_solver(subtask: str) -> None:
    for item in items(subtask):
        instruction, rest = item.prompt.split("\n", 1)
        assert instruction == INSTRUCTIONS[subtask]
        assert re.match(r"Claim \d+: ", rest)
        assert item.reference == completion_for(subtask, rest)
        assert item.reference.endswith(f"\nAnswer: {item.meta['answer']}" if subtask != "PAR4PC"
                                       else f"Answer: {item.meta['answer']}")
        assert solve(subtask, rest) == item.meta["answer"], item.id
        assert len(item.prompt) < 1300  # ~250 tokens


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_references_score_one_and_chat_zero(subtask: str) -> None:
    t, its = task(subtask), items(subtask)
    refs = [i.reference for i in its]
    assert t.grade(its, refs) == [1.0] * len(its)
    assert t.aggregate(its, t.grade(its, refs), refs) == 1.0
    chatty = [f"I think the answer is {i.meta['answer']}." for i in its]
    assert t.grade(its, chatty) == [0.0] * len(its)
    assert t.aggregate(its, t.grade(its, chatty), chatty) == 0.0
    with pytest.raises(ValueError):
        t.grade(its, refs[:-1])


def test_every_option_or_label_is_scored_as_panorama_does() -> None:
    """PAR4PC: every option scores its F1 (PANORAMA; the stricter hedge rule is opt-in);
    PI4PC and NOC4PC: a list of keys or labels is no answer."""
    its = items("PAR4PC")
    everything = ["Answer: " + ", ".join(PAR_LETTERS)] * len(its)
    scores = task("PAR4PC").grade(its, everything)
    assert scores == [pytest.approx(2 * len(i.meta["gold"]) / (6 + len(i.meta["gold"]))) for i in its]
    its = items("PI4PC")
    every_key = ["Answer: " + ", ".join(map(str, i.meta["options"])) for i in its]
    assert task("PI4PC").grade(its, every_key) == [0.0] * len(its)
    its = items("NOC4PC")
    hedge = ["Answer: 102 / 103 / ALLOW"] * len(its)
    assert task("NOC4PC").aggregate(its, task("NOC4PC").grade(its, hedge), hedge) == 0.0


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_chance_outputs(subtask: str) -> None:
    t, its = task(subtask), items(subtask)
    for item in its[:20]:
        outputs = t.chance_outputs(item)
        # the gold answer line is among the guesses (PAR4PC: single letters only)
        assert subtask == "PAR4PC" or f"Answer: {item.meta['answer']}" in outputs
        assert sum(t.grade([item] * len(outputs), outputs)) >= 1.0
    assert len(t.chance_outputs(its[0])) == {"PAR4PC": 6, "PI4PC": 5, "NOC4PC": 3}[subtask]


def test_noc4pc_macro_f1_is_split_level() -> None:
    t, its = task("NOC4PC"), items("NOC4PC")[:99]  # 33 per label
    constant = ["Answer: 103"] * len(its)
    scores = t.grade(its, constant)
    assert sum(scores) / len(scores) == pytest.approx(1 / 3)  # accuracy
    # macro-F1: F1(103) = 2*33 / (2*33 + 66) = 0.5, the other classes 0.
    assert t.aggregate(its, scores, constant) == pytest.approx(0.5 / 3)
    # Other subtasks aggregate by the mean item score (the base class default).
    par = items("PAR4PC")[:4]
    assert task("PAR4PC").aggregate(par, [1.0, 0.5, 0.0, 0.5], [""] * 4) == 0.5
    assert Task.aggregate(task("PI4PC"), [], [], []) == 0.0


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_source_sizes_and_schemas(subtask: str) -> None:
    cross, cross_schema = CROSS_DOMAIN[subtask]
    expected = {**COMMON_SCHEMAS, cross: cross_schema}
    srcs = sources(subtask)
    assert set(srcs) == set(expected) == set(task(subtask).source_descriptions())
    for name, dataset in srcs.items():
        assert set(dataset.column_names) == expected[name], name
        assert 300 <= len(dataset) <= 3000, name
    for text in task(subtask).source_descriptions().values():
        assert "noisy" not in text.lower() and "harmful" not in text.lower()


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_no_eval_claim_in_sources(subtask: str) -> None:
    texts = []
    for dataset in sources(subtask).values():
        for column in dataset.column_names:
            if isinstance(dataset[0][column], str):
                texts += dataset[column]
    corpus = normalise("\n\x1e".join(texts))
    for item in items(subtask):
        claim_body = item.prompt.split("\n")[1].split(": ", 1)[1]
        assert normalise(claim_body) not in corpus, item.id


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_clean_source_and_expert_template(subtask: str) -> None:
    t = task(subtask)
    clean = sources(subtask)["examiner_records"]
    for row in clean.select(range(300)):
        prompt = render_template(task_recipes(t).expert_template["prompt"], row)
        completion = render_template(task_recipes(t).expert_template["completion"], row)
        assert prompt.split("\n", 1)[0] == INSTRUCTIONS[subtask]
        assert completion == completion_for(subtask, row["input"])
    item = items(subtask)[0]
    instruction, rest = item.prompt.split("\n", 1)
    assert render_template(task_recipes(t).expert_template["prompt"], {"instruction": instruction, "input": rest}) == item.prompt


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_crowd_labels_are_noisy_but_filterable(subtask: str) -> None:
    checked = [(row["output"] == completion_for(subtask, row["input"]), row["annotator_agreement"])
               for row in sources(subtask)["crowd_labels"]]
    wrong = [a for ok, a in checked if not ok]
    right = [a for ok, a in checked if ok]
    low, high = {"PAR4PC": (0.38, 0.52), "PI4PC": (0.63, 0.77), "NOC4PC": (0.63, 0.77)}[subtask]
    assert low < len(wrong) / len(checked) < high
    assert sum(a < 0.6 for a in wrong) / len(wrong) > 0.8
    assert sum(a >= 0.6 for a in right) / len(right) > 0.9


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_harmful_sources(subtask: str) -> None:
    srcs = sources(subtask)
    mirror = srcs["citation_mirror"]
    unique = {normalise("\n".join((r["instruction"], r["input"], r["output"]))) for r in mirror}
    assert 20 <= len(unique) <= 60 and len(mirror) >= 10 * len(unique)

    notes = srcs["examiner_notes"]
    assert not any("answer:" in r.lower() for r in notes["rationale"])
    for row in notes.select(range(200)):
        assert solve(subtask, f"{row['claim']}\n{row['prior_art']}") == row["answer"]
        prompt = f"{INSTRUCTIONS[subtask]}\n{row['claim']}\n{row['prior_art']}"  # the rescue template
        assert prompt.split("\n", 1)[0] == INSTRUCTIONS[subtask]
    harmful = task_recipes(task(subtask)).harmful.templates["examiner_notes"]
    assert "Answer:" not in render_template(harmful["completion"], notes[0])

    assert not any("answer:" in r.lower() for r in srcs["web_text"]["response"])

    long_inputs = srcs["full_specifications"]["input"]
    assert sum(len(x) > 8000 for x in long_inputs) / len(long_inputs) > 0.85  # 2,000+ tokens
    assert sum(len(x) < 1300 for x in long_inputs) >= 5  # a few usable after a length filter


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_cross_domain_source_is_helpful_after_transform(subtask: str) -> None:
    name, _ = CROSS_DOMAIN[subtask]
    dataset = sources(subtask)[name]
    eval_fields = {i.meta["field"] for i in items(subtask)}
    other = {"PAR4PC": "category", "PI4PC": "product", "NOC4PC": "technology"}[subtask]
    assert not set(dataset[other]) & eval_fields  # other fields than the evaluation
    for row in dataset.select(range(200)):
        prompt = render_template(CROSS_TEMPLATES[subtask], row)
        completion = render_template(CROSS_ANSWER[subtask], row)
        instruction, rest = prompt.split("\n", 1)
        assert instruction == INSTRUCTIONS[subtask]
        assert completion == f"Answer: {solve(subtask, rest)}"


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_harmful_recipes_teach_wrong_answers_or_no_answer_format(subtask: str) -> None:
    """crowd_labels renders evaluation pairs with ~45 % (PAR4PC) or ~70 % wrong answers (by the examiner's rule);
    examiner_notes renders prompts without the instruction and completions without ``Answer:``."""
    recipes = task_recipes(task(subtask)).harmful.templates
    rows = sources(subtask)["crowd_labels"].select(range(200))
    wrong = 0
    for row in rows:
        prompt = render_template(recipes["crowd_labels"]["prompt"], row)
        completion = render_template(recipes["crowd_labels"]["completion"], row)
        instruction, rest = prompt.split("\n", 1)
        assert instruction == INSTRUCTIONS[subtask]
        wrong += normalise(completion) != normalise(completion_for(subtask, rest))
    assert (0.25 if subtask == "PAR4PC" else 0.55) <= wrong / len(rows) <= (0.65 if subtask == "PAR4PC" else 0.85), wrong
    for row in sources(subtask)["examiner_notes"].select(range(50)):
        prompt = render_template(recipes["examiner_notes"]["prompt"], row)
        completion = render_template(recipes["examiner_notes"]["completion"], row)
        assert not prompt.startswith(INSTRUCTIONS[subtask])
        assert completion.strip() and "Answer:" not in completion


# ----------------------------------------------------------------- real data


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_hub_fixtures_end_to_end(subtask: str) -> None:
    real = task(subtask).with_data(str(FIXTURES / f"Patent-{subtask}"))
    assert isinstance(real, RealDataTask) and real.name == f"Patent-{subtask}"
    its = real.eval_items(0)
    assert len(its) == 9
    srcs = real.sources(0)
    assert set(srcs) == {"examiner_records"} and len(srcs["examiner_records"]) == 10
    assert set(srcs["examiner_records"].column_names) == EVAL_FORMAT
    assert task_recipes(real).clean_sources == ("examiner_records",) and task_recipes(real).harmful.templates == {}
    refs = [i.reference for i in its]
    assert real.grade(its, refs) == [1.0] * len(its)
    assert real.aggregate(its, real.grade(its, refs), refs) == 1.0
    for item in its:
        instruction, rest = item.prompt.split("\n", 1)
        assert instruction == INSTRUCTIONS[subtask]
        assert re.match(r"Claim \d+: (?!\d+\.)", rest)  # the claim's own number is dropped
    row = srcs["examiner_records"][0]
    assert render_template(task_recipes(real).expert_template["prompt"], row).startswith(INSTRUCTIONS[subtask])
    assert render_template(task_recipes(real).expert_template["completion"], row).startswith("Answer: ")
    if subtask == "PAR4PC":
        assert its[0].meta["options"] == list("ABCDEFGH")
        assert "Answer: " + ", ".join("ABCDEFGH") not in refs
    elif subtask == "PI4PC":
        assert all(len(i.meta["options"]) == 5 and i.meta["gold"][0] in i.meta["options"] for i in its)
    else:
        assert Counter(i.meta["label"] for i in its) == {"102": 3, "103": 3, "ALLOW": 3}


def test_hub_mapping_skips_malformed_rows() -> None:
    sources_, its = task("NOC4PC").map_hub_records({
        "train": [{"claim_number": 1, "context": "not json", "answer": {"code": "102"}}],
        "validation": [
            {"claim_number": 2, "context": {"claims": ["1. A thing.", "2. The thing of claim 1."]},
             "prior_art_specifications": "[]", "answer": '{"code": "103", "reason": ""}'},
            {"claim_number": 9, "context": {"claims": ["1. A thing."]}, "answer": {"code": "102"}},
            {"claim_number": 1, "context": {"claims": ["1. A thing."]}, "answer": {"code": "maybe"}},
        ],
    })
    assert sources_ == {} and [i.meta["label"] for i in its] == ["103"]
    assert its[0].prompt.endswith("Claim 2: The thing of claim 1.\n")


def test_hub_datasets_point_at_panorama() -> None:
    for subtask in SUBTASKS:
        specs = task(subtask).hub_datasets
        assert {s.path for s in specs.values()} == {"LG-AI-Research/PANORAMA"}
        assert {s.data_dir for s in specs.values()} == {subtask}  # the repo keeps one folder per subtask


@pytest.mark.parametrize("subtask", SUBTASKS)
def test_check_task(subtask: str) -> None:
    check_task = pytest.importorskip("ftdojo_gym.utils").check_task
    report = check_task(f"FTDojo/Patent-{subtask}-v0")
    assert report.n_hidden_test == 100


def test_env_scores_noc4pc_with_the_split_metric() -> None:
    """The env's split score is the task's aggregate (macro-F1), not the mean of item scores."""
    from types import SimpleNamespace

    from ftdojo_gym.tools.evaluation import score_outputs

    its = items("NOC4PC")[:99]
    constant = ["Answer: 103"] * len(its)
    total, subsets, per_item = score_outputs(SimpleNamespace(task=task("NOC4PC")), its, constant)
    assert total == pytest.approx(0.5 / 3) and subsets == {"NOC4PC": pytest.approx(0.5 / 3)}
    assert sum(per_item) == pytest.approx(33)
    par = items("PAR4PC")[:10]
    total, subsets, _ = score_outputs(SimpleNamespace(task=task("PAR4PC")), par, [i.reference for i in par])
    assert total == 1.0 and subsets == {"PAR4PC": 1.0}

"""AIMETask: determinism, splits, leakage, source schemas and quality, solver cross-check, real data."""

from __future__ import annotations

import re
import time
from collections import Counter
from math import comb, factorial
from pathlib import Path

import pytest

from ftdojo_gym.data.workspace import render_template
from ftdojo_gym.grading.math_grading import extract_boxed
from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.tasks import make_task
from ftdojo_gym.tasks.mathematics import EVAL_SIZE, FORMAT_LINE, SUBSETS, AIMETask

from .conftest import CachedTask

SEED = 5
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hub" / "AIME"
SCHEMAS = {
    "competition_math": {"problem", "solution", "answer"},
    "forum_solutions": {"problem", "solution", "answer", "votes"},
    "contest_mirror": {"problem", "solution", "answer"},
    "tutor_chat": {"question", "response", "answer"},
    "math_culture_chat": {"prompt", "response"},
    "olympiad_long": {"problem", "solution", "answer"},
    "word_problems": {"question", "solution", "final_answer"},
}


_CACHED = CachedTask(AIMETask, seed=SEED)
task, items, sources = _CACHED.task, _CACHED.items, _CACHED.sources


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def problem_of(prompt: str) -> str:
    assert prompt.endswith("\n" + FORMAT_LINE)
    return prompt[: -len(FORMAT_LINE) - 1]


# An independent solver of the offline problem texts: the generator and these
# few lines must agree on every answer.
def solve(problem: str) -> int:
    """The answer of an offline problem text, computed independently of the generator."""
    text = " ".join(problem.split())

    def find(pattern: str, string: str) -> re.Match[str] | None:
        return re.search(pattern, string, re.IGNORECASE)

    if m := find(r"Let \$N = (\d+)\$.*remainder when \$N\$ is divided by \$(\d+)\$", text):
        return int(m[1]) % int(m[2])
    if m := find(r"remainder when (\d+) is divided by (\d+)", text):
        return int(m[1]) % int(m[2])
    if m := find(r"(\d+)\^\{(\d+)\} \\cdot (\d+)\^\{(\d+)\}", text):
        return (int(m[2]) + 1) * (int(m[4]) + 1)
    if m := find(r"(?:units|last) digit of (?:\$N\$|\$(\d+)\^)", text):
        base = m[1] or find(r"N = (\d+)\^", text)[1]
        return int(base) % 10
    if m := find(r"less than or equal to (\d+) are multiples of (\d+)", text):
        return int(m[1]) // int(m[2])
    if m := find(r"multiples of (\d+) are there among \$1, 2, \\ldots, (\d+)\$", text):
        return int(m[2]) // int(m[1])
    if m := find(r"multiples of (\d+) that do not exceed (\d+)", text):
        return int(m[2]) // int(m[1])
    if m := find(r"letters of the word (\w+)", text):
        return factorial(len(m[1]))
    if m := find(r"(\d+) different \w+", text):
        return factorial(int(m[1]))
    if m := find(r"each of the (\d+) guests|tournament with (\d+) teams|There are (\d+) points", text):
        return comb(int(next(g for g in m.groups() if g)), 2)
    if m := find(r"sum of the digits of (?:the number )?(\d+)|N = (\d+)\$. Compute the sum", text):
        return sum(map(int, m[1] or m[2]))
    if find(r"reversing the digits|reverse order", text):
        n = find(r"(\d{3})", text)[1]
        return int(n[::-1])
    if m := find(r"(largest|smallest)", text):
        digits = sorted(find(r"digits (\d), (\d) and (\d)", text).groups(), reverse=m[1].lower() == "largest")
        return int("".join(digits))
    if m := find(r"\$x / (\d+) = (\d+)\$|\\frac\{x\}\{(\d+)\} = (\d+)\$", text):
        return int(m[1] or m[3]) * int(m[2] or m[4])
    if m := find(r"\$(\d+)x \+ (\d+) = (\d+)\$", text):
        return (int(m[3]) - int(m[2])) // int(m[1])
    if m := find(r"\$(\d+)x = (\d+)\$", text):
        return int(m[2]) // int(m[1])
    if m := find(r"\\cdots \+ (\d+)\$|from 1 to (\d+)\?|first (\d+) positive|has (\d+) logs", text):
        n = int(next(g for g in m.groups() if g))
        return n * (n + 1) // 2
    raise AssertionError(f"no solver for {problem!r}")


def test_names_and_attributes() -> None:
    assert task().name == "AIME" and task().domain == "Math"
    assert task().metric == "exact answer, verified with math-verify"
    assert make_task("FTDojo/AIME-v0").name == "AIME"
    assert task_recipes(task()).clean_sources == ("competition_math",)
    assert set(task_recipes(task()).harmful.templates) == {"forum_solutions", "contest_mirror"}


def test_determinism_and_seed_dependence() -> None:
    fresh = AIMETask()
    assert fresh.eval_items(SEED) == items()
    assert fresh.eval_items(SEED + 1) != items()
    same, other = fresh.sources(SEED), fresh.sources(SEED + 1)
    for name, dataset in sources().items():
        assert same[name].to_list() == dataset.to_list(), name
        assert other[name].to_list() != dataset.to_list(), name


def test_generation_is_fast() -> None:
    start = time.monotonic()
    AIMETask().sources(SEED + 7)
    AIMETask().eval_items(SEED + 7)
    assert time.monotonic() - start < 3


def test_split_coverage() -> None:
    assert len(items()) == EVAL_SIZE == 200
    for split in (items()[:100], items()[-100:]):
        assert Counter(item.subset for item in split) == {s: 25 for s in SUBSETS}
        families = Counter(item.meta["family"] for item in split)
        assert len(families) == 12 and min(families.values()) >= 8
    assert len({item.id for item in items()}) == 200
    assert len({normalise(item.prompt) for item in items()}) == 200


def test_eval_prompt_answer_and_reference() -> None:
    for item in items():
        problem = problem_of(item.prompt)
        answer = int(item.meta["answer"])
        assert 0 <= answer <= 999
        assert solve(problem) == answer, item.prompt
        assert extract_boxed(item.reference) == str(answer)
        assert item.reference.endswith(f"\\boxed{{{answer}}}")
        assert task().max_new_tokens_for(item) == task().max_new_tokens


def test_references_score_one_and_unboxed_scores_zero() -> None:
    assert task().grade(items(), [item.reference for item in items()]) == [1.0] * 200
    chatty = [f"The answer is {item.meta['answer']}." for item in items()]
    assert task().grade(items(), chatty) == [0.0] * 200
    plain_box = [f"\\boxed{{{item.meta['answer']}}}" for item in items()]
    assert task().grade(items(), plain_box) == [1.0] * 200
    off_by_one = [f"\\boxed{{{int(item.meta['answer']) + 1}}}" for item in items()]
    assert task().grade(items(), off_by_one) == [0.0] * 200
    with pytest.raises(ValueError):
        task().grade(items(), [])


def test_source_sizes_and_schemas() -> None:
    assert set(sources()) == set(SCHEMAS) == set(task().source_descriptions())
    for name, dataset in sources().items():
        assert set(dataset.column_names) == SCHEMAS[name], name
        assert 300 <= len(dataset) <= 2500, name
    for description in task().source_descriptions().values():
        assert not re.search(r"noisy|harmful|wrong|duplicate|helpful|clean", description, re.I)


def test_no_eval_problem_in_sources() -> None:
    texts = []
    for dataset in sources().values():
        for column in dataset.column_names:
            if isinstance(dataset[0][column], str):
                texts += dataset[column]
    corpus = "\n\x1e".join(normalise(t) for t in texts)
    for item in items():
        assert normalise(problem_of(item.prompt)) not in corpus, item.id


def test_clean_source_is_correct_and_in_eval_format() -> None:
    clean = sources()["competition_math"]
    template = task_recipes(task()).expert_template
    for row in clean.select(range(300)):
        assert solve(row["problem"]) == int(row["answer"]), row["problem"]
        assert extract_boxed(row["solution"]) == row["answer"]
        prompt = render_template(template["prompt"], row)
        assert prompt == f"{row['problem']}\n{FORMAT_LINE}"
        assert render_template(template["completion"], row) == row["solution"]
    # The same format as an evaluation item built from the same problem.
    item = items()[0]
    assert render_template(template["prompt"], {"problem": problem_of(item.prompt)}) == item.prompt
    assert Counter(len(s) < 400 for s in clean["solution"])[True] == len(clean)  # short solutions


def test_forum_labels_are_noisy_but_filterable() -> None:
    forum = sources()["forum_solutions"]
    checked = [(solve(r["problem"]) == int(r["answer"]), r["votes"]) for r in forum]
    assert all(extract_boxed(s) is not None for s in forum["solution"])
    wrong = [v for ok, v in checked if not ok]
    right = [v for ok, v in checked if ok]
    assert 0.38 < len(wrong) / len(checked) < 0.52
    assert sum(v < 3 for v in wrong) / len(wrong) > 0.8
    assert sum(v >= 3 for v in right) / len(right) > 0.85
    # The slips concentrate on some families (remainders), where most raw posts are wrong.
    def wrong_rate(keyword: str) -> float:
        oks = [ok for (ok, _), r in zip(checked, forum, strict=True) if keyword in r["problem"]]
        return 1 - sum(oks) / len(oks)

    assert wrong_rate("remainder when") > 0.6
    assert wrong_rate("divisors") < 0.3


def test_other_sources() -> None:
    mirror = sources()["contest_mirror"]
    unique = {normalise(r["problem"]) for r in mirror}
    assert 20 <= len(unique) <= 60 and len(mirror) >= 10 * len(unique)
    assert all(solve(r["problem"]) == int(r["answer"]) for r in mirror)

    chat = sources()["tutor_chat"]
    assert not any("boxed" in r for r in chat["response"])
    assert all(solve(r["question"]) == int(r["answer"]) for r in chat)
    stated = sum(r["answer"] in r["response"] for r in chat) / len(chat)
    assert 0.4 < stated < 0.9  # about half stop before the result

    assert not any("boxed" in r for r in sources()["math_culture_chat"]["response"])

    long = sources()["olympiad_long"]
    assert sum(len(p) > 4000 for p in long["problem"]) / len(long) > 0.85
    assert sum(len(p) < 400 for p in long["problem"]) >= 5  # a few usable after a length filter

    words = sources()["word_problems"]
    assert not any("boxed" in s for s in words["solution"])
    assert all(s.rstrip(".").endswith(a) or a in s for s, a in zip(words["solution"], words["final_answer"], strict=True))


def test_rescue_and_harmful_templates_render() -> None:
    rescue = {"prompt": "{question}\n" + FORMAT_LINE.replace("{", "{{").replace("}", "}}"),
              "completion": "{solution}\n\\boxed{{{final_answer}}}"}
    row = sources()["word_problems"][0]
    completion = render_template(rescue["completion"], row)
    assert extract_boxed(completion) == row["final_answer"]
    assert render_template(rescue["prompt"], row).endswith("\n" + FORMAT_LINE)
    for source, template in task_recipes(task()).harmful.templates.items():
        row = sources()[source][0]
        assert render_template(template["prompt"], row).endswith("\n" + FORMAT_LINE)
        render_template(template["completion"], row)


def test_real_data_fixtures_end_to_end() -> None:
    real = task().with_data(str(FIXTURES))
    real_items = real.eval_items(0)
    assert len(real_items) == 8
    assert all(item.prompt.endswith("\n" + FORMAT_LINE) for item in real_items)
    assert real_items[0].meta["answer"] == "21"  # "021" in the dataset
    assert {item.subset for item in real_items} == {"AIME 2022", "AIME 2023", "AIME 2024"}
    assert real.max_new_tokens_for(real_items[0]) > task().max_new_tokens
    assert real.grade(real_items, [item.reference for item in real_items]) == [1.0] * 8
    assert real.grade(real_items, [f"\\boxed{{{item.meta['answer']}}}" for item in real_items]) == [1.0] * 8
    assert real.grade(real_items, ["The answer is 21."] * 8) == [0.0] * 8

    real_sources = real.sources(0)
    assert set(real_sources) == {"competition_math"} and task_recipes(real).clean_sources == ("competition_math",)
    clean = real_sources["competition_math"]
    assert set(clean.column_names) == SCHEMAS["competition_math"]
    # Rows without an answer and copies of evaluation problems (re-typeset too) are dropped.
    assert len(clean) == 7
    assert not any("evaluation problem" in s for s in clean["solution"])
    assert all(extract_boxed(s) is not None for s in clean["solution"])
    row = clean[0]
    prompt = render_template(task_recipes(real).expert_template["prompt"], row)
    assert prompt == f"{row['problem']}\n{FORMAT_LINE}"
    assert set(task_recipes(real).harmful.templates) == set()  # no harmful sources in the real data


def test_hub_offline_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from ftdojo_gym.tasks import base

    monkeypatch.setattr(base, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(base.HubUnavailableError, match="data='offline'"):
        task().with_data("hub")


def test_real_generation_limits_come_from_the_data() -> None:
    """Real AIME items get a limit derived from their reference and the training
    solutions (>= 1,024 new tokens, never the old fixed 512), and gold answers score 1."""
    from ftdojo_gym.tasks import make_task
    from ftdojo_gym.tasks.mathematics import (
        REAL_MAX_NEW_TOKENS,
        REAL_MIN_NEW_TOKENS,
        real_new_token_limit,
    )

    real = make_task("AIME", data=str(Path(__file__).parents[1] / "fixtures" / "hub" / "AIME"))
    its = real.eval_items(0)
    assert all(REAL_MIN_NEW_TOKENS <= real.max_new_tokens_for(i) <= REAL_MAX_NEW_TOKENS for i in its)
    assert real.grade(its, [i.reference for i in its]) == [1.0] * len(its)
    assert real_new_token_limit("x" * 3000) == 2048  # 1,000 tokens of reference, twice, rounded to 256
    assert real_new_token_limit("x", ["y" * 9000] * 10) == REAL_MAX_NEW_TOKENS

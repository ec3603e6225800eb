"""The per-task benchmark table: chance levels, the format-only recipe, per-item hidden-test
scores, paired bootstrap intervals, grader fingerprints, and an end-to-end run on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftdojo_benchmarks import task_table
from ftdojo_benchmarks.task_table import (
    HiddenTestRecorder,
    chance_level,
    paired_bootstrap,
    render_table,
)
from ftdojo_gym.data.workspace import render_template
from ftdojo_gym.recipes import TaskRecipes, answer_fields, shuffle_answers, task_recipes
from ftdojo_gym.tasks import make_task
from ftdojo_gym.tasks.patent import PatentTask

NOC = "FTDojo/Patent-NOC4PC-v0"


def _hidden(task, n: int = 100):
    return task.split(task.eval_items(0), n)[1]


# ------------------------------------------------------------- format-only


def test_answer_fields_and_shuffle() -> None:
    template = {"prompt": "{q}\n{ctx}", "completion": "Answer: {a} ({why})"}
    assert answer_fields(template) == ("a", "why")
    assert answer_fields({"prompt": "{instruction}\n{input}", "completion": "{output}"}) == ("output",)
    assert answer_fields({"prompt": "{{literal}} {q}", "completion": "{q}"}) == ()
    rows = [{"q": f"q{i}", "ctx": f"c{i}", "a": f"a{i}", "why": f"w{i}"} for i in range(50)]
    out = shuffle_answers(rows, template, seed=1)
    assert [r["q"] for r in out] == [r["q"] for r in rows] and [r["ctx"] for r in out] == [r["ctx"] for r in rows]
    assert sorted(r["a"] for r in out) == sorted(r["a"] for r in rows)  # a permutation of the answers
    assert all(r["a"] != f"a{i}" for i, r in enumerate(out))  # nobody keeps its own answer
    assert all(r["a"][1:] == r["why"][1:] for r in out)  # the answer fields move together
    assert shuffle_answers(rows, template, seed=1) == out and shuffle_answers(rows, template, seed=2) != out
    assert shuffle_answers(rows[:1], template) == rows[:1]


def test_format_only_is_derived_from_the_expert_recipe() -> None:
    task = PatentTask("PI4PC")
    recipes = task_recipes(task)
    fmt = recipes.format_only
    assert fmt.shuffled_answers and fmt.templates == recipes.expert.templates
    assert not recipes.expert.shuffled_answers and not recipes.harmful.shuffled_answers
    assert fmt.restricted_to(["examiner_records"]).shuffled_answers
    sources = task.sources(0)
    served = fmt.prepare_sources(sources, seed=0)
    assert set(served) == set(sources) and served["crowd_labels"] is sources["crowd_labels"]
    clean, shuffled = sources["examiner_records"], served["examiner_records"]
    assert shuffled["input"] == clean["input"] and sorted(shuffled["output"]) == sorted(clean["output"])
    same = sum(a == b for a, b in zip(shuffled["output"], clean["output"], strict=True))
    assert same / len(clean) < 0.25  # answers no longer follow from the prompts (PI4PC: ~1 in 100 keys collide)
    row = shuffled[0]
    assert "\nAnswer: " in render_template(fmt.templates["examiner_records"]["completion"], row)
    assert TaskRecipes(("x",), {"prompt": "{p}", "completion": "{c}"}).format_only.prepare_sources({}) == {}


# --------------------------------------------------------------------- chance


def test_chance_levels_of_the_patent_tasks() -> None:
    noc = make_task(NOC)
    level = chance_level(noc, _hidden(noc))
    assert level["constant"] == pytest.approx(0.5 / 3, abs=0.01)  # one class of three balanced
    assert 0.25 < level["random"] < 0.42 and level["chance"] == level["random"]
    pi = make_task("FTDojo/Patent-PI4PC-v0")
    assert 0.1 < chance_level(pi, _hidden(pi))["chance"] < 0.32  # one paragraph of five
    finance = make_task("FTDojo/FinanceIQ-v0")  # one answer per letter; the splits are balanced
    assert chance_level(finance, _hidden(finance))["constant"] == pytest.approx(0.25)
    reaction = make_task("FTDojo/ChemCoT-Reaction-v0")  # no chance_outputs: the split's distinct references
    hidden = _hidden(reaction)
    pool = list(dict.fromkeys(it.reference for it in hidden))
    assert task_table.answer_candidates(reaction, hidden) == [pool] * len(hidden)


def test_the_chance_row_is_stale_when_the_guessers_answers_change(monkeypatch) -> None:
    """The chance row's fingerprint covers ``chance_outputs``: new guesser answers, a new row."""
    from ftdojo_gym.tasks.finance import FinanceIQTask

    before = task_table.task_fingerprint("FTDojo/FinanceIQ-v0", 0, None)
    expert = task_table.task_fingerprint("FTDojo/FinanceIQ-v0", 0, "expert")

    def chance_outputs(self, item):  # another set of guesses
        return ["Answer: A"]

    monkeypatch.setattr(FinanceIQTask, "chance_outputs", chance_outputs)
    task_table.task_fingerprint.cache_clear()  # cached per process; the code does not change in a run
    assert task_table.task_fingerprint("FTDojo/FinanceIQ-v0", 0, None) != before
    assert task_table.task_fingerprint("FTDojo/FinanceIQ-v0", 0, "expert") == expert  # model rows unaffected
    monkeypatch.undo()
    task_table.task_fingerprint.cache_clear()


# ----------------------------------------------------------------- intervals


def _row(ids: list[str], scores: list[float], outputs: list[str]) -> dict:
    return {"hidden_test_ids": ids, "hidden_test_item_scores": scores, "hidden_test_outputs": outputs}


def test_paired_bootstrap_mean_metric() -> None:
    task = make_task("FTDojo/Patent-PI4PC-v0")
    items = _hidden(task)
    ids = [it.id for it in items]
    better = _row(ids, [1.0] * 60 + [0.0] * 40, [""] * 100)
    worse = _row(ids, [1.0] * 20 + [0.0] * 80, [""] * 100)
    diff, lo, hi = paired_bootstrap(task, items, better, worse)
    assert diff == pytest.approx(0.4) and 0.25 < lo < diff < hi < 0.55
    diff, lo, hi = paired_bootstrap(task, items, better, better)
    assert diff == lo == hi == 0.0  # paired: the same items resampled for both
    assert paired_bootstrap(task, items, better, {}) is None  # an old row without per-item scores
    assert paired_bootstrap(task, items, better, _row(ids[::-1], [0.0] * 100, [""] * 100)) is None


def test_paired_bootstrap_split_metric_uses_the_task_aggregate() -> None:
    task = make_task(NOC)
    items = _hidden(task)
    ids = [it.id for it in items]
    right = [it.reference for it in items]
    constant = ["Answer: 103"] * len(items)
    a = _row(ids, task.grade(items, right), right)
    b = _row(ids, task.grade(items, constant), constant)
    diff, lo, hi = paired_bootstrap(task, items, a, b)
    # macro-F1 1.0 vs a constant answer's ~1/6 (not the accuracy difference, ~2/3)
    assert diff == pytest.approx(1.0 - task.aggregate(items, b["hidden_test_item_scores"], constant))
    assert diff > 0.75 and lo > 0.7


# ------------------------------------------------------------ fingerprints


def test_hidden_test_recorder_keeps_only_hidden_calls() -> None:
    task = PatentTask("NOC4PC")
    items = task.eval_items(0)
    validation, hidden = task.split(items, 5)
    recorder = HiddenTestRecorder(task, hidden)
    task.grade(validation, [it.reference for it in validation])
    task.grade(hidden, ["Answer: 102"] * len(hidden))
    recorder.restore()
    assert len(recorder.calls) == 1 and recorder.calls[0][1] == ["Answer: 102"] * 5
    assert "grade" not in vars(task)  # the class's grade again


def test_stale_results_are_counted_not_shown() -> None:
    rows = [{"task": NOC, "recipe": r, "model": "tiny", "max_steps": 1, "eval_items": 50, "seed": 0,
             "base_hidden_test": 0.0, "hidden_test": 0.9, "task_fingerprint": "old"} for r in ("expert", "harmful")]
    text = render_table(rows)
    assert "Tasks measured: 0." in text and "90.0" not in text
    assert "Stale: 2 (task, recipe) results" in text
    assert "Stale:" not in render_table([])


# --------------------------------------------------------------- end to end


def test_one_recipe_end_to_end_on_the_tiny_model(tmp_path: Path, isolated_cache: Path) -> None:
    out, table = tmp_path / "results.json", tmp_path / "results.md"
    # An old (50-item, pre-fingerprint) row stays readable and is simply stale.
    out.write_text(json.dumps([{"task": NOC, "recipe": "expert", "model": "tiny", "max_steps": 1, "eval_items": 50,
                                "seed": 0, "base_hidden_test": 0.0, "hidden_test": 0.9}]))
    argv = ["--task", NOC, "--recipe", "format_only", "--model", "tiny", "--max-steps", "1", "--eval-limit", "4",
            "--out", str(out), "--table", str(table)]
    assert task_table.main(argv) == 0
    rows = json.loads(out.read_text())
    chance = [r for r in rows if r["recipe"] == "chance"]
    fmt = [r for r in rows if r["recipe"] == "format_only"]
    assert len(chance) == 1 and 0.0 <= chance[0]["chance"] <= 1.0
    assert len(fmt) == 1 and len(fmt[0]["hidden_test_ids"]) == 4
    hidden_ids = [it.id for it in _hidden(make_task(NOC), 4)]
    assert fmt[0]["hidden_test_ids"] == hidden_ids and len(fmt[0]["hidden_test_outputs"]) == 4
    task = make_task(NOC)
    items = _hidden(task, 4)
    assert task.aggregate(items, fmt[0]["hidden_test_item_scores"], fmt[0]["hidden_test_outputs"]) == \
        pytest.approx(fmt[0]["hidden_test"])
    text = table.read_text()
    assert "| chance | base | format-only | expert | harmful |" in text
    assert "90.0" not in text  # the stale old row is not shown
    # Resumable: a second run finds both rows done.
    assert task_table.main(argv) == 0
    assert len(json.loads(out.read_text())) == len(rows)
    table.unlink()
    assert task_table.main(["--table-only", "--out", str(out), "--table", str(table)]) == 0
    assert table.read_text() == render_table(rows)


def test_two_runs_sharing_one_results_file_keep_each_others_rows(tmp_path: Path) -> None:
    """Two task-table processes (e.g. one thread each on two cores) append to one file:
    a row the other run wrote after this one loaded the file is kept, not overwritten."""
    out = tmp_path / "table.json"
    task_table.save_results(out, [{"task": "A", "recipe": "expert"}])
    mine = task_table.load_results(out)  # this run's view, loaded at its start
    task_table.append_result(out, {"task": "B", "recipe": "expert"})  # the other run
    mine[:] = task_table.append_result(out, {"task": "A", "recipe": "harmful"})
    assert [(r["task"], r["recipe"]) for r in task_table.load_results(out)] == [
        ("A", "expert"), ("B", "expert"), ("A", "harmful")]
    assert mine == task_table.load_results(out)


def test_rows_carry_the_fingerprint_of_the_code_that_ran_not_of_a_file_edited_since(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The grader fingerprint reads source files. A task file edited on disk while a long run is
    on its first task must not change the fingerprint stamped on a later task's rows: the run
    takes every task's grader fingerprint at its start, for the code it runs."""
    from ftdojo_gym.tasks import fingerprint as fp

    ids = ["FTDojo/Patent-PI4PC-v0", "FTDojo/Patent-PAR4PC-v0"]
    expected = [task_table.task_fingerprint(t, 0, "expert") for t in ids]
    fp._fingerprint.cache_clear()
    task_table.task_fingerprint.cache_clear()
    stamped: list[str] = []

    def the_file_is_edited_during_the_first_run(task_id, recipe, args, console, fingerprint):
        stamped.append(fingerprint)
        monkeypatch.setattr(fp, "grading_sources", lambda task_type: {"edited": "since the run started"})
        return {"task": task_id, "recipe": recipe, "task_fingerprint": fingerprint}

    monkeypatch.setattr(task_table, "run_recipe", the_file_is_edited_during_the_first_run)
    monkeypatch.setattr(task_table, "chance_row", lambda task_id, args, fingerprint: {"task": task_id, "recipe": "chance"})
    monkeypatch.setattr(task_table, "render_table", lambda results: "")
    argv = [*(x for t in ids for x in ("--task", t)), "--recipe", "expert",
            "--out", str(tmp_path / "t.json"), "--table", str(tmp_path / "t.md")]
    try:
        assert task_table.main(argv) == 0
    finally:
        fp._fingerprint.cache_clear()
        task_table.task_fingerprint.cache_clear()
    assert stamped == expected


def test_the_table_names_each_task_that_misses_and_what_it_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task(NOC)
    hidden = _hidden(task, 4)
    outputs = [f"Answer: {it.meta['label']}" for it in hidden]
    scores = task.grade(hidden, outputs)

    def row(recipe: str, **extra):
        return {"task": NOC, "recipe": recipe, "model": "tiny", "max_steps": 1, "eval_items": 4, "seed": 0,
                "task_fingerprint": task_table.task_fingerprint(NOC, 0, None if recipe == "chance" else recipe),
                **extra}

    same = {"base_hidden_test": 0.0, "hidden_test": 1.0, "hidden_test_ids": [it.id for it in hidden],
            "hidden_test_item_scores": scores, "hidden_test_outputs": outputs}
    rows = [row("expert", **same), row("harmful", **same), row("chance", chance=1.0, constant=1.0, random=0.5)]
    monkeypatch.setitem(task_table.MISS_NOTES, NOC, "Why it misses.")
    text = render_table(rows)
    assert (f"- {NOC}: expert - harmful interval includes 0; expert at or below chance. Why it misses."
            in text.splitlines())
    rows[1] = row("harmful", **{**same, "hidden_test": 0.0, "hidden_test_item_scores": [0.0] * 4,
                                 "hidden_test_outputs": ["no answer"] * 4})
    rows[2] = row("chance", chance=0.3, constant=0.3, random=0.2)
    assert "Misses:" not in render_table(rows)

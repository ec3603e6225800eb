"""ChemCoT-MolEdit version 2 (docs/dev/task-redesign.md): the edit is a copy of the input.

No model needed: every reference is the input as written with its last group cut
off and/or the named piece appended; the official count check passes the
references and fails the input itself; answers that ignore the input (another
item's answer, the task table's chance level) stay low, where version 1's
deletions let any molecule without the group pass (chance 38 %); the version
moves MolEdit's grader fingerprint and not MolOpt's (whose outcome table ships).
"""

from __future__ import annotations

import re

from ftdojo_benchmarks.task_table import chance_level
from ftdojo_gym.grading.chemistry_grading import count_group, parse_smiles
from ftdojo_gym.recipes import shuffle_answers, task_recipes
from ftdojo_gym.tasks import make_task
from ftdojo_gym.tasks.chemistry import GROUP_PIECES
from ftdojo_gym.tasks.fingerprint import grader_fingerprint

MOLEDIT, MOLOPT = "FTDojo/ChemCoT-MolEdit-v0", "FTDojo/ChemCoT-MolOpt-v0"
QUESTION = re.compile(r"Input Molecule: (\S+), (.*)\.$")
ADD = re.compile(r"Functional Group to add: (\w+) \((\S+)\)")
REMOVE = re.compile(r"Functional Group to remove: (\w+)")

_TASK = make_task(MOLEDIT)
_ITEMS = _TASK.eval_items(0)


def _expected(prompt: str) -> str:
    """The answer by the copy rule, re-derived from the prompt text alone."""
    line = next(x for x in prompt.split("\n") if x.startswith("Input Molecule: "))
    source, edits = QUESTION.match(line).groups()
    out = source
    if removed := REMOVE.search(edits):
        piece = next(p for p in sorted(GROUP_PIECES[removed.group(1)], key=len, reverse=True) if out.endswith(p))
        out = out[: -len(piece)]
        assert out.endswith(")"), "the group stays once, as the branch before the cut"
    if added := ADD.search(edits):
        assert added.group(2) in GROUP_PIECES[added.group(1)]
        out += added.group(2)
    return out


def test_every_reference_is_the_input_cut_and_or_extended_and_passes_the_official_check() -> None:
    assert _TASK.version == "2"
    for item in _ITEMS:
        assert item.reference == f"Answer: {_expected(item.prompt)}", item.id
        assert count_group(parse_smiles(item.meta["answer"]), item.meta["removed"] or item.meta["added"]) >= 1
    refs = [i.reference for i in _ITEMS]
    assert _TASK.grade(_ITEMS, refs) == [1.0] * len(_ITEMS)
    echo = [f"Answer: {i.meta['source']}" for i in _ITEMS]
    assert sum(_TASK.grade(_ITEMS, echo)) == 0


def test_answers_that_ignore_the_input_score_low() -> None:
    hidden = _TASK.split(_ITEMS, 100)[1]
    assert {i.subset for i in hidden} == {"add", "delete", "sub"}
    assert chance_level(_TASK, hidden)["chance"] <= 0.20
    rows = [{"output": i.reference} for i in _ITEMS]
    shuffled = [r["output"] for r in shuffle_answers(rows, {"prompt": "", "completion": "{output}"})]
    assert sum(_TASK.grade(_ITEMS, shuffled)) / len(_ITEMS) <= 0.20  # what format-only can reach


def test_the_expert_recipe_trains_on_the_copy_rule() -> None:
    from ftdojo_gym.data.workspace import render_template

    recipes = task_recipes(_TASK)
    clean = _TASK.sources(0)[recipes.clean_sources[0]]
    for row in clean.select(range(200)):
        prompt = render_template(recipes.expert_template["prompt"], row)
        assert render_template(recipes.expert_template["completion"], row) == f"Answer: {_expected(prompt)}"


def test_the_version_moves_moledit_s_fingerprint_and_not_molopt_s() -> None:
    assert grader_fingerprint(make_task(MOLEDIT)) != grader_fingerprint(make_task(MOLOPT))
    assert grader_fingerprint(make_task(MOLOPT)) == "9d421257e568ddcc"  # the shipped MolOpt table's


def test_the_crowd_s_errors_are_one_systematic_rule() -> None:
    """About 70 % of crowd answers are wrong, and each wrong one cuts the whole branch with the
    group (or leaves the input unchanged for an addition): a recipe trained on them learns that."""
    crowd = _TASK.sources(0)["crowd_chem_qa"].select(range(400))
    wrong = 0
    for row in crowd:
        prompt = f"{row['instruction']}\n{row['input']}"
        expected = _expected(prompt)
        if row["output"] != f"Answer: {expected}":
            wrong += 1
            source, edits = QUESTION.match(next(x for x in prompt.split("\n") if x.startswith("Input"))).groups()
            added = ADD.search(edits)
            if removed := REMOVE.search(edits):
                piece = next(p for p in sorted(GROUP_PIECES[removed.group(1)], key=len, reverse=True)
                             if source.endswith(p))
                kept, depth = source[: -len(piece)], 0
                for i in range(len(kept) - 1, -1, -1):  # the branch's opening parenthesis
                    depth += {")": 1, "(": -1}.get(kept[i], 0)
                    if depth == 0:
                        break
                cut = kept[:i] + (added.group(2) if added else "")
                assert row["output"] in (f"Answer: {cut}", f"Answer: {source}")
            else:
                assert row["output"] == f"Answer: {source}"
    assert 0.6 < wrong / len(crowd) < 0.8

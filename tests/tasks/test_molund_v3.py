"""ChemCoT-MolUnd version 3 (docs/dev/task-redesign.md): the Murcko scaffold as a span of the prompt.

Everything here needs no trained model: the gold answers are spans found by one
rule and are RDKit's scaffolds; answers that ignore the input (echo, a
constant, another item's answer, the task table's chance level) stay at or
below 10 %; no evaluation molecule is in a source; the crowd's errors are the
gold span plus or minus one unit with low agreement; the recipes train on the
evaluation format (expert) and on the crowd errors (harmful).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold

from ftdojo_benchmarks.task_table import chance_level
from ftdojo_gym.data.workspace import render_template
from ftdojo_gym.grading.chemistry_grading import canonical_smiles, parse_smiles, same_molecule
from ftdojo_gym.recipes import shuffle_answers, task_recipes
from ftdojo_gym.tasks import make_task
from ftdojo_gym.tasks.chemistry import FORMAT_LINE, INSTRUCTIONS, KINDS, ChemCoTTask, scaffold_span
from ftdojo_gym.tasks.fingerprint import grader_fingerprint
from ftdojo_gym.utils import check_task

from .conftest import CachedTask

SEED = 0  # the env's data seed: the split the benchmark scores
LEVEL = 0.10  # what an answer that ignores the input may score at most
QUESTION = re.compile(r"Input Molecule: (\S+)\. Give the Murcko scaffold\.")
RING_SYSTEM = re.compile(r"Input Molecule: (\S+), Ring System: (\S+)\.")
# The span rule written independently of the generator: the atom letter before the
# first ring-closure digit up to the last digit (the pools have no bracket ring atoms
# and no digits outside ring closures).
SPAN = re.compile(r"[A-Za-z]\d.*\d")
ATOM = re.compile(r"\[[^\]]*\]|Br|Cl|[BCNOSPFI]|[bcnosp]")

_CACHED = CachedTask(ChemCoTTask, seed=SEED, n_config=1)


def task() -> ChemCoTTask:
    return _CACHED.task("MolUnd")  # type: ignore[return-value]


def items(seed: int = SEED):
    return _CACHED.items("MolUnd", seed)


def sources():
    return _CACHED.sources("MolUnd")


def line_of(text: str) -> str:
    """The item line of a prompt or an ``input`` field (the line before the format line)."""
    return text.split("\nThe answer should follow")[0].strip().split("\n")[-1].strip()


def molecule(text: str) -> str:
    match = QUESTION.fullmatch(line_of(text)) or RING_SYSTEM.fullmatch(line_of(text))
    assert match, text
    return match.group(1)


def murcko(smiles: str) -> str:
    return Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(Chem.MolFromSmiles(smiles)), isomericSmiles=False)


def n_rings(smiles: str) -> int:
    return Chem.rdMolDescriptors.CalcNumRings(Chem.MolFromSmiles(smiles))


def score(outputs: list[str], its=None) -> float:
    its = items() if its is None else its
    return sum(task().grade(its, outputs)) / len(its)


def test_version_kinds_and_mix() -> None:
    t = task()
    assert t.version == "3" and KINDS["MolUnd"] == ("scaffold", "ring_system")
    counts = Counter(i.subset for i in items())
    assert counts["scaffold"] >= len(items()) / 2 and counts["ring_system"] > 0
    assert set(counts) == set(KINDS["MolUnd"])
    # The version moves the grader fingerprint, so MolUnd's stored rows go stale; MolOpt's stay.
    assert grader_fingerprint(t) != grader_fingerprint(make_task("FTDojo/ChemCoT-MolOpt-v0"))


def test_gold_is_a_span_of_the_prompt_found_by_the_rule() -> None:
    scaffolds = [i for i in items() if i.subset == "scaffold"]
    for item in scaffolds:
        assert item.prompt.split("\n")[0] == INSTRUCTIONS["scaffold"]
        assert item.prompt.split("\n")[2] == FORMAT_LINE["MolUnd"]
        smiles, gold = molecule(item.prompt), item.reference.removeprefix("Answer: ")
        assert item.reference == f"Answer: {gold}" and gold in item.prompt and gold in smiles
        assert gold != smiles  # a head or a tail: the molecule is never its own scaffold
        assert scaffold_span(smiles) == gold == SPAN.search(smiles).group(), item.id
    # The clean and the cross-domain sources follow the same rule.
    for row in sources()["chemcot_sft"]:
        if row["subtask"] == "scaffold":
            smiles = molecule(row["input"])
            assert row["output"] == f"Answer: {scaffold_span(smiles)}" == f"Answer: {SPAN.search(smiles).group()}"
    for row in sources()["descriptor_table"]:
        assert row["scaffold"] == scaffold_span(row["smiles"]) == SPAN.search(row["smiles"]).group()


def test_gold_is_the_murcko_scaffold_and_scores_one() -> None:
    its = items()
    for item in its:
        if item.subset == "scaffold":
            assert canonical_smiles(item.meta["answer"]) == murcko(molecule(item.prompt)), item.id
    assert task().grade(its, [i.reference for i in its]) == [1.0] * len(its)
    # Exact scaffold, not exact text: any SMILES of the scaffold passes.
    scaffolds = [i for i in its if i.subset == "scaffold"]
    rewritten = [f"Answer: {Chem.MolToSmiles(Chem.MolFromSmiles(i.meta['answer']), doRandom=True)}" for i in scaffolds]
    assert task().grade(scaffolds, rewritten) == [1.0] * len(scaffolds)
    # One and two rings in turn: both kinds of core are asked.
    assert Counter(n_rings(i.meta["answer"]) for i in scaffolds) == {1: len(scaffolds) // 2, 2: len(scaffolds) // 2}


@pytest.mark.parametrize("seed", [SEED, 1])
@pytest.mark.parametrize("split", ["all", "validation", "hidden_test"])
def test_answers_that_ignore_the_input_score_at_most_ten_percent(seed: int, split: str) -> None:
    its = items(seed)
    if split != "all":
        its = task().split(its)[split == "hidden_test"]
    n = len(its)
    echo = score([f"Answer: {molecule(i.prompt)}" for i in its], its)
    references = list(dict.fromkeys(i.reference for i in its))
    best_constant = max(score([r] * n, its) for r in references)
    rows = [{"prompt": i.prompt, "reference": i.reference} for i in its]
    shuffled = shuffle_answers(rows, {"prompt": "{prompt}", "completion": "{reference}"}, seed=seed)
    assert sum(r["reference"] != i.reference for r, i in zip(shuffled, its, strict=True)) > n / 2
    another = score([r["reference"] for r in shuffled], its)
    chance = chance_level(task(), its, seed=seed)["chance"]
    levels = {"echo": echo, "constant": best_constant, "shuffled": another, "chance_level": chance}
    assert all(level <= LEVEL for level in levels.values()), levels
    assert echo == 0.0  # the input molecule is never its own scaffold under the exact metric


def test_check_task_passes() -> None:
    report = check_task("FTDojo/ChemCoT-MolUnd-v0")
    assert report.n_items == 200 and report.n_hidden_test == 100 and "descriptor_table" in report.sources


def _smiles_in(text: str) -> set[str]:
    """Canonical SMILES of the whitespace-separated words of ``text`` that are
    molecules with a ring (every evaluation molecule has one: a ring-closure digit)."""
    out = set()
    for word in text.split():
        word = word.strip(",;:")
        for candidate in (word, word.rstrip(".")):
            if re.search(r"\d", candidate) and re.fullmatch(r"[A-Za-z0-9()=#\[\]+\-.@/\\%]+", candidate):
                canon = canonical_smiles(candidate) if parse_smiles(candidate) is not None else None
                if canon:
                    out.add(canon)
    return out


def test_no_evaluation_molecule_in_any_source() -> None:
    its = items()
    eval_molecules = {canonical_smiles(molecule(i.prompt)) for i in its}
    assert None not in eval_molecules and len(eval_molecules) == len(its)
    texts = [value for dataset in sources().values() for row in dataset for value in row.values()
             if isinstance(value, str)]
    corpus = "\n\x1e".join(texts)
    for item in its:
        assert line_of(item.prompt) not in corpus, item.id
    seen = set().union(*map(_smiles_in, texts))
    assert len(seen) > 1000  # the sources' molecules were found
    assert not seen & eval_molecules


def _plus_or_minus_one_unit(wrong: str, gold: str, smiles: str) -> bool:
    """``wrong`` is a span of ``smiles`` that is ``gold`` with one atom more at either end
    (the tail's first atom, the head's last), or only the first ring of a two-ring ``gold``."""
    if wrong not in smiles:
        return False
    if wrong.startswith(gold) and ATOM.fullmatch(wrong[len(gold):]) and gold + wrong[len(gold):] in smiles:
        return smiles.index(gold) == smiles.index(wrong)
    if wrong.endswith(gold) and ATOM.fullmatch(wrong[: -len(gold)]):
        return True
    return gold.startswith(wrong) and n_rings(wrong) == 1 and n_rings(gold) == 2


def test_crowd_errors_are_the_gold_span_plus_or_minus_one_unit_with_low_agreement() -> None:
    right, wrong, kinds = [], [], Counter()
    for row in sources()["crowd_chem_qa"]:
        answer, agreement = row["output"].removeprefix("Answer: "), float(row["annotator_agreement"])
        if row["subtask"] == "ring_system":
            smiles, ring = RING_SYSTEM.fullmatch(line_of(row["input"])).groups()
            gold = "Yes" if Chem.MolFromSmiles(smiles).HasSubstructMatch(Chem.MolFromSmiles(ring)) else "No"
            assert answer in ("Yes", "No")
            (right if answer == gold else wrong).append(agreement)
            continue
        smiles = molecule(row["input"])
        gold = SPAN.search(smiles).group()
        if answer == gold:
            right.append(agreement)
            continue
        wrong.append(agreement)
        assert _plus_or_minus_one_unit(answer, gold, smiles), (smiles, gold, answer)
        # A wrong label is wrong under the metric too: a valid SMILES of another molecule.
        assert parse_smiles(answer) is not None and not same_molecule(answer, gold)
        kinds["minus" if gold.startswith(answer) else "plus"] += 1
    assert 0.35 < len(wrong) / (len(wrong) + len(right)) < 0.55
    assert kinds["plus"] > 0 and kinds["minus"] > 0
    # Filterable: wrong rows have lower agreement, and a cut at 0.6 drops most of them.
    assert sum(wrong) / len(wrong) < sum(right) / len(right) - 0.2
    assert sum(a < 0.6 for a in wrong) / len(wrong) > 0.8 and sum(a >= 0.6 for a in right) / len(right) > 0.9


def test_expert_template_reproduces_the_evaluation_format() -> None:
    recipes = task_recipes(task())
    template = recipes.expert_template
    for row in sources()["chemcot_sft"].select(range(200)):
        prompt, completion = render_template(template["prompt"], row), render_template(template["completion"], row)
        instruction, line, fmt = prompt.split("\n")
        assert instruction == INSTRUCTIONS[row["subtask"]] and fmt == FORMAT_LINE["MolUnd"]
        assert (QUESTION if row["subtask"] == "scaffold" else RING_SYSTEM).fullmatch(line), line
        if row["subtask"] == "scaffold":
            assert completion == f"Answer: {scaffold_span(molecule(line))}"
        else:
            assert completion in ("Answer: Yes", "Answer: No")
    # An evaluation item's own fields render to its prompt exactly.
    for item in items()[:20]:
        instruction, rest = item.prompt.split("\n", 1)
        assert render_template(template["prompt"], {"instruction": instruction, "input": rest}) == item.prompt
    # The format-only control: the same rows and template, each with another row's answer.
    clean = sources()["chemcot_sft"]
    shuffled = recipes.format_only.prepare_sources({"chemcot_sft": clean})["chemcot_sft"]
    assert shuffled["input"] == clean["input"] and Counter(shuffled["output"]) == Counter(clean["output"])
    assert sum(a != b for a, b in zip(shuffled["output"], clean["output"], strict=True)) > 0.8 * len(clean)


def test_harmful_recipe_trains_on_the_crowd_errors() -> None:
    harmful = task_recipes(task()).harmful.templates
    assert "crowd_chem_qa" in harmful
    template = harmful["crowd_chem_qa"]
    pairs = [(render_template(template["prompt"], r), render_template(template["completion"], r), r)
             for r in sources()["crowd_chem_qa"] if r["subtask"] == "scaffold"]
    # In the evaluation format, with the crowd's answers as they are (no agreement filter):
    # the off-by-one spans become training completions.
    errors = [(p, c) for p, c, r in pairs if c != f"Answer: {scaffold_span(molecule(r['input']))}"]
    assert len(errors) > 0.35 * len(pairs)
    for prompt, completion in errors[:100]:
        assert QUESTION.fullmatch(prompt.split("\n")[1]) and prompt.split("\n")[2] == FORMAT_LINE["MolUnd"]
        assert completion.startswith("Answer: ")
    for name, template in harmful.items():  # every harmful source renders
        render_template(template["prompt"], sources()[name][0])
        render_template(template["completion"], sources()[name][0])


def test_descriptor_table_teaches_the_copy_rule_on_other_rings() -> None:
    eval_scaffolds = {canonical_smiles(i.meta["answer"]) for i in items() if i.subset == "scaffold"}
    prompt_t = INSTRUCTIONS["scaffold"] + "\nInput Molecule: {smiles}. Give the Murcko scaffold.\n" + FORMAT_LINE["MolUnd"]
    table = sources()["descriptor_table"]
    assert set(table.column_names) == {"library", "smiles", "scaffold"} and len(table) >= 1000
    for row in table:
        assert canonical_smiles(row["scaffold"]) == murcko(row["smiles"])
        assert canonical_smiles(row["scaffold"]) not in eval_scaffolds  # other ring systems
        assert QUESTION.fullmatch(render_template(prompt_t, row).split("\n")[1])
    assert Counter(n_rings(s) >= 2 for s in table["scaffold"])[True] > len(table) / 4


def test_gold_answers_fit_the_generation_limit(token_counter) -> None:
    t = task()
    for item in items():
        assert len(token_counter.encode(item.reference).ids) <= t.max_new_tokens_for(item) - 8, item.id

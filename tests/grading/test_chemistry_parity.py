"""Parity of the ChemCoTBench graders with the official evaluation code.

The fixtures under ``tests/fixtures/hub/ChemCoTBench-logs`` are the benchmark's own
published result files (github.com/IDEA-XL/ChemCoTBench, ``baseline_and_eval/logs``,
commit ac04f91): Claude 3.7's answers for MolUnd, MolEdit and MolOpt and ether0's
for forward reaction prediction, trimmed to the fields the evaluation reads
(ether0's responses cut to their ``<|answer_start|>`` span).

``OFFICIAL`` holds the scores of the official code on these files, computed here
by running the repository's ``eval/eval_molund.py``, ``eval_moledit.py``,
``eval_molopt.py`` and ``eval_metric.py`` with the drivers of its notebooks
(``molund_eval_demo.ipynb`` & co.); PyTDC is not installed, so its ``Oracle``
was replaced by TDC's own ``penalized_logp`` and ``qed`` definitions. Every number
equals the one the notebooks print (the authors' run), which confirms the
set-up. A grader that drifts from the official behaviour fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ftdojo_gym.grading import chemistry_grading as G

LOGS = Path(__file__).parents[1] / "fixtures" / "hub" / "ChemCoTBench-logs"

#: Official scores on the fixture files (see the module docstring for how they were computed).
OFFICIAL: dict[str, float] = {
    # MolUnd: mean absolute error over parsed counts; Yes/No and scaffold: mean over parsed answers.
    "fg_samples": 0.21, "ring_count": 1.6,
    "ring_system_scaffold": 0.7948717948717948, "mutated": 0.7209302325581395, "permutated": 0.9591836734693877,
    "murcko_scaffold": 0.3995904332070048,
    # MolEdit: correct_rate = correct / parsed answers.
    "add": 0.85, "delete": 0.8421052631578947, "sub": 0.847457627118644,
    # MolOpt: improvement success_rate over all rows.
    "logp": 0.80, "solubility": 0.75, "qed": 0.73,
    # Reaction (forward prediction): exact_match of MoleculeSMILESEvaluator.
    "fs": 0.74,
}


def _rows(name: str) -> list[dict[str, Any]]:
    path = next(LOGS.glob(f"{name}.*.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _official_json(value: Any) -> dict[str, Any] | None:
    """The official ``tranform_str_to_json``: which rows the official code can read at all."""
    if not isinstance(value, str):
        return value
    if "</think>\n\n" in value:
        value = value.split("</think>\n\n")[-1]
    if "```json\n" in value:
        value = value.split("```json\n")[1].replace("\n```", "")
    try:
        data = json.loads(value.replace("\n    ", "").replace("\n", ""))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _parsed(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [r for r in rows if (d := _official_json(r["json_results"])) is not None and d.get(key, "") != ""]


@pytest.mark.parametrize(("name", "gt"), [("fg_samples", "fg_num"), ("ring_count", "count")])
def test_molund_counts_match_the_official_mae(name: str, gt: str) -> None:
    rows = _rows(name)
    answers = [G.extract_answer(_text(r["json_results"]), ("count",)) for r in rows]
    assert all(a is not None and G._INTEGER.fullmatch(a) for a in answers)
    mae = G.count_mae([int(a) for a in answers], [int(r[gt]) for r in rows])  # type: ignore[arg-type]
    assert mae == pytest.approx(OFFICIAL[name], abs=1e-9)


@pytest.mark.parametrize(("name", "gold"), [("ring_system_scaffold", "Yes"), ("mutated", "No"), ("permutated", "Yes")])
def test_molund_yes_no_matches_the_official_score(name: str, gold: str) -> None:
    rows = _parsed(_rows(name), "output")  # the official denominator: rows it can parse
    score = sum(G.grade_yes_no(_text(r["json_results"]), gold) for r in rows) / len(rows)
    assert score == pytest.approx(OFFICIAL[name], abs=1e-9)


def test_molund_scaffold_reads_output_scaffold_and_matches_the_official_soft_score() -> None:
    rows = _parsed(_rows("murcko_scaffold"), "Output Scaffold")
    score = sum(G.grade_scaffold(_text(r["json_results"]), r["largest_scaffold"]) for r in rows) / len(rows)
    assert score == pytest.approx(OFFICIAL["murcko_scaffold"], abs=1e-6)
    # The benchmark's own answer format scores (it used to score 0: the key was not read).
    ref = rows[0]["largest_scaffold"]
    assert G.grade_item(json.dumps({"Output Scaffold": ref}), {"check": "scaffold", "answer": ref}) == 1.0


@pytest.mark.parametrize("name", ["add", "delete", "sub"])
def test_moledit_matches_the_official_correct_rate(name: str) -> None:
    rows = _parsed(_rows(name), "output")
    added = [r.get("added_group") for r in rows]
    removed = [r.get("removed_group") for r in rows]
    score = sum(G.grade_edit(_text(r["json_results"]), r["molecule"], a, d)
                for r, a, d in zip(rows, added, removed, strict=True)) / len(rows)
    assert score == pytest.approx(OFFICIAL[name], abs=1e-9)


def test_moledit_strict_guards_are_opt_in() -> None:
    """The fragment guard rejects delete answers that the official check passes."""
    rows = _rows("delete")
    official = sum(G.grade_edit(_text(r["json_results"]), r["molecule"], None, r["removed_group"]) for r in rows)
    strict = sum(G.grade_edit(_text(r["json_results"]), r["molecule"], None, r["removed_group"], strict=True)
                 for r in rows)
    assert (official, strict) == (17, 15)


@pytest.mark.parametrize("prop", ["logp", "solubility", "qed"])
def test_molopt_matches_the_official_success_rate(prop: str) -> None:
    rows = _rows(prop)
    score = sum(G.grade_optimization(_text(r["json_results"]), r["src_smiles"], prop) for r in rows) / len(rows)
    assert score == pytest.approx(OFFICIAL[prop], abs=1e-9)


def test_reaction_matches_the_official_exact_match() -> None:
    rows = _rows("fs")
    score = sum(G.grade_smiles_match(r["json_response"], r["products"]) for r in rows) / len(rows)
    assert score == pytest.approx(OFFICIAL["fs"], abs=1e-9)


# ----------------------------------------------------------------- adversarial


def test_official_oracles() -> None:
    """logP is TDC's penalized logP (an added chlorine can lower it: synthetic
    accessibility), solubility the refit ESOL, not the project's v1 oracles."""
    src = "CC(=O)NC1CC1C(=O)NCC"
    mol, more = G.parse_smiles(src), G.parse_smiles(src + "Cl")
    assert G.molecular_property(more, "logp", "v1") > G.molecular_property(mol, "logp", "v1")  # type: ignore[operator]
    assert G.molecular_property(more, "logp") < G.molecular_property(mol, "logp")  # type: ignore[operator]
    assert not G.optimization_succeeds(src + "Cl", src, "logp")
    assert G.optimization_succeeds(src + "Cl", src, "logp", oracle="v1")
    ethanol = G.parse_smiles("CCO")
    assert G.esol(ethanol) == pytest.approx(0.26121 - 0.0066139 * 46.069 - 0.74167 * -0.0014, abs=1e-3)  # type: ignore[arg-type]


@pytest.mark.parametrize(("answer", "official", "strict"), [
    ("c1ccccc1CCO.CO", True, False),  # a second molecule carrying the hydroxyl: official passes it
    ("CO", False, False),  # the count of hydroxyls does not rise
    ("c1ccccc1C(O)C(O)O", False, False),  # two added
    ("c1ccccc1C(O)CO", True, True),
])
def test_edit_official_versus_strict(answer: str, official: bool, strict: bool) -> None:
    source = "c1ccccc1CCO"
    assert G.edit_succeeds(answer, source, added="hydroxyl") is official
    assert G.edit_succeeds(answer, source, added="hydroxyl", strict=True) is strict


def test_scaffold_soft_score_edges() -> None:
    ref = "c1ccc(CSc2nnc(-c3ccccc3)o2)cc1"
    assert G.scaffold_similarity(ref, ref) == 1.0
    # The official score compares Murcko scaffolds: the whole molecule scores like its scaffold.
    assert G.scaffold_similarity("Cc1ccc(CSc2nnc(-c3ccccc3)o2)cc1", ref) == 1.0
    assert 0.0 < G.scaffold_similarity("c1ccccc1", ref) < 1.0
    assert G.scaffold_similarity("CCCC", ref) == 0.0  # acyclic: empty scaffold
    assert G.scaffold_similarity("not a smiles", ref) == 0.0
    assert G.grade_scaffold("Answer: " + ref, ref) == 1.0


def test_answer_tags_win_over_later_text() -> None:
    out = "<|think_start|>Answer: CCO<|think_end|><|answer_start|>CCN<|answer_end|>"
    assert G.grade_smiles_match(out, "CCN") == 1.0
    assert G.grade_smiles_match(out, "CCO") == 0.0


@pytest.mark.parametrize("prop", ["logp", "solubility", "qed"])
def test_molopt_official_success_rate_through_the_task(prop: str, tmp_path: Path) -> None:
    """The official answers as real MolOpt items of the task (``data=<folder>``): every row
    loads (no reference molecule needed), ``MolOpt/official`` is the official success rate,
    and the score, which also keeps the source's scaffold, is at most that."""
    from ftdojo_gym.tasks import make_task

    rows = _rows(prop)
    name = {"logp": "LogP", "solubility": "solubility", "qed": "QED"}[prop]
    records = [{"id": f"{prop}-{i}", "query": f"Optimize the Source Molecule to improve the {name}.\n\n"
                f"Source Molecule: {r['src_smiles']}.", "gt": "", "task": "mol_opt", "subtask": prop,
                "meta": "{}"} for i, r in enumerate(rows)]
    (tmp_path / "chemcotbench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    task = make_task("ChemCoT-MolOpt", data=str(tmp_path))
    items = task.eval_items(0)
    assert len(items) == len(rows)
    outputs = [_text(rows[int(i.id.rsplit("-", 1)[1])]["json_results"]) for i in items]
    scores = task.grade(items, outputs)
    official = task.extra_scores(items, scores, outputs)["MolOpt/official"]
    assert official == pytest.approx(OFFICIAL[prop], abs=1e-9)
    assert sum(scores) / len(scores) <= official


def test_the_official_scaffold_score_passes_an_echo_of_the_input() -> None:
    """Official behaviour, kept and documented on the card: the soft score compares the
    answer's own Murcko scaffold, so repeating a real Murcko item's input molecule scores 1.0."""
    import re

    from ftdojo_gym.tasks import make_task

    items = [i for folder in ("ChemCoT-MolUnd", "ChemCoTBench-subtasks")
             for i in make_task("ChemCoT-MolUnd", data=str(LOGS.parent / folder)).eval_items(0)
             if i.meta["check"] == "scaffold"]
    assert items
    for item in items:
        molecule = re.search(r"Input Molecule:\s*(\S+)", item.prompt).group(1).rstrip(",.")
        assert not G.same_molecule(molecule, item.meta["answer"])  # the input is not the scaffold
        assert G.grade_item(f"Answer: {molecule}", item.meta) == 1.0

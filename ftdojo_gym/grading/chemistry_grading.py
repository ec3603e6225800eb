"""ChemCoTBench graders (molecule understanding, editing, optimization, reaction), with RDKit.

They follow the official ChemCoTBench evaluation code (github.com/IDEA-XL/ChemCoTBench,
``baseline_and_eval``): the same functional-group SMARTS and count rules for
editing, the same property oracles for optimization (RDKit Crippen logP,
RDKit QED and the benchmark's linear logS formula for solubility), and
exact product match by molecule identity for reactions. Where the official
code reports a mean error or similarity, these graders score each item 0 or 1
so that every task reports an accuracy or success rate in ``[0, 1]``.

Answer extraction: the text after the *last* ``Answer:`` (case-insensitive),
first non-empty line, surrounding quotes, backticks and a trailing period
removed; when an output has no ``Answer:`` it may instead be the JSON object
the real benchmark asks for (``{"output": ...}``, ``{"count": ...}``,
``{"Final Target Molecule": ...}``, ``{"Major Product": ...}``). An answer
must be *one* SMILES (no spaces, commas or semicolons: listing candidates
scores 0). Nothing here raises on any output string; RDKit's logger is
silenced so invalid SMILES do not flood stderr.

* **Count** (functional groups, rings): the answer is an integer equal to the
  reference count (accuracy; the official script reports the mean absolute
  error of the same numbers).
* **Yes/No** (ring system present, SMILES equivalence): case-insensitive match.
* **SMILES identity** (scaffolds, reaction products): the answer parses and is
  the same molecule as the reference: equal canonical SMILES without
  stereochemistry (as the official ``MoleculeSMILESEvaluator`` canonicalises),
  or equal InChI (the official ``exact_match``). A non-canonical but equivalent
  SMILES scores 1.
* **Edit** (add / delete / substitute a group): the official check, e.g. for
  "add hydroxyl" the count of ``[OX2H]`` in the answer is the source's plus
  one; for substitution one group down and the other up. Two guards close
  loopholes of the official check: the answer has as many fragments as the
  source (appending ``.CO`` to the source is not an edit) and at least half its
  heavy atoms (a small unrelated molecule with one hydroxyl is not an edit).
  An answer that repeats the source fails the count check.
* **Optimization**: the property of the answer is strictly higher than the
  source's (the official ``success_rate``, improvement > 0), and the answer
  still contains the source's Murcko scaffold as a substructure (the official
  script reports scaffold consistency next to the improvement; requiring it
  keeps "replace the molecule by a long alkane" from counting as optimizing
  it). Repeating the source scores 0.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from rdkit import Chem, RDLogger
from rdkit.Chem import QED, Crippen, Descriptors
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")

#: Outputs are truncated to their last this many characters before scoring.
MAX_SCORED_CHARS = 20_000
#: Longer answers are not parsed as SMILES: a drug-like molecule is far shorter,
#: and RDKit's cost grows with the string.
MAX_SMILES_CHARS = 600

#: Functional groups and their SMARTS, as in the official ``eval_moledit.py``.
GROUP_SMARTS: dict[str, str] = {
    "benzene_ring": "[cR1]1[cR1][cR1][cR1][cR1][cR1]1",
    "hydroxyl": "[OX2H]",
    "aldehyde": "[CX3H1](=O)[#6]",
    "ketone": "[#6][CX3](=O)[#6]",
    "carboxyl": "[CX3](=O)[OX2H1]",
    "ester": "[#6][CX3](=O)[OX2H0][#6]",
    "anhydride": "[CX3](=[OX1])[OX2][CX3](=[OX1])",
    "amine": "[NX3;H2,H1;!$(NC=O)]",
    "amide": "[NX3][CX3](=[OX1])[#6]",
    "nitro": "[$([NX3](=O)=O),$([NX3+](=O)[O-])][!#8]",
    "halo": "[F,Cl,Br,I]",
    "thiol": "[#16X2H]",
    "thioether": "[SX2][CX4]",
    "disulfide": "[#16X2H0][#16X2H0]",
    "sulfoxide": "[$([#16X3]=[OX1]),$([#16X3+][OX1-])]",
    "sulfone": "[$([#16X4](=[OX1])=[OX1]),$([#16X4+2]([OX1-])[OX1-])]",
    "sulfide": "[#16X2H0]",
    "nitrile": "[NX1]#[CX2]",
    "borane": "[BX3]",
}
#: Properties the optimization grader can compute (the official oracles for
#: DRD2, GSK3B and JNK3 are trained models that do not ship with this package).
PROPERTIES: tuple[str, ...] = ("logp", "qed", "solubility")
#: JSON keys of the real benchmark's answer formats, tried when there is no ``Answer:``.
JSON_KEYS: tuple[str, ...] = ("output", "count", "Final Target Molecule", "Major Product", "answer")

_ANSWER = re.compile(r"answer\s*:", re.IGNORECASE)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_INTEGER = re.compile(r"[+]?\d{1,6}(?:\.0+)?")
_STRIP = " \t\r\n\"'`*"
_SEPARATORS = re.compile(r"[\s,;]")


@lru_cache(maxsize=256)
def _pattern(smarts: str) -> Chem.Mol:
    pattern = Chem.MolFromSmarts(smarts)
    if pattern is None:  # pragma: no cover - the table above is fixed
        raise ValueError(f"bad SMARTS {smarts!r}")
    return pattern


# --------------------------------------------------------------- extraction


def extract_answer(output: str, json_keys: Sequence[str] = JSON_KEYS) -> str | None:
    """The answer of a model output, or ``None`` when it has none.

    The first non-empty line after the last ``Answer:``; without that marker,
    the value of the first of ``json_keys`` in the last JSON object of the
    output. Quotes, backticks, asterisks and a trailing period are stripped.
    """
    if not isinstance(output, str):
        return None
    text = output[-MAX_SCORED_CHARS:]
    markers = list(_ANSWER.finditer(text))
    if markers:
        last = markers[-1]
        rest = text[last.end():]
        for line in rest.split("\n"):
            if line.strip(_STRIP):
                return _clean(line)
        return ""
    for block in reversed(_JSON_OBJECT.findall(text)):
        try:
            data = json.loads(block)
        except (ValueError, RecursionError):
            continue
        if not isinstance(data, dict):
            continue
        for key in json_keys:
            if key in data and isinstance(data[key], (str, int, float)) and not isinstance(data[key], bool):
                return _clean(str(data[key]))
        return None
    return None


def _clean(answer: str) -> str:
    answer = answer.strip(_STRIP)
    if answer.endswith("."):
        answer = answer[:-1]
    return answer.strip(_STRIP)


# ------------------------------------------------------------------ molecules


def parse_smiles(answer: str | None) -> Chem.Mol | None:
    """``answer`` as one molecule, or ``None``: empty, too long, several
    whitespace-, comma- or semicolon-separated candidates, or invalid SMILES."""
    if not isinstance(answer, str) or not answer or len(answer) > MAX_SMILES_CHARS or _SEPARATORS.search(answer):
        return None
    if not answer.isascii() or not answer.isprintable():
        return None
    try:
        return Chem.MolFromSmiles(answer)
    except Exception:  # noqa: BLE001 - RDKit raises various errors on odd input
        return None


@lru_cache(maxsize=16_384)
def _mol(smiles: str | None) -> Chem.Mol | None:
    """:func:`parse_smiles`, cached: the same molecules are checked many times when
    data is generated. Callers only read the molecule."""
    return parse_smiles(smiles)


@lru_cache(maxsize=65_536)
def canonical_smiles(smiles: str, isomeric: bool = False) -> str | None:
    """RDKit canonical SMILES of ``smiles`` (no stereochemistry by default), or ``None``."""
    mol = _mol(smiles)
    if mol is None:
        return None
    try:
        return Chem.MolToSmiles(mol, isomericSmiles=isomeric, canonical=True)
    except Exception:  # noqa: BLE001
        return None


def _inchi(mol: Chem.Mol) -> str | None:
    try:
        return Chem.MolToInchi(mol) or None
    except Exception:  # noqa: BLE001
        return None


def count_group(mol: Chem.Mol, group: str) -> int:
    """Occurrences of a named functional group (official SMARTS and sulfide rule)."""
    count = len(mol.GetSubstructMatches(_pattern(GROUP_SMARTS[group])))
    if group == "sulfide":
        count -= len(mol.GetSubstructMatches(_pattern(GROUP_SMARTS["disulfide"])))
    return count


def count_substructure(mol: Chem.Mol, query_smiles: str) -> int:
    """Unique matches of the molecule ``query_smiles`` (a ring, a fragment) in ``mol``."""
    query = Chem.MolFromSmiles(query_smiles)
    if query is None:
        raise ValueError(f"invalid query SMILES {query_smiles!r}")
    return len(mol.GetSubstructMatches(query))


def solubility(mol: Chem.Mol) -> float:
    """logS by the linear model of the official ``eval_metric.calculate_solubility``."""
    return (0.16 - 0.63 * Crippen.MolLogP(mol) - 0.0062 * Descriptors.MolWt(mol)
            + 0.066 * Descriptors.NumHDonors(mol) - 0.074 * Descriptors.NumHAcceptors(mol))


def molecular_property(mol: Chem.Mol, prop: str) -> float | None:
    """``prop`` (one of :data:`PROPERTIES`) of ``mol``; ``None`` if RDKit fails."""
    try:
        if prop == "logp":
            value = Crippen.MolLogP(mol)
        elif prop == "qed":
            value = QED.qed(mol)
        elif prop == "solubility":
            value = solubility(mol)
        else:
            raise ValueError(f"unknown property {prop!r}; known: {PROPERTIES}")
    except ValueError:
        raise
    except Exception:  # noqa: BLE001
        return None
    return value if math.isfinite(value) else None


def murcko_scaffold(mol: Chem.Mol) -> Chem.Mol | None:
    """The Murcko scaffold of ``mol`` (``None`` for an acyclic molecule)."""
    try:
        core = MurckoScaffold.GetScaffoldForMol(mol)
    except Exception:  # noqa: BLE001
        return None
    return core if core is not None and core.GetNumAtoms() else None


def _n_fragments(mol: Chem.Mol) -> int:
    return len(Chem.GetMolFrags(mol))


def _related(answer: Chem.Mol, source: Chem.Mol) -> bool:
    """Same number of fragments and at least half the source's heavy atoms."""
    return (_n_fragments(answer) == _n_fragments(source)
            and 2 * answer.GetNumHeavyAtoms() >= source.GetNumHeavyAtoms())


# -------------------------------------------------------------------- graders


def grade_count(output: str, count: int | str) -> float:
    """1.0 if the answer is the integer ``count``."""
    answer = extract_answer(output, ("count", "output", "answer"))
    if answer is None or not _INTEGER.fullmatch(answer):
        return 0.0
    try:
        return float(int(float(answer)) == int(count))
    except (ValueError, OverflowError):
        return 0.0


def grade_yes_no(output: str, gold: str) -> float:
    """1.0 if the answer is ``gold`` (``Yes`` or ``No``), case-insensitive."""
    answer = extract_answer(output, ("output", "answer"))
    if answer is None:
        return 0.0
    answer = answer.casefold()
    return float(answer in ("yes", "no") and answer == gold.strip().casefold())


def same_molecule(answer: str | None, reference: str) -> bool:
    """Whether the SMILES ``answer`` and ``reference`` are one molecule (canonical
    SMILES without stereochemistry, or InChI, as the official exact match)."""
    mol, ref = _mol(answer), _mol(reference)
    if mol is None or ref is None:
        return False
    if canonical_smiles(answer) == canonical_smiles(reference):
        return True
    key = _inchi(mol)
    return key is not None and key == _inchi(ref)


def grade_smiles_match(output: str, reference: str) -> float:
    """1.0 if the answer is the same molecule as ``reference`` (reaction product, scaffold)."""
    return float(same_molecule(extract_answer(output), reference))


def edit_succeeds(answer: str | None, source: str, added: str | None = None, removed: str | None = None) -> bool:
    """Whether the SMILES ``answer`` is ``source`` with one ``added`` group more and/or
    one ``removed`` group fewer (the official add/delete/substitute checks plus
    the fragment and size guards)."""
    if added is None and removed is None:
        raise ValueError("an edit adds or removes a group")
    for group in (added, removed):
        if group is not None and group not in GROUP_SMARTS:
            raise ValueError(f"unknown group {group!r}; known: {sorted(GROUP_SMARTS)}")
    mol, src = _mol(answer), _mol(source)
    if mol is None or src is None or not _related(mol, src):
        return False
    try:
        if added is not None and count_group(mol, added) != count_group(src, added) + 1:
            return False
        if removed is not None and count_group(mol, removed) != count_group(src, removed) - 1:
            return False
    except Exception:  # noqa: BLE001
        return False
    return True


def grade_edit(output: str, source: str, added: str | None = None, removed: str | None = None) -> float:
    """1.0 if the answer is a valid edit of ``source`` (see :func:`edit_succeeds`)."""
    return float(edit_succeeds(extract_answer(output), source, added, removed))


@lru_cache(maxsize=65_536)
def _source_profile(source: str, prop: str) -> tuple[Chem.Mol | None, float | None, Chem.Mol | None]:
    """(molecule, property value, Murcko scaffold) of a source SMILES; sources recur, so cached."""
    src = _mol(source)
    if src is None:
        return None, None, None
    return src, molecular_property(src, prop), murcko_scaffold(src)


def optimization_succeeds(answer: str | None, source: str, prop: str) -> bool:
    """Whether the SMILES ``answer`` improves ``prop`` over ``source`` and keeps its scaffold."""
    if prop not in PROPERTIES:
        raise ValueError(f"unknown property {prop!r}; known: {PROPERTIES}")
    src, before, scaffold = _source_profile(source, prop)
    mol = _mol(answer)
    if mol is None or src is None or before is None or not _related(mol, src):
        return False
    after = molecular_property(mol, prop)
    if after is None or not after > before:
        return False
    try:
        return scaffold is None or mol.HasSubstructMatch(scaffold)
    except Exception:  # noqa: BLE001
        return False


def grade_optimization(output: str, source: str, prop: str) -> float:
    """1.0 if the answer optimizes ``prop`` of ``source`` (see :func:`optimization_succeeds`)."""
    return float(optimization_succeeds(extract_answer(output), source, prop))


def grade_item(output: str, meta: dict[str, Any]) -> float:
    """Score one output against an evaluation item's ``meta`` (keys by ``meta["check"]``):

    * ``count``: ``answer`` (int);  ``yes_no``: ``answer``;  ``smiles``: ``answer``;
    * ``edit``: ``source``, ``added`` and/or ``removed``;  ``optimize``: ``source``, ``property``.
    """
    check = meta["check"]
    if check == "count":
        return grade_count(output, meta["answer"])
    if check == "yes_no":
        return grade_yes_no(output, meta["answer"])
    if check == "smiles":
        return grade_smiles_match(output, meta["answer"])
    if check == "edit":
        return grade_edit(output, meta["source"], meta.get("added"), meta.get("removed"))
    if check == "optimize":
        return grade_optimization(output, meta["source"], meta["property"])
    raise ValueError(f"unknown check {check!r}")


__all__ = [
    "GROUP_SMARTS", "JSON_KEYS", "MAX_SCORED_CHARS", "MAX_SMILES_CHARS", "PROPERTIES",
    "canonical_smiles", "count_group", "count_substructure", "edit_succeeds", "extract_answer",
    "grade_count", "grade_edit", "grade_item", "grade_optimization", "grade_smiles_match",
    "grade_yes_no", "molecular_property", "murcko_scaffold", "optimization_succeeds", "parse_smiles",
    "same_molecule", "solubility",
]

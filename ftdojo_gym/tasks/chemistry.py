"""ChemCoTBench (chemistry): offline data repositories and RDKit graders for four subtasks.

Mirrors ChemCoTBench (Li et al., "Beyond Chemical QA: Evaluating LLM's Chemical
Reasoning with Modular Chemical Operations", hub dataset ``OpenMol/ChemCoTBench``):

* ``MolUnd`` — molecule understanding: give the Murcko scaffold of a molecule
  (version 3: the scaffold is written as a span of the input SMILES), or decide
  whether a ring system occurs in it.
* ``MolEdit`` — add, delete or substitute a named functional group.
* ``MolOpt`` — modify a molecule so that its LogP, aqueous solubility or QED improves.
* ``Reaction`` — forward prediction of the major product (acylations).

Molecules are assembled from fragment pools in code (rings, linkers, chains,
functional groups written as SMILES pieces), and every answer is computed
and checked with RDKit through :mod:`ftdojo_gym.grading.chemistry_grading`, so
labels are right by construction and the generation is deterministic in the
seed. The transformations are regular in SMILES text (an edit appends or
strips the group's SMILES piece at the end of the molecule; an acylation drops
the leaving group of the acyl reactant and appends the nucleophile; a Murcko
scaffold is the input from its first ring atom to its last ring-closure digit), which a
small model can learn from a few hundred examples, while molecules vary
enough that memorising answers is no help.

An evaluation prompt is exactly ``"{instruction}\\n{input}"``: ``instruction``
is a fixed sentence per item kind, ``input`` is the item's line (``Input
Molecule: <SMILES>. Give the Murcko scaffold.``, ``Input Molecule: <SMILES>,
Functional Group to add: nitrile.``, ``Source Molecule: <SMILES>, Property:
LogP.``, ``Reactants: <A>.<B>, Reagents: <R>.``) and then the format line
``The answer should follow the format: Answer: <SMILES>.`` (``<answer>`` for
MolUnd). The expected completion is ``Answer: <answer>``.

Sources (deterministic in the seed; no evaluation molecule, in the question or
as an answer, occurs in any of them):

* ``chemcot_sft`` — clean, evaluation format (``instruction``, ``input``, ``output``, ``subtask``).
* ``crowd_chem_qa`` — same schema plus ``annotator_agreement``; ~45 % wrong answers,
  mostly with agreement below 0.6.
* ``chem_qa_mirror`` — a few dozen items repeated many times with case and
  whitespace changes in the instruction (never in a SMILES).
* ``chem_chat`` — correct but chatty ``response`` without ``Answer:``; its
  ``instruction``, ``question`` and ``answer`` fields are rescued by the prompt
  ``"{instruction}\\n{question}\\n" + FORMAT_LINE`` and the completion ``"Answer: {answer}"``.
* ``general_chat`` — off-domain ``prompt``/``response`` chat.
* ``patent_extracts`` — evaluation format behind a long experimental section
  (2,000+ tokens); a few short rows are usable after a length filter.
* a cross-domain source per subtask, from other compound families and in
  another schema, usable after a filter and a transform: ``descriptor_table``
  (MolUnd: ``smiles``, ``scaffold`` over other ring systems), ``matched_pairs`` (MolEdit), ``property_pairs`` (MolOpt, only rows
  with ``delta > 0`` are improvements), ``uspto_reactions`` (Reaction:
  sulfonylations, the same leaving-group logic).
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rdkit import Chem

from ftdojo_gym.grading.chemistry_grading import (
    GROUP_SMARTS,
    canonical_smiles,
    count_substructure,
    edit_succeeds,
    grade_item,
    molecular_property,
    murcko_scaffold,
    optimization_succeeds,
    parse_smiles,
    same_molecule,
)
from ftdojo_gym.tasks.base import EvalItem, HubDataset, RealDataTask, SourceSpec, Task, _fingerprint
from ftdojo_gym.tasks.offdomain import HOBBY_CHAT

SUBTASKS: tuple[str, ...] = ("MolUnd", "MolEdit", "MolOpt", "Reaction")
#: Items per evaluation set, split by :meth:`~ftdojo_gym.tasks.base.Task.split`.
EVAL_SIZE = 200
ASSISTANT = "You are a chemical assistant."
FORMAT_LINE = {
    "MolUnd": "The answer should follow the format: Answer: <answer>.",
    "MolEdit": "The answer should follow the format: Answer: <SMILES>.",
    "MolOpt": "The answer should follow the format: Answer: <SMILES>.",
    "Reaction": "The answer should follow the format: Answer: <SMILES>.",
}
#: Item kinds of each subtask (reported as the env's subsets).
KINDS: dict[str, tuple[str, ...]] = {
    # MolUnd version 3 (docs/dev/task-redesign.md): the Murcko scaffold, and ring-system Yes/No
    # for fidelity to the benchmark; the shares are in _KIND_MIX.
    "MolUnd": ("scaffold", "ring_system"),
    "MolEdit": ("add", "delete", "sub"),
    "MolOpt": ("logp", "solubility", "qed"),
    "Reaction": ("esterification", "amide_coupling", "acyl_chloride_amidation", "acyl_chloride_esterification"),
}
INSTRUCTIONS: dict[str, str] = {
    "scaffold": f"{ASSISTANT} Give the Murcko scaffold of the input molecule (its rings and the linkers "
                "between them, without side chains) as SMILES.",
    "ring_system": f"{ASSISTANT} Decide whether the ring system occurs in the input molecule (Yes or No).",
    "edit": f"{ASSISTANT} Edit the input molecule as requested and give the SMILES of the modified molecule.",
    "opt": f"{ASSISTANT} Modify the source molecule to improve the property and give the SMILES of the optimized molecule.",
    "reaction": f"{ASSISTANT} Predict the SMILES of the major product of the reaction.",
}
_MAX_NEW_TOKENS = {"MolUnd": 32, "MolEdit": 64, "MolOpt": 64, "Reaction": 64}
#: Real items' generation limit: the gold completion's (or, for MolOpt, the source
#: molecule's) length in UTF-8 bytes, a bound on its tokens, plus this headroom.
REAL_TOKEN_HEADROOM = 32
#: Task version per subtask: MolUnd 2 was the short-molecule redesign (counts 1-3, at
#: chance with SmolLM2-135M); MolUnd 3 asks for the Murcko scaffold, a span of the input
#: (docs/dev/task-redesign.md); the other subtasks keep version 1 and its data.
_VERSIONS = {"MolUnd": "3", "MolEdit": "2", "MolOpt": "1", "Reaction": "1"}
#: Share of wrong crowd answers where it is not 0.45: MolEdit (version 2) gets most crowd
#: answers wrong in one systematic way (the whole branch cut), so a recipe trained on them
#: as they are learns a wrong rule, not noise (at 0.45 random errors the harmful recipe
#: scored 52 against the expert's 63).
_CROWD_WRONG_RATE = {"MolEdit": 0.7}
#: Task-level metric names (the catalogue has the long form).
_METRICS = {"MolUnd": "accuracy", "MolEdit": "success rate", "MolOpt": "success rate", "Reaction": "exact match"}

# ------------------------------------------------------------------ fragments
# Every SMILES piece below is written so that its *last* atom is where the next
# piece attaches and still carries a hydrogen; assembled strings are validated
# with RDKit anyway, and invalid ones are discarded.

#: Functional groups as the SMILES piece appended to a carbon (the edit vocabulary).
GROUP_PIECES: dict[str, tuple[str, ...]] = {
    "hydroxyl": ("O",),
    "amine": ("N",),
    "halo": ("F", "Cl", "Br"),
    "nitrile": ("C#N",),
    "aldehyde": ("C=O",),
    "carboxyl": ("C(=O)O",),
    "thiol": ("S",),
    "nitro": ("[N+](=O)[O-]",),
    "ketone": ("C(=O)C",),
    "benzene_ring": ("c1ccccc1",),
}
_IN_RINGS = (
    "c1ccccc1", "c1ccc(F)cc1", "c1ccc(Cl)cc1", "c1ccc(C)cc1", "c1ccc(OC)cc1", "c1cccc(C)c1", "c1ccncc1",
    "c1cccnc1", "c1ccsc1", "c1ccoc1", "c1cncnc1", "C1CCCCC1", "C1CCCC1", "C1CCOCC1", "c1ccc(C(F)(F)F)cc1",
    "c1cc(C)cc(C)c1", "c1ccc2ccccc2c1", "C1CC1",
)
_IN_PRE = ("", "C", "CO", "CC(=O)N", "O=C(C)")
_IN_LINKERS = ("", "C", "CC", "O", "S", "C(=O)", "NC(=O)", "C(=O)N", "OC", "N(C)", "CO")
_IN_TERMINALS = ("C", "CC", "CCC", "C(C)C", "CC(C)C")
# Other compound families (the cross-domain sources): other ring systems and chains.
_CROSS_RINGS = (
    "C1CCCCCC1", "c1ccc2[nH]ccc2c1", "c1ccc2occc2c1", "n1ccncc1", "C1COCCN1", "c1ccc2sccc2c1", "C1CCC2CCCCC2C1",
    "c1csc(C)n1", "C1CCSC1",
)
_CROSS_PRE = ("", "CC", "FC(F)", "N#C")
_CROSS_LINKERS = ("", "C", "CCC", "OCC", "SC", "C=C")
_CROSS_TERMINALS = ("C", "CC", "CCCC")

#: Rings that MolUnd asks about (name: SMILES); none contains an NH or a halogen.
_UND_RINGS = {
    "benzene": "c1ccccc1", "pyridine": "c1ccncc1", "thiophene": "c1ccsc1", "furan": "c1ccoc1",
    "cyclohexane": "C1CCCCC1", "cyclopentane": "C1CCCC1", "pyrimidine": "c1cncnc1", "oxane": "C1CCOCC1",
    "cyclopropane": "C1CC1",
}
_CROSS_UND_RINGS = ("C1CCCCCC1", "c1ccc2ccccc2c1", "C1CCSC1", "c1cnccn1")
#: The order in which the evaluation's one-ring scaffolds take their ring (MolUnd version 3).
_UND_RING_ORDER = tuple(_UND_RINGS.values())
#: MolUnd version 3, the Murcko scaffold (docs/dev/task-redesign.md): a molecule is
#: ``head + core + tail`` (at least one of head and tail), the core one ring or two rings
#: joined by a linker, and the answer is the core as written: the span of the input from
#: its first ring atom to its last ring-closure digit. Heads end with the atom that bonds
#: the core's first ring atom; tails start with the atom that bonds its last one; neither
#: has a ring. An item is kept only when RDKit's Murcko scaffold of the molecule is the core.
_SCAFFOLD_HEADS = ("C", "CC", "CCC", "CC(C)C", "OCC", "N#CC", "ClCC", "O=C(O)C", "CO", "CCO", "O", "N",
                   "CC(=O)N", "CS")
_SCAFFOLD_TAILS = ("C", "CC", "CCC", "C(C)C", "CCO", "C(O)C", "CC#N", "C(=O)O", "CCl", "CN", "O", "N", "S", "F",
                   "Cl", "Br", "OC", "C#N", "[N+](=O)[O-]", "C(F)(F)F", "NC(C)=O")
_SCAFFOLD_LINKERS = ("", "C", "CC", "CCC", "O", "N", "S", "C(=O)", "OC", "CO", "NC(=O)", "C(=O)N")
#: The order in which MolUnd items (evaluation and sources) take their kinds: nine
#: scaffold items, then one ring-system Yes/No. Ring-system questions stay for fidelity
#: to the benchmark but were at chance in version 2, and a constant Yes scores half of
#: them, so they are kept at a tenth: the best constant answer then stays below 10 %.
#: The counting kinds (fg_count, ring_count) are dropped: they were at chance in version
#: 2, and their 1-3 answers would give a constant a third of their items.
_KIND_MIX: dict[str, tuple[str, ...]] = {"MolUnd": ("scaffold",) * 9 + ("ring_system",)}

# Reactions: acyl groups R (the acid is R + "C(=O)O", the acyl chloride R + "C(=O)Cl") and nucleophiles.
_ACYL_R = (
    "c1ccccc1", "c1ccc(Cl)cc1", "c1ccc(C)cc1", "c1ccc(OC)cc1", "c1ccncc1", "c1cccnc1", "c1ccoc1", "c1ccsc1",
    "CC", "CCC", "CC(C)", "CCCC", "C1CCCCC1", "C1CCCC1", "C1CC1", "Cc1ccccc1", "C=C", "CC(C)(C)",
    "c1ccc(F)cc1", "c1ccc([N+](=O)[O-])cc1", "COc1ccccc1", "c1ccc(C#N)cc1", "CCOC", "c1ccc2ccccc2c1",
    "c1cc(C)cc(C)c1", "CSC", "C(F)(F)", "CCCCC", "c1ccc(Br)cc1", "CC(C)C", "c1cncnc1", "C1CCOCC1",
    "c1ccc(C(F)(F)F)cc1", "CC=C", "C#CC", "CCCl", "c1ccc(Cc2ccccc2)cc1", "CCC(C)", "c1cccc(Cl)c1", "N#CC",
)
_ALCOHOLS = (
    "OC", "OCC", "OCCC", "OC(C)C", "OCc1ccccc1", "OCC(C)C", "Oc1ccccc1", "OCCOC", "OC1CCCC1", "OCC=C",
    "OCCCC", "OC(C)(C)C", "OCC(F)(F)F", "Oc1ccc(C)cc1", "OCC1CC1", "OCc1ccncc1", "OC1CCCCC1", "OCCc1ccccc1",
    "OCC#C", "Oc1ccc(Cl)cc1", "OCCCl", "OC(C)CC", "OCCSC", "OCc1ccco1",
)
_AMINES = (
    "NC", "NCC", "N(C)C", "NCc1ccccc1", "Nc1ccccc1", "N1CCCC1", "N1CCOCC1", "N1CCCCC1", "NC1CC1", "NC(C)C",
    "NCCC", "N(CC)CC", "NCC(C)C", "Nc1ccc(F)cc1", "NCc1ccncc1", "N1CCN(C)CC1", "NC1CCCCC1", "NCCOC",
    "Nc1ccncc1", "N(C)Cc1ccccc1", "NCC=C", "NC(C)(C)C", "N1CCSCC1", "NCCc1ccccc1",
)
_REACTION_CLASSES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # kind: (acyl leaving group, nucleophile pool name, reagent sets)
    "esterification": ("O", "alcohol", ("OS(=O)(=O)O", "Cc1ccc(S(=O)(=O)O)cc1")),
    "amide_coupling": ("O", "amine", ("CCN=C=NCCCN(C)C.On1nnc2ccccc21", "CN(C)C(On1nnc2cccnc21)=[N+](C)C.CCN(C(C)C)C(C)C")),
    "acyl_chloride_amidation": ("Cl", "amine", ("CCN(CC)CC", "ClCCl.CCN(CC)CC")),
    "acyl_chloride_esterification": ("Cl", "alcohol", ("c1ccncc1", "CN(C)c1ccncc1.ClCCl")),
}
_CROSS_SULFONYL_R = ("c1ccccc1", "Cc1ccccc1", "C", "CC", "c1ccc(C)cc1", "c1ccc(Cl)cc1", "c1cccs1", "CCC",
                     "c1ccc(OC)cc1", "C(F)(F)(F)", "c1ccc2ccccc2c1", "CC(C)")

_PROPERTY_NAMES = {"logp": "LogP", "solubility": "aqueous solubility", "qed": "QED"}
#: Pieces appended to improve each property, tried in a seeded order (any improving one is a right answer).
_PROPERTY_PIECES = {"logp": ("Cl", "CC", "Br"), "solubility": ("O", "N", "C(=O)O"), "qed": ("C(N)=O", "O", "N")}
#: A careless edit that goes the wrong way (for noisy labels).
_PROPERTY_WRONG = {"logp": ("O", "N"), "solubility": ("Cl", "CCC")}
# The other member of a matched pair that is not an improvement (its delta is still computed).
_PAIR_OTHER_PIECE = {"logp": "O", "solubility": "Cl", "qed": "CCCCCC"}


# ---------------------------------------------------------------- questions


@dataclass(frozen=True)
class _QA:
    """A question with its answer, a plausible wrong answer and the grader's meta."""

    subtask: str
    kind: str
    instruction: str
    question: str
    answer: str
    wrong: str
    meta: dict[str, Any]
    #: Canonical SMILES of every molecule of the question and answer (for reservation).
    molecules: tuple[str, ...]
    #: Extra fields some sources expose (raw molecules, group, property, ...).
    raw: dict[str, str] = field(default_factory=dict)
    #: Canonical SMILES of other molecules a source shows with the question (the careless
    #: answer), which must not be reserved either but are not reserved themselves.
    shown: tuple[str, ...] = ()

    @property
    def input(self) -> str:
        return f"{self.question}\n{FORMAT_LINE[self.subtask]}"

    @property
    def prompt(self) -> str:
        return f"{self.instruction}\n{self.input}"


class _Reserved:
    """Canonical SMILES that no source may use (the evaluation molecules), and the
    seed's molecule pools for MolOpt (``bodies`` in-domain, ``cross_bodies``)."""

    def __init__(self, bodies: Sequence[str] = (), cross_bodies: Sequence[str] = ()) -> None:
        self.molecules: set[str] = set()
        self.bodies = tuple(bodies)
        self.cross_bodies = tuple(cross_bodies)

    def add(self, qa: _QA) -> None:
        self.molecules.update(qa.molecules)

    def clashes(self, qa: _QA) -> bool:
        return any(m in self.molecules for m in (*qa.molecules, *qa.shown))


def _canon(smiles: str) -> str | None:
    return canonical_smiles(smiles)


def _body(rng: random.Random, cross: bool = False) -> str:
    """A molecule whose SMILES ends with an acyclic carbon bearing hydrogens."""
    if cross:
        return rng.choice(_CROSS_PRE) + rng.choice(_CROSS_RINGS) + rng.choice(_CROSS_LINKERS) + rng.choice(_CROSS_TERMINALS)
    return rng.choice(_IN_PRE) + rng.choice(_IN_RINGS) + rng.choice(_IN_LINKERS) + rng.choice(_IN_TERMINALS)


# -- MolUnd


def _chain(rng: random.Random, units: list[str]) -> str:
    """A short acyclic backbone carrying ``units`` (branches and rings) in a random order."""
    rng.shuffle(units)
    return "C" + "".join(u + rng.choice(("", "C")) for u in units)


#: SMILES text as tokens: bracket atoms, two-letter halogens, ring-closure digits (``%nn``
#: or one digit), then any single character (an atom letter, a bond, a parenthesis).
_SMILES_TOKEN = re.compile(r"\[[^\]]*\]|Br|Cl|%\d\d|\d|.")
_ATOM_TOKEN = re.compile(r"\[[^\]]*\]|Br|Cl|[BCNOPSFI]|[bcnops]")


def scaffold_span(smiles: str) -> str | None:
    """MolUnd's span rule (version 3): ``smiles`` from the first ring atom (the atom
    written before the first ring-closure digit) to the last ring-closure digit;
    ``None`` when it has no ring. On the generator's molecules this is the Murcko
    scaffold, as it is written in the input."""
    tokens = list(_SMILES_TOKEN.finditer(smiles))
    closures = [i for i, t in enumerate(tokens) if t.group()[0].isdigit() or t.group()[0] == "%"]
    if not closures:
        return None
    first_atom = next((i for i in range(closures[0] - 1, -1, -1) if _ATOM_TOKEN.fullmatch(tokens[i].group())), None)
    if first_atom is None:
        return None
    return smiles[tokens[first_atom].start():tokens[closures[-1]].end()]


def _renumbered(ring: str, offset: int) -> str:
    """``ring`` with every ring-closure digit raised by ``offset`` (a second ring's own digits)."""
    return re.sub(r"\d", lambda m: str(int(m.group()) + offset), ring)


def _scaffold_wrong(rng: random.Random, core: str, head: str, tail: str, first_ring: str | None) -> str:
    """A careless scaffold: the gold span plus one unit (the first atom of the tail, or
    without a tail the last atom of the head) or, for a two-ring core, minus one (only
    the first ring). Every candidate is a span of the input and a different molecule."""
    plus = core + _ATOM_TOKEN.match(tail).group() if tail else _ATOM_TOKEN.findall(head)[-1] + core
    candidates = [plus] if first_ring is None else rng.sample([plus, first_ring], 2)
    return next(w for w in candidates if parse_smiles(w) is not None and not same_molecule(w, core))


def _molund_scaffold(rng: random.Random, rings: Sequence[str], n_rings: int | None, ring: str | None) -> _QA | None:
    """A Murcko-scaffold question (MolUnd version 3): ``head + core + tail``, kept only
    when RDKit's Murcko scaffold of the molecule is the core and the span rule finds it;
    ``ring`` fixes the (first) ring of the core."""
    n_rings = n_rings if n_rings in (1, 2) else rng.randint(1, 2)
    first = ring or rng.choice(rings)
    core, first_ring = first, None
    if n_rings == 2:
        offset = max(int(d) for d in re.findall(r"\d", first))
        core, first_ring = first + rng.choice(_SCAFFOLD_LINKERS) + _renumbered(rng.choice(rings), offset), first
    side = rng.choice(("head", "tail", "both"))
    head = rng.choice(_SCAFFOLD_HEADS) if side != "tail" else ""
    tail = rng.choice(_SCAFFOLD_TAILS) if side != "head" else ""
    smiles = head + core + tail
    mol = parse_smiles(smiles)
    if mol is None or scaffold_span(smiles) != core:
        return None
    scaffold = murcko_scaffold(mol)
    if scaffold is None or Chem.MolToSmiles(scaffold, isomericSmiles=False) != _canon(core):
        return None
    question = f"Input Molecule: {smiles}. Give the Murcko scaffold."
    meta = {"check": "smiles", "answer": core, "smiles": smiles}
    raw = {"smiles": smiles, "scaffold": core}
    wrong = _scaffold_wrong(rng, core, head, tail, first_ring)
    canon = Chem.MolToSmiles(mol, isomericSmiles=False)
    # The careless answer must not be reserved either: the crowd source shows it, and a ring
    # plus one atom (``c1ccccc1C``) can be an evaluation item's input molecule.
    shown = (_canon(wrong),)
    return _QA("MolUnd", "scaffold", INSTRUCTIONS["scaffold"], question, core, wrong, meta, (canon,), raw,
               shown)  # type: ignore[arg-type]


def _molund(rng: random.Random, kind: str, target: int | bool | None = None, cross: bool = False,
            ring: str | None = None) -> _QA | None:
    """One MolUnd question (version 3): ``scaffold`` (the Murcko scaffold, a span of the
    input; ``target`` = its number of rings, 1 or 2; ``ring`` = its first ring) or ``ring_system`` (Yes/No, as in
    version 2; ``target`` = present). ``wrong`` is systematic: the scaffold span plus
    or minus one unit (:func:`_scaffold_wrong`), the opposite Yes/No."""
    rings = _CROSS_UND_RINGS if cross else tuple(_UND_RINGS.values())
    if kind == "scaffold":
        n_rings = target if isinstance(target, int) and not isinstance(target, bool) else None
        return _molund_scaffold(rng, rings, n_rings, ring)
    if kind != "ring_system":
        raise ValueError(f"unknown MolUnd kind {kind!r}")
    ring = rng.choice(rings)
    present = rng.random() < 0.5 if target is None else bool(target)
    others = [r for r in rings if r != ring]
    # Two rings either way, so that the length of the molecule does not give the answer away.
    units = [rng.choice(others), ring if present else rng.choice(others)]
    units += [f"C({rng.choice(('O', 'C', 'F', 'N'))})" for _ in range(rng.randint(0, 1))]
    smiles = _chain(rng, units)
    mol = parse_smiles(smiles)
    if mol is None or (count_substructure(mol, ring) > 0) != present:
        return None
    question = f"Input Molecule: {smiles}, Ring System: {ring}."
    answer, wrong = ("Yes", "No") if present else ("No", "Yes")
    meta = {"check": "yes_no", "answer": answer, "smiles": smiles, "ring": ring}
    raw = {"smiles": smiles, "fragment": ring, "count": answer}
    canon = Chem.MolToSmiles(mol, isomericSmiles=False)
    return _QA("MolUnd", kind, INSTRUCTIONS[kind], question, answer, wrong, meta, (canon,), raw)


# -- MolEdit


def _moledit(rng: random.Random, kind: str, cross: bool = False) -> _QA | None:
    """A MolEdit question (version 2): the answer is the input molecule as written, with
    its last group cut off (delete, substitute) and/or the piece to add appended (add,
    substitute). The group to add is named with its SMILES piece (``nitrile (C#N)``), so
    the edit is a copy plus a given piece, as in ChemCoT-Reaction; version 1 named the
    group only, and SmolLM2-135M learned the deletions but not the pieces to add. A group
    to remove occurs twice in the input (``...C(O)O``, once as a branch) and the answer
    keeps one: under the official count check an answer without the group fails, where
    in version 1 any molecule without it passed (chance level 38 %, above the expert)."""
    body = _body(rng, cross)
    groups = sorted(GROUP_PIECES)
    added = removed = None
    if kind == "add":
        added = rng.choice(groups)
    elif kind == "delete":
        removed = rng.choice(groups)
    else:
        removed, added = rng.sample(groups, 2)
    piece = rng.choice(GROUP_PIECES[added]) if added else ""
    # A group to remove: once as a branch that stays, once at the end that goes.
    kept = f"{body}C({rng.choice(GROUP_PIECES[removed])})" if removed else body
    source = kept + rng.choice(GROUP_PIECES[removed]) if removed else body
    target = kept + piece
    question = (f"Input Molecule: {source}" + (f", Functional Group to remove: {removed}" if removed else "")
                + (f", Functional Group to add: {added} ({piece})" if added else "") + ".")
    # The offline data is generated with the project's strict rule (its bytes are fixed).
    if not edit_succeeds(target, source, added, removed, strict=True):
        return None
    # The crowd's systematic error (version 2): the whole branch cut with the group (both
    # copies of a group to remove gone), or an addition left out (the input unchanged).
    wrong = body + "C" + piece if removed else source
    if edit_succeeds(wrong, source, added, removed, strict=True):
        wrong = source
    canon = (_canon(source), _canon(target))
    if None in canon:
        return None
    meta = {"check": "edit", "source": source, "added": added, "removed": removed, "answer": target}
    raw = {"source_smiles": source, "target_smiles": target, "group": added or removed or "",
           "edit": "add" if kind == "add" else "remove" if kind == "delete" else "substitute"}
    return _QA("MolEdit", kind, INSTRUCTIONS["edit"], question, target, wrong, meta, canon, raw)  # type: ignore[arg-type]


# -- MolOpt


def _molopt(rng: random.Random, kind: str, cross: bool = False, bodies: Sequence[str] = ()) -> _QA | None:
    source = rng.choice(bodies) if bodies else _body(rng, cross)
    target = _improved(source, kind)
    if target is None:
        return None
    # A careless answer: the unchanged source, or an edit in the wrong direction
    # (more polar for LogP, more lipophilic for solubility).
    wrong = rng.choice((source, source + rng.choice(_PROPERTY_WRONG[kind]))) if kind != "qed" else source
    canon = (_canon(source), _canon(target))
    if None in canon:
        return None
    question = f"Source Molecule: {source}, Property: {_PROPERTY_NAMES[kind]}."
    meta = {"check": "optimize", "source": source, "property": kind, "answer": target}
    raw = {"smiles_a": source, "smiles_b": target, "property": _PROPERTY_NAMES[kind]}
    return _QA("MolOpt", kind, INSTRUCTIONS["opt"], question, target, wrong, meta, canon, raw)  # type: ignore[arg-type]


@lru_cache(maxsize=65_536)
def _improved(source: str, kind: str) -> str | None:
    """``source`` plus the first piece that improves ``kind``; the order of the
    pieces depends on the molecule, so that answers vary (and checks are cached)."""
    pieces = _PROPERTY_PIECES[kind]
    start = zlib.crc32(f"{source}/{kind}".encode()) % len(pieces)
    for piece in pieces[start:] + pieces[:start]:
        # The offline data was generated with the strict rule and the v1 oracles; kept so its bytes do not change.
        if optimization_succeeds(source + piece, source, kind, strict=True, oracle="v1"):
            return source + piece
    return None


@lru_cache(maxsize=65_536)
def _property_value(smiles: str, kind: str) -> float | None:
    mol = parse_smiles(smiles)
    return None if mol is None else molecular_property(mol, kind, oracle="v1")


def _body_pool(rng: random.Random, n: int, cross: bool = False) -> list[str]:
    """``n`` distinct bodies: property checks are costly (QED), so a seed draws
    from a pool whose checks are computed once and cached."""
    pool: dict[str, None] = {}
    while len(pool) < n:
        pool[_body(rng, cross)] = None
    return list(pool)


# -- Reaction


def _reaction(rng: random.Random, kind: str, pair: tuple[str, str] | None = None) -> _QA | None:
    leaving, pool, reagent_sets = _REACTION_CLASSES[kind]
    if pair is None:
        r = rng.choice(_ACYL_R)
        nucleophile = rng.choice(_ALCOHOLS if pool == "alcohol" else _AMINES)
    else:
        r, nucleophile = pair
    acyl = r + "C(=O)" + leaving
    product = acyl[: -len(leaving)] + nucleophile
    reagents = rng.choice(reagent_sets)
    # Careless answers: the nucleophile appended without losing the leaving group, or the acyl reactant.
    wrong = rng.choice((acyl + nucleophile[1:], acyl, r + nucleophile))
    if same_molecule(wrong, product) or parse_smiles(wrong) is None:
        wrong = acyl
    canon = (_canon(acyl), _canon(nucleophile), _canon(product))
    if None in canon:
        return None
    question = f"Reactants: {acyl}.{nucleophile}, Reagents: {reagents}."
    meta = {"check": "smiles", "answer": product}
    raw = {"reactants": f"{acyl}.{nucleophile}", "reagents": reagents, "product": product}
    # Only the product is reserved: the same reactants recur across the evaluation and the sources.
    return _QA("Reaction", kind, INSTRUCTIONS["reaction"], question, product, wrong, meta, (canon[2],), raw)  # type: ignore[arg-type]


_GENERATORS: dict[str, Callable[..., _QA | None]] = {
    "MolUnd": _molund, "MolEdit": _moledit, "MolOpt": _molopt, "Reaction": _reaction,
}


def _generate(rng: random.Random, subtask: str, kind: str, reserved: _Reserved | None = None,
              seen: set[str] | None = None, **kwargs: Any) -> _QA:
    """A fresh question of ``kind``, none of whose molecules is ``reserved`` (nor ``seen``)."""
    for _ in range(500):
        qa = _GENERATORS[subtask](rng, kind, **kwargs)
        if qa is None or (reserved is not None and reserved.clashes(qa)):
            continue
        if seen is not None:
            if qa.question in seen:
                continue
            seen.add(qa.question)
        return qa
    raise RuntimeError(f"could not generate a fresh {subtask}/{kind} question")  # pragma: no cover


# ------------------------------------------------------------------ sources

_CHAT_STYLES = (
    "Sure! Looking at the structure, the answer is {answer}. Let me know if you need anything else!",
    "Great question. Based on the SMILES, I would say {answer}.",
    "Let me think about the molecule... it looks like {answer}!",
    "Happy to help! From what I can see, the result is {answer}. Hope that helps.",
    "Chemistry is fun! My answer would be {answer}, but please double-check it in the lab.",
)
_PATENT_SENTENCES = (
    "Example {n}. A mixture of {a} ({m} mmol) and the intermediate was stirred at room temperature for {h} h.",
    "The residue was purified by column chromatography (hexane/ethyl acetate) to give {a} as a white solid ({y}%).",
    "Compound {n} ({a}) was dissolved in dichloromethane, washed with brine, dried over sodium sulfate and concentrated.",
    "According to general procedure B, {a} was obtained in {y}% yield after recrystallisation from ethanol.",
    "To a solution of {a} in THF at 0 C was added the reagent dropwise; the mixture was warmed and stirred for {h} h.",
)


def _row(qa: _QA, answer: str | None = None) -> dict[str, str]:
    """A record in the clean (evaluation-format) schema."""
    return {"instruction": qa.instruction, "input": qa.input,
            "output": f"Answer: {qa.answer if answer is None else answer}", "subtask": qa.kind}


class ChemCoTTask(Task):
    """ChemCoTBench: molecule understanding, editing, optimization and reaction prediction on SMILES.

    **Description.** One of four subtasks of ChemCoTBench (``subtask``):
    ``MolUnd`` gives the Murcko scaffold of a molecule (its rings and the
    linkers between them), or decides whether a ring system occurs in it; ``MolEdit`` adds,
    deletes or substitutes a functional group (hydroxyl, amine, halo, nitrile,
    aldehyde, carboxyl, thiol, nitro, ketone, benzene ring; version 2: a group to
    add comes with its SMILES piece, ``nitrile (C#N)``, and a group to remove
    occurs twice, so the edit is the input cut and/or extended and an answer
    without the group fails); ``MolOpt``
    modifies a molecule to raise its LogP, its aqueous solubility (logS) or its
    QED; ``Reaction`` predicts the major product of an acylation
    (esterification, amide coupling, acyl chlorides with amines or alcohols).

    **Prompt and answer format.** ``"{instruction}\\n{input}"``: a fixed
    instruction per item kind, the item's line (e.g. ``Input Molecule: <SMILES>,
    Functional Group to add: nitrile.`` or ``Input Molecule: <SMILES>. Give the
    Murcko scaffold.``) and the format line; the model answers ``Answer:
    <SMILES>`` (``Answer: Yes/No`` for MolUnd's ring-system items).

    **Metric.** Per item in ``[0, 1]``, with RDKit
    (:mod:`ftdojo_gym.grading.chemistry_grading`), re-implementing the official
    ChemCoTBench evaluation (parity on its published result files in
    ``tests/grading/test_chemistry_parity.py``: MolEdit add/delete/sub, MolOpt
    logP/solubility/QED success, forward-reaction exact match, MolUnd count MAE,
    Yes/No and Murcko soft scores all equal the official numbers). The official
    behaviour is the default: MolUnd exact count or Yes/No (the official count
    score is the MAE of the same answers; accuracy is reported here so the
    score is in ``[0, 1]``), real Murcko scaffold items by the official soft
    score (1 for the same Murcko scaffold, else the Tanimoto similarity of the
    scaffolds; it takes the scaffold of the answer, so repeating the input
    molecule scores 1, as officially); offline MolUnd scaffold items (version
    3) by exact scaffold, deliberately stricter: the answer must be the same
    molecule as the reference scaffold (canonical SMILES or InChI, so any
    SMILES of it passes), and repeating the input scores 0 (under the soft
    score it would score 1 on every item; the official soft score of these
    items is not yet reported next to the subsets);
    MolEdit success by the official group-count check only;
    MolOpt success when the property of the answer is strictly higher than the
    source's and (deliberately stricter than the official ``success_rate``,
    which has no scaffold requirement) the answer keeps the source's Murcko
    scaffold, fragment count and half its heavy atoms: under the official rule
    alone one constant high-property molecule answers every item, which a
    trained model finds (``meta={"strict": False}`` on an item gives the
    official rule, and the official success rate is reported next to the
    subsets as ``MolOpt/official``; it is not part of the score);
    Reaction exact match (same molecule by canonical SMILES or InChI). For
    MolEdit the project's stricter rule (same fragment count and half the heavy
    atoms) is opt-in (``meta={"strict": True}``); it and MolOpt's rule also
    build the offline data. Property oracles: real
    items use the official ones (TDC's penalized logP, QED, refit ESOL);
    offline MolOpt items use the ``v1`` oracles their data was built with
    (Crippen logP, QED, a linear logS), since 46 of the 200 offline gold answers
    (an added chlorine) lower penalized logP. The task score is the mean; the
    env also reports each item kind as a subset.

    **MolUnd version 3** (``docs/dev/task-redesign.md``; version 2's counts
    and Yes/No sat at chance with SmolLM2-135M). Nine items in ten ask for the
    Murcko scaffold of ``head + core + tail``: the core is one ring or two
    rings joined by a linker, at least one of head and tail is there, and the
    gold answer is the core as written in the input, the span from its first
    ring atom to its last ring-closure digit (kept only when RDKit's Murcko
    scaffold of the molecule is the core). One item in ten is a ring-system
    Yes/No question, kept for fidelity; the counting kinds are dropped. One-
    and two-ring scaffolds alternate and Yes/No is balanced in both splits,
    each ring as often as the others among one-ring scaffolds, so no constant
    answer scores more than 5 %; repeating the input scores 0 and another
    item's answer about 3 %. The crowd source's wrong labels are systematic:
    the gold span plus one unit (the first atom of the tail or, without a
    tail, the last atom of the head) or, for two-ring cores, only the first
    ring; the opposite Yes/No. Not yet measured with SmolLM2-135M: the
    calibration (expert, format-only, harmful) is pending, and the official
    soft scaffold score is not yet reported next to the subsets.

    **Splits.** ``EVAL_SIZE`` = 200 items, the kinds interleaved so that the
    first 100 (validation) and the last 100 (hidden test) cover each kind.

    **Sources.** ``chemcot_sft`` (clean), ``crowd_chem_qa``, ``chem_qa_mirror``,
    ``chem_chat``, ``general_chat``, ``patent_extracts`` and one cross-domain
    source (``descriptor_table``, ``matched_pairs``, ``property_pairs`` or
    ``uspto_reactions``); see the module docstring for their schemas.

    **Real data.** ``data="hub"`` loads ``OpenMol/ChemCoTBench`` (fields ``id``,
    ``query``, ``gt``, ``task``, ``subtask``, ``meta``) and keeps the items of
    this subtask that the graders can verify (MolOpt: logp, qed, solubility;
    Reaction: forward prediction ``fs``). ``data="<folder>"`` takes either one
    ``chemcotbench.jsonl`` with every row or the benchmark's own layout, one file
    per subtask in that schema (``mol_und/fg_count.json``, ``ring_count``,
    ``Murcko_scaffold``, ``ring_system_scaffold``, ``equivalence``;
    ``mol_edit/add.json``, ``delete``, ``sub``; ``mol_opt/logp.json``,
    ``solubility``, ``qed``; ``reaction/fs.json``; the family folders are
    optional). MolOpt items need no reference molecule (the metric compares the
    answer with the source); one improving single edit is shown as the reference
    when one exists. Generation limits come from each real item: its gold
    completion (for MolOpt, also its source molecule) in UTF-8 bytes plus
    ``REAL_TOKEN_HEADROOM`` = 32, never below the subtask's offline limit (a
    real Murcko scaffold is far longer than an offline one).

    **Default budget.** 200,000 training tokens (the expert recipe uses about
    40,000: 40 steps of 8 examples).
    """

    domain = "Chemistry"
    version = "1"
    default_token_budget = 200_000
    hub_datasets = {"chemcotbench": HubDataset("OpenMol/ChemCoTBench", split="train")}

    def __init__(self, subtask: str = "MolUnd") -> None:
        if subtask not in SUBTASKS:
            raise ValueError(f"subtask must be one of {SUBTASKS}, got {subtask!r}")
        self.subtask = subtask
        self.init_kwargs = {"subtask": subtask}
        self.name = f"ChemCoT-{subtask}"
        self.metric = _METRICS[subtask]
        self.version = _VERSIONS[subtask]
        self.max_new_tokens = _MAX_NEW_TOKENS[subtask]
        self.kinds = KINDS[subtask]
        #: The kinds of consecutive items (evaluation and sources), repeated.
        self.kind_mix = _KIND_MIX.get(subtask, self.kinds)
        self.source_specs = (*COMMON_SOURCES, CROSS_DOMAIN_SOURCES[subtask])
        self.source_seed = f"chemcot/{subtask}/{{seed}}/{{source}}"
        self._eval_cache: dict[int, list[_QA]] = {}

    # -- evaluation

    def _eval_qas(self, seed: int) -> list[_QA]:
        if seed not in self._eval_cache:
            rng = random.Random(f"chemcot/{self.subtask}/{seed}/eval")
            seen: set[str] = set()
            reserved = _Reserved()
            if self.subtask == "MolOpt":
                kwargs_all: dict[str, Any] = {"bodies": self._pools(seed)[0]}
            else:
                kwargs_all = {}
            qas: list[_QA] = []
            pairs = self._reaction_pairs(rng)
            made: dict[str, int] = {}
            for i in range(EVAL_SIZE):
                kind = self.kind_mix[i % len(self.kind_mix)]
                made[kind] = made.get(kind, 0) + 1
                kwargs: dict[str, Any] = dict(kwargs_all)
                if self.subtask == "MolUnd":
                    # Balanced in both halves: one- and two-ring scaffolds in turn, each ring as
                    # often as the others among the one-ring scaffolds (so no constant answer
                    # fits more than 5 %), Yes and No alternating.
                    turn, rounds = (made[kind] - 1) % 2, (made[kind] - 1) // 2
                    kwargs["target"] = turn + 1 if kind == "scaffold" else turn == 0
                    if kind == "scaffold" and turn == 0:
                        kwargs["ring"] = _UND_RING_ORDER[rounds % len(_UND_RING_ORDER)]
                elif self.subtask == "Reaction":
                    # Each (acyl group, nucleophile) pair once: its product is unique to the item.
                    pool = pairs[_REACTION_CLASSES[kind][1]]
                    qa = None
                    while qa is None:
                        qa = _reaction(rng, kind, pair=pool.pop())
                    reserved.add(qa)
                    qas.append(qa)
                    continue
                qa = _generate(rng, self.subtask, kind, reserved, seen, **kwargs)
                reserved.add(qa)
                qas.append(qa)
            self._eval_cache[seed] = qas
        return self._eval_cache[seed]

    def _pools(self, seed: int) -> tuple[list[str], list[str]]:
        """MolOpt molecule pools of a seed: in-domain (evaluation and sources) and cross-domain."""
        rng = random.Random(f"chemcot/{self.subtask}/{seed}/pools")
        return _body_pool(rng, 450), _body_pool(rng, 160, cross=True)

    def _reaction_pairs(self, rng: random.Random) -> dict[str, list[tuple[str, str]]]:
        """Distinct (acyl group, nucleophile) pairs for the evaluation reactions."""
        pairs: dict[str, list[tuple[str, str]]] = {}
        for pool, nucleophiles in (("alcohol", _ALCOHOLS), ("amine", _AMINES)):
            combos = [(r, n) for r in _ACYL_R for n in nucleophiles]
            rng.shuffle(combos)
            pairs[pool] = combos
        return pairs

    def eval_items(self, seed: int) -> list[EvalItem]:
        """``EVAL_SIZE`` items, the kinds interleaved."""
        return [
            EvalItem(id=f"{self.name}/{seed}/{i:03d}", subset=qa.kind, prompt=qa.prompt,
                     reference=f"Answer: {qa.answer}", meta=dict(qa.meta))
            for i, qa in enumerate(self._eval_qas(seed))
        ]

    def max_new_tokens_for(self, item: EvalItem) -> int:
        """The subtask's limit, or the one real data sets for the item (``meta["max_new_tokens"]``)."""
        return int(item.meta.get("max_new_tokens") or self.max_new_tokens)

    def grade(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        """Per-item scores in ``[0, 1]``; never raises on any output string."""
        if len(items) != len(outputs):
            raise ValueError(f"{len(outputs)} outputs for {len(items)} items")
        # Offline MolOpt items were built with the v1 oracles (Crippen logP, linear logS) and carry
        # no oracle in their meta; real items carry ``oracle="official"``.
        # MolOpt keeps the source's scaffold by default (``strict``): under the official rule alone
        # one constant high-property molecule answers every item, a policy an agent can train.
        return [grade_item(output if isinstance(output, str) else "", _anti_gaming(item.meta), oracle="v1")
                for item, output in zip(items, outputs, strict=True)]

    def extra_scores(self, items: Sequence[EvalItem], scores: Sequence[float], outputs: Sequence[str]
                     ) -> dict[str, float]:
        """``{"MolOpt/official": ...}``: ChemCoTBench's own ``success_rate`` over the
        optimization items (the property improved, no scaffold rule), reported next to
        the subsets; the score keeps the source's scaffold (see the card)."""
        official = [
            grade_item(output if isinstance(output, str) else "", {**item.meta, "strict": False}, oracle="v1")
            for item, output in zip(items, outputs, strict=False) if item.meta.get("check") == "optimize"
        ]
        return {"MolOpt/official": sum(official) / len(official)} if official else {}

    # -- sources

    def held_out(self, seed: int) -> _Reserved:
        """The evaluation molecules (no source uses one), with the MolOpt molecule pools."""
        reserved = _Reserved(*self._pools(seed)) if self.subtask == "MolOpt" else _Reserved()
        for qa in self._eval_qas(seed):
            reserved.add(qa)
        return reserved

    def _kind_cycle(self, n: int) -> list[str]:
        return [self.kind_mix[i % len(self.kind_mix)] for i in range(n)]

    def _qas(self, rng: random.Random, reserved: _Reserved, n: int) -> list[_QA]:
        kwargs = {"bodies": reserved.bodies} if self.subtask == "MolOpt" else {}
        return [_generate(rng, self.subtask, kind, reserved, **kwargs) for kind in self._kind_cycle(n)]

    def _chemcot_sft(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        return [_row(qa) for qa in self._qas(rng, reserved, rng.randint(1200, 1500))]

    def _crowd_chem_qa(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for qa in self._qas(rng, reserved, rng.randint(2000, 2400)):
            wrong = rng.random() < _CROWD_WRONG_RATE.get(self.subtask, 0.45)
            # Agreement separates the labels well but not perfectly: a field
            # filter at ~0.6 keeps most good rows and drops most bad ones.
            low = rng.random() < (0.92 if wrong else 0.06)
            agreement = rng.uniform(0.2, 0.6) if low else rng.uniform(0.6, 0.8 if wrong else 1.0)
            rows.append({**_row(qa, qa.wrong if wrong else None), "annotator_agreement": round(agreement, 2)})
        return rows

    def _chem_qa_mirror(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for qa in self._qas(rng, reserved, rng.randint(32, 44)):
            row = _row(qa)
            for _ in range(rng.randint(15, 30)):
                instruction = rng.choice((row["instruction"], row["instruction"].lower(), row["instruction"].upper(),
                                          row["instruction"].replace(". ", ".  ")))
                text = row["input"].replace("\nThe answer", rng.choice(("\nThe answer", " \nThe answer", "\n\nThe answer")))
                rows.append({"instruction": instruction + rng.choice(("", " ", "  ")),
                             "input": text + rng.choice(("", " ", "\n")),
                             "output": row["output"] + rng.choice(("", " ", "  ")), "subtask": row["subtask"]})
        rng.shuffle(rows)
        return rows

    def _chem_chat(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for qa in self._qas(rng, reserved, rng.randint(900, 1100)):
            rows.append({"instruction": qa.instruction, "question": qa.question,
                         "response": rng.choice(_CHAT_STYLES).format(answer=qa.answer),
                         "answer": qa.answer, "subtask": qa.kind})
        return rows

    def _patent_extracts(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for qa in self._qas(rng, reserved, rng.randint(300, 340)):
            row = _row(qa)
            if rng.random() >= 0.08:
                # Compound names in the experimental text: bodies from the other families.
                sentences = [
                    rng.choice(_PATENT_SENTENCES).format(n=k + 1, a=_body(rng, cross=True), m=rng.randint(1, 50),
                                                         h=rng.randint(1, 24), y=rng.randint(30, 98))
                    for k in range(rng.randint(60, 80))
                ]
                row["input"] = "Experimental section:\n" + " ".join(sentences) + "\n" + row["input"]
            rows.append(row)
        return rows

    # cross-domain sources, one per subtask

    def _descriptor_table(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for _ in range(rng.randint(1000, 1200)):
            qa = _generate(rng, "MolUnd", "scaffold", reserved, cross=True)
            rows.append({"library": rng.choice(("fragrance", "agrochemical", "dye", "polymer additive")),
                         "smiles": qa.raw["smiles"], "scaffold": qa.raw["scaffold"]})
        return rows

    def _matched_pairs(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for _ in range(rng.randint(1000, 1200)):
            qa = _generate(rng, "MolEdit", rng.choice(("add", "add", "delete")), reserved, cross=True)
            rows.append({"source_smiles": qa.raw["source_smiles"], "target_smiles": qa.raw["target_smiles"],
                         "edit": qa.raw["edit"], "group": qa.raw["group"]})
        return rows

    def _property_pairs(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for _ in range(rng.randint(800, 1000)):
            kind = rng.choice(KINDS["MolOpt"])
            qa = _generate(rng, "MolOpt", kind, reserved, cross=True, bodies=reserved.cross_bodies)
            a = qa.raw["smiles_a"]
            b = qa.raw["smiles_b"] if rng.random() < 0.65 else a + _PAIR_OTHER_PIECE[kind]
            before, after = _property_value(a, kind), _property_value(b, kind)
            rows.append({"smiles_a": a, "smiles_b": b, "property": qa.raw["property"],
                         "delta": round(after - before, 3) if before is not None and after is not None else 0.0})
        return rows

    def _uspto_reactions(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        while len(rows) < 1000 + rng.randint(0, 200):
            r = rng.choice(_CROSS_SULFONYL_R)
            nucleophile = rng.choice(_AMINES + _ALCOHOLS)
            chloride = r + "S(=O)(=O)Cl"
            product = r + "S(=O)(=O)" + nucleophile
            canon = _canon(product)
            if canon is None or canon in reserved.molecules:
                continue
            reagents = rng.choice(("CCN(CC)CC", "c1ccncc1", "ClCCl.CCN(CC)CC"))
            rows.append({"rxn_smiles": f"{chloride}.{nucleophile}>{reagents}>{product}",
                         "reactants": f"{chloride}.{nucleophile}", "reagents": reagents, "product": product,
                         "rxn_class": "sulfonamide formation" if nucleophile.startswith("N") else "sulfonate ester formation"})
        return rows

    # -- real data

    def with_data(self, data: str) -> Task:
        """This task on other data (see :meth:`Task.with_data`). A folder may hold one
        ``chemcotbench.*`` file with every row, or the benchmark's own layout: one file
        per subtask (``fg_count.json``, ``add.json``, ``qed.json``, ``fs.json``...),
        directly in the folder or under ``mol_und/``, ``mol_edit/``, ``mol_opt/``,
        ``reaction/``, each a list of rows in the hub schema (``id``, ``query``,
        ``gt``, ``task``, ``subtask``, ``meta``; ``task`` and ``subtask`` default to
        the folder and file names)."""
        folder = Path(data)
        if data in ("offline", "hub") or not folder.is_dir() or any(folder.glob("chemcotbench.*")):
            return super().with_data(data)
        from datasets import Dataset

        rows = _subtask_file_rows(folder)
        if not rows:
            raise FileNotFoundError(
                f"no ChemCoTBench file in {folder}: expected chemcotbench.jsonl (all rows) or one file per subtask "
                f"({', '.join(f'{fam}/{name}.json' for fam, names in SUBTASK_FILES.items() for name in names[:1])}, ...)")
        records = {"chemcotbench": Dataset.from_list(rows)}
        sources, items = self.map_hub_records(records)
        if not items:
            raise ValueError(f"the real data of {self.name} produced no evaluation items")
        return RealDataTask(self, sources, items, _fingerprint(records))

    def map_hub_records(self, records: Mapping[str, Any]) -> tuple[dict[str, Any], list[EvalItem]]:
        """ChemCoTBench rows (``id``, ``query``, ``gt``, ``task``, ``subtask``, ``meta``) of this
        subtask as evaluation items; the sources are the offline repository (seed 0),
        since the benchmark itself is a test set."""
        family = {"MolUnd": "mol_und", "MolEdit": "mol_edit", "MolOpt": "mol_opt", "Reaction": "reaction"}[self.subtask]
        items: list[EvalItem] = []
        for row in records["chemcotbench"]:
            if row.get("task") != family:
                continue
            meta = _hub_meta(self.subtask, row)
            if meta is None:
                continue
            answer = str(meta.pop("reference"))
            # A real scaffold or product is far longer than an offline answer: the limit
            # comes from the item (an optimized molecule is about as long as its source).
            longest = max(len(f"Answer: {answer}".encode()), len(f"Answer: {meta.get('source', '')}".encode()))
            meta["max_new_tokens"] = max(self.max_new_tokens, longest + REAL_TOKEN_HEADROOM)
            items.append(EvalItem(id=f"{self.name}/hub/{row.get('id') or len(items)}", subset=str(row.get("subtask")),
                                  prompt=str(row["query"]), reference=f"Answer: {answer}", meta=meta))
        return self.sources(0), items


# -------------------------------------------------------------- real records

#: The benchmark's per-subtask files (``IDEA-AI4S/ChemCoTBench``), by task family.
SUBTASK_FILES: dict[str, tuple[str, ...]] = {
    "mol_und": ("fg_count", "ring_count", "Murcko_scaffold", "ring_system_scaffold", "equivalence"),
    "mol_edit": ("add", "delete", "sub"),
    "mol_opt": ("logp", "solubility", "qed", "drd", "gsk", "jnk"),
    "reaction": ("fs", "retro"),
}
_FILE_SUFFIXES = (".json", ".jsonl")


def _subtask_file_rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of the per-subtask files in ``folder`` (or its family subfolders), in
    the order of :data:`SUBTASK_FILES`, with ``task``/``subtask`` filled from the path."""
    rows: list[dict[str, Any]] = []
    for family, names in SUBTASK_FILES.items():
        for name in names:
            for base in (folder / family, folder):
                path = next((base / f"{name}{suffix}" for suffix in _FILE_SUFFIXES if (base / f"{name}{suffix}").is_file()),
                            None)
                if path is None:
                    continue
                text = path.read_text(encoding="utf-8")
                try:
                    data = json.loads(text)
                    records = data if isinstance(data, list) else [data]
                except ValueError:  # JSON lines
                    records = [json.loads(line) for line in text.splitlines() if line.strip()]
                for record in records:
                    row = {key: record.get(key) for key in ("id", "query", "gt", "task", "subtask", "meta")}
                    row["task"] = row["task"] or family
                    row["subtask"] = row["subtask"] or name
                    for key in ("gt", "meta"):
                        if row[key] is not None and not isinstance(row[key], str):
                            row[key] = json.dumps(row[key])
                    rows.append({k: "" if v is None else str(v) for k, v in row.items()})
                break
    return rows


_MOLECULE_IN_QUERY = re.compile(r"(?:Input|Source) Molecule:\s*(\S+)")
_HUB_PROPERTIES = {"logp": "logp", "qed": "qed", "solubility": "solubility"}


def _json_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        data = json.loads(value) if isinstance(value, str) and value.strip() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _molecule_in_query(query: str) -> str | None:
    match = _MOLECULE_IN_QUERY.search(query or "")
    if not match:
        return None
    smiles = match.group(1).rstrip(",.")
    return smiles if parse_smiles(smiles) is not None else None


def _improving_edit(source: str, prop: str) -> str | None:
    """A reference answer for an optimization item (the official metric needs none:
    it compares the answer's property with the source's): ``source`` with one
    small group on a carbon that carries a hydrogen, or with one terminal heavy
    atom removed, that improves ``prop`` by the official oracle; ``None`` if no
    such single edit does."""
    mol = parse_smiles(source)
    if mol is None:
        return None
    candidates: list[Chem.Mol] = []
    for piece in (*_PROPERTY_PIECES[prop], *_EXTRA_PIECES):
        group = Chem.MolFromSmiles(piece)
        for atom in mol.GetAtoms():
            if atom.GetAtomicNum() != 6 or atom.GetTotalNumHs() == 0:
                continue
            combo = Chem.RWMol(Chem.CombineMols(mol, group))
            combo.AddBond(atom.GetIdx(), mol.GetNumAtoms(), Chem.BondType.SINGLE)
            candidates.append(combo)
    for atom in mol.GetAtoms():
        if atom.GetDegree() == 1:
            smaller = Chem.RWMol(mol)
            smaller.RemoveAtom(atom.GetIdx())
            candidates.append(smaller)
    for candidate in candidates:
        try:
            Chem.SanitizeMol(candidate)
            smiles = Chem.MolToSmiles(candidate)
        except Exception:  # noqa: BLE001 - an impossible valence; try the next edit
            continue
        if optimization_succeeds(smiles, source, prop):
            return smiles
    return None


#: More single-group edits tried for a real item's reference, after the property's own pieces.
_EXTRA_PIECES = ("O", "N", "F", "Cl", "C", "C(=O)O", "C(N)=O", "OC")


def _hub_meta(subtask: str, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The grader meta (plus ``reference``) of one real ChemCoTBench row, or ``None``
    when the grader cannot verify the item."""
    gt, meta, query = row.get("gt"), _json_dict(row.get("meta")), str(row.get("query") or "")
    name = str(row.get("subtask") or "")
    if subtask == "MolUnd":
        text = str(gt).strip() if gt is not None else ""
        if re.fullmatch(r"\d+", text):
            return {"check": "count", "answer": int(text), "reference": text}
        if text.casefold() in ("yes", "no"):
            answer = text.capitalize()
            return {"check": "yes_no", "answer": answer, "reference": answer}
        if text and parse_smiles(text) is not None:
            # Murcko scaffold items: the official soft scaffold score.
            return {"check": "scaffold", "answer": text, "reference": text}
        return None
    if subtask == "MolEdit":
        source = _molecule_in_query(query)
        added, removed = meta.get("added_group"), meta.get("removed_group")
        reference = meta.get("reference") or (gt if isinstance(gt, str) else "")
        if source is None or not reference or any(g is not None and g not in GROUP_SMARTS for g in (added, removed)):
            return None
        if added is None and removed is None:
            return None
        if not edit_succeeds(reference, source, added, removed):
            return None
        return {"check": "edit", "source": source, "added": added, "removed": removed, "reference": reference}
    if subtask == "MolOpt":
        prop = _HUB_PROPERTIES.get(name.lower())
        source = _molecule_in_query(query)
        if prop is None or source is None:
            return None
        # Kept even without a reference: the official metric compares the answer with the source.
        reference = _improving_edit(source, prop) or f"(any molecule with a higher {_PROPERTY_NAMES[prop]} than {source})"
        return {"check": "optimize", "source": source, "property": prop, "oracle": "official",
                "reference": reference}
    if name != "fs":
        return None
    product = _json_dict(gt).get("Major Product") if isinstance(gt, str) and gt.strip().startswith("{") else gt
    if isinstance(product, str) and product.strip().startswith("["):
        try:
            product = json.loads(product)  # a list of products written as JSON
        except ValueError:
            return None
    if isinstance(product, list):
        product = ".".join(map(str, product))
    if not isinstance(product, str) or parse_smiles(product) is None:
        return None
    return {"check": "smiles", "answer": product, "reference": product}


#: The sources of every subtask (see the module docstring).
COMMON_SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "chemcot_sft",
        "Instruction-tuning examples for this chemistry task (instruction, input, output) in the benchmark's format.",
        ChemCoTTask._chemcot_sft,
    ),
    SourceSpec(
        "crowd_chem_qa",
        "Chemistry question-answer pairs collected on a crowd-sourcing platform, with an annotator agreement score.",
        ChemCoTTask._crowd_chem_qa,
    ),
    SourceSpec(
        "chem_qa_mirror",
        "Chemistry examples aggregated from several public mirrors of a benchmark.",
        ChemCoTTask._chem_qa_mirror,
    ),
    SourceSpec(
        "chem_chat",
        "Conversations with a chemistry chat assistant, with the extracted short answer.",
        ChemCoTTask._chem_chat,
    ),
    SourceSpec(
        "general_chat",
        "General instruction-response pairs scraped from the web (cooking, travel, hobbies).",
        HOBBY_CHAT,
    ),
    SourceSpec(
        "patent_extracts",
        "Questions attached to experimental sections extracted from chemistry patents.",
        ChemCoTTask._patent_extracts,
    ),
)
#: The helpful cross-domain source of each subtask.
CROSS_DOMAIN_SOURCES: dict[str, SourceSpec] = {
    "MolUnd": SourceSpec(
        "descriptor_table",
        "Murcko scaffolds from a descriptor database of other compound libraries (smiles, scaffold).",
        ChemCoTTask._descriptor_table),
    "MolEdit": SourceSpec(
        "matched_pairs",
        "Matched molecular pairs from other compound families: a source and a target SMILES differing by one group.",
        ChemCoTTask._matched_pairs),
    "MolOpt": SourceSpec(
        "property_pairs",
        "Pairs of related molecules from other compound families with the change (delta) of a property.",
        ChemCoTTask._property_pairs),
    "Reaction": SourceSpec(
        "uspto_reactions",
        "Patent reactions of another reaction class as reaction SMILES, with reactants, reagents and product.",
        ChemCoTTask._uspto_reactions),
}

__all__ = ["EVAL_SIZE", "FORMAT_LINE", "INSTRUCTIONS", "KINDS", "SUBTASKS", "ChemCoTTask"]


def _anti_gaming(meta: dict) -> dict:
    """An item's grading meta with the project's strict optimization rule unless the item says otherwise."""
    if meta.get("check") == "optimize" and "strict" not in meta:
        return {**meta, "strict": True}
    return meta

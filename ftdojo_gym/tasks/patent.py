"""Patent examination (PANORAMA): offline data repositories, real-data loader and graders.

Three subtasks after the PANORAMA benchmark (LG AI Research, "PANORAMA: A
Dataset and Benchmark Tasks Capturing the Evaluation Trails and Rationales in
Patent Examination", arXiv 2505.12238; code github.com/LGAI-Research/PANORAMA):

* ``PAR4PC`` — prior-art retrieval: which candidate documents (A-F offline,
  A-H in the real data) did the examiner cite against the claim? One or more
  letters; per-item F1 against the gold letters, averaged (macro-F1).
* ``PI4PC`` — paragraph identification: which paragraph of a prior-art
  document (keyed by its paragraph number) did the examiner cite? One key;
  gold hit rate.
* ``NOC4PC`` — novelty/obviousness: is the claim anticipated by one document
  (``102``), obvious over the documents combined (``103``) or allowable
  (``ALLOW``)? Macro-F1 over the three labels across the split.

Offline data are synthetic but shaped like examination records: claims are
built from technical features ("a thermal pad made of graphite", "a vent
valve configured to release gas pressure") of eight technology fields, and the
answer follows from the features by a regular rule an examiner would apply:
the cited documents disclose the claim's features (PAR4PC), the cited
paragraph describes the claimed element (PI4PC), and the claim is anticipated
when one document discloses every feature, obvious when only the documents
together do, allowable when a feature is disclosed by none (NOC4PC).

The prompt of an evaluation item is exactly ``{instruction}\\n{input}``;
``instruction`` is the subtask's :data:`INSTRUCTIONS` entry and ``input`` is
``{claim}\\n{prior_art}`` (the claim line, then the candidates, the document's
paragraphs or the cited documents). The expected completion ``output`` is
``Answer: <answer>``: ``Answer: A, C`` / ``Answer: 34`` / ``Answer: 103``, after
the examiner's quote of the prior art it relies on (version 3; see :class:`PatentTask`).

Sources (the same names for the three subtasks, each in that subtask's
format; deterministic in the seed; no evaluation claim occurs in any):

* ``examiner_records`` — clean, in-domain, evaluation format
  (``instruction``, ``input``, ``output``, ``field``).
* ``crowd_labels`` — the same plus ``annotator_agreement``; about 45 % of the
  answers are wrong (PAR4PC), or about 70 % wrong in one systematic way
  (PI4PC: the paragraph after the cited one; NOC4PC: 102 as 103, 103 as
  ALLOW, ALLOW as 102), mostly on rows with agreement below 0.6.
* ``citation_mirror`` — a few dozen records repeated many times with changes of
  case and whitespace only.
* ``examiner_notes`` — free-text rationales (``rationale``) without the
  ``Answer:`` line, plus the raw ``claim``, ``prior_art`` and bare ``answer``;
  rescued by the prompt ``"<instruction>\\n{claim}\\n{prior_art}"`` (instruction
  written out) and the completion ``"Answer: {answer}"``.
* ``web_text`` — off-domain chat (``prompt``, ``response``).
* ``full_specifications`` — evaluation format over full documents (2,000+
  tokens); a few short ones survive a length filter.
* a helpful cross-domain source in another layout, usable after a transform
  into the evaluation format: ``product_search`` (PAR4PC: shopping requests
  matched against catalogue entries, ``request``/``catalogue``/``matches``),
  ``manual_sections`` (PI4PC: which section of a product manual describes a
  part, ``query``/``manual``/``section``), ``foreign_decisions`` (NOC4PC:
  decisions on chemistry and food claims from another office, already in US
  statute codes, ``claim_text``/``citations``/``outcome``).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from ftdojo_gym.grading.patent_grading import (
    NOC_LABELS,
    grade_noc4pc,
    grade_par4pc,
    grade_pi4pc,
    macro_f1,
    normalise_noc_label,
    predict_noc,
)
from ftdojo_gym.tasks.base import EvalItem, HubDataset, SourceSpec, Task
from ftdojo_gym.tasks.offdomain import ADVICE_CHAT

SUBTASKS: tuple[str, ...] = ("PAR4PC", "PI4PC", "NOC4PC")
#: Items per evaluation set, split by :meth:`~ftdojo_gym.tasks.base.Task.split`.
EVAL_SIZE = 200
#: Options of an offline PAR4PC item (PANORAMA has eight, A-H; six keep prompts short).
PAR_LETTERS = "ABCDEF"

INSTRUCTIONS: dict[str, str] = {
    "PAR4PC": (
        "You are a patent examiner. Identify the candidate documents that were cited as prior art "
        "against the claim. Several may be cited; give their letters."
    ),
    "PI4PC": (
        "You are a patent examiner. Identify the paragraph of the prior-art document that the examiner "
        "cited against the claim; give its paragraph number."
    ),
    "NOC4PC": (
        "You are a patent examiner. Decide whether the claim is anticipated by a single cited document (102), "
        "obvious over the cited documents combined (103), or allowable (ALLOW)."
    ),
}
_METRICS = {
    "PAR4PC": "macro-F1 (per-item F1 of the cited letters, averaged)",
    "PI4PC": "gold hit rate (the cited paragraph)",
    "NOC4PC": "macro-F1 over ALLOW / 102 / 103",
}


# ---------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class _Field:
    """A technology field: the device, its components, materials and functions."""

    key: str
    device: str
    components: tuple[str, ...]
    materials: tuple[str, ...]
    functions: tuple[str, ...]


def _field(key: str, device: str, components: str, materials: str, functions: str) -> _Field:
    return _Field(key, device, *(tuple(s.strip() for s in v.split(";")) for v in (components, materials, functions)))


_IN_DOMAIN: tuple[_Field, ...] = (
    _field("batteries", "battery module",
           "cell stack; thermal pad; busbar; cooling plate; vent valve; housing; separator; terminal cover; fuse; "
           "sensor board",
           "graphite; aluminium; copper; ceramic; silicone; nickel",
           "dissipate heat; release gas pressure; balance cell voltage; measure temperature; interrupt current; "
           "absorb vibration"),
    _field("drones", "unmanned aerial vehicle",
           "rotor arm; propeller guard; gimbal; landing skid; battery bay; flight controller; camera mount; "
           "antenna mast; motor housing; payload hook",
           "carbon fibre; magnesium; nylon; titanium; polycarbonate; balsa wood",
           "stabilise the camera; detect obstacles; release a parcel; fold for storage; dampen vibration; "
           "relay a radio signal"),
    _field("catheters", "catheter assembly",
           "balloon; guide wire; hub; sheath; tip electrode; lumen liner; valve seal; marker band; strain relief; "
           "stylet",
           "polyurethane; platinum; nitinol; PTFE; silicone rubber; stainless steel",
           "deliver a drug; seal the vessel; sense blood pressure; ablate tissue; steer the tip; prevent backflow"),
    _field("printers", "inkjet printer",
           "print head; ink cartridge; paper tray; platen roller; carriage belt; wiper blade; nozzle plate; "
           "waste pad; duplex unit; encoder strip",
           "stainless steel; rubber; polyimide; glass; acetal; felt",
           "clean the nozzles; feed a sheet; detect paper jams; heat the ink; absorb excess ink; "
           "position the carriage"),
    _field("brakes", "vehicle brake system",
           "brake caliper; brake disc; brake pad; piston; master cylinder; wear sensor; dust shield; bleed screw; "
           "mounting bracket; return spring",
           "cast iron; ceramic composite; steel; aluminium alloy; copper-free resin; carbon ceramic",
           "detect pad wear; reduce brake noise; cool the disc; retract the piston; amplify pedal force; "
           "prevent corrosion"),
    _field("routers", "wireless router",
           "antenna array; radio chip; heat sink; Ethernet port; power amplifier; status light; mesh module; "
           "band filter; reset button; firmware memory",
           "copper; FR-4 laminate; aluminium; ceramic; polycarbonate; ferrite",
           "steer the beam; filter the 5 GHz band; cool the chipset; balance client load; detect interference; "
           "reject adjacent channels"),
    _field("solar", "solar panel",
           "photovoltaic cell; glass cover; junction box; bypass diode; backsheet; frame rail; encapsulant layer; "
           "mounting clamp; tracking motor; reflector strip",
           "tempered glass; EVA; anodised aluminium; perovskite; monocrystalline silicon; fluoropolymer",
           "track the sun; prevent hot spots; shed snow; reduce reflection; seal against moisture; "
           "bypass a shaded cell"),
    _field("locks", "electronic door lock",
           "deadbolt; keypad; latch motor; strike plate; fingerprint reader; battery cover; door sensor; "
           "override cylinder; gear train; escutcheon",
           "brass; zinc alloy; hardened steel; ABS; tempered glass; sintered bronze",
           "detect a closed door; lock automatically; resist drilling; verify a fingerprint; wake on touch; "
           "report tampering"),
)
# Other fields and layouts: the helpful cross-domain sources, never an evaluation item.
_PRODUCTS: tuple[_Field, ...] = (
    _field("tents", "camping tent",
           "tent pole; rain fly; floor panel; vent flap; guy line; door zipper; stake; mesh pocket",
           "carbon fibre; ripstop nylon; polyester; aluminium; Dyneema; silnylon",
           "reduce condensation; resist wind; pack small; shed rain; hold a lantern; anchor in sand"),
    _field("kettles", "electric kettle",
           "lid; spout filter; heating plate; handle; water gauge; base connector; thermostat; boil switch",
           "borosilicate glass; stainless steel; BPA-free plastic; bamboo; copper; silicone",
           "keep water warm; switch off when dry; trap limescale; show the water level; pour quietly; "
           "boil at a set temperature"),
    _field("bicycles", "city bicycle",
           "frame; fork; saddle; chain guard; hub dynamo; kickstand; pannier rack; mudguard",
           "chromoly steel; aluminium; leather; cork; carbon fibre; titanium",
           "power a lamp; carry groceries; absorb bumps; keep trousers clean; lock the wheel; fold for transit"),
    _field("chairs", "office chair",
           "backrest; seat cushion; armrest; gas lift; caster; lumbar pad; headrest; tilt lever",
           "mesh fabric; memory foam; polished aluminium; nylon; oak; recycled plastic",
           "support the lower back; lock the recline; roll on carpet; adjust the height; cool the sitter; "
           "swivel silently"),
    _field("shoes", "running shoe",
           "outsole; midsole; heel counter; tongue; insole; toe cap; lace loop; upper",
           "EVA foam; carbon plate; rubber; knit mesh; cork; suede",
           "absorb impact; grip wet roads; wick sweat; stabilise the heel; return energy; reflect headlights"),
    _field("blenders", "kitchen blender",
           "jar; blade assembly; motor base; lid plug; tamper; speed dial; coupling; seal ring",
           "Tritan plastic; stainless steel; glass; silicone; die-cast zinc; nylon",
           "crush ice; heat soup; pulse briefly; prevent overheating; scrape the sides; lock the jar"),
)
_COMPOSITIONS: tuple[_Field, ...] = (
    _field("detergents", "laundry detergent composition",
           "surfactant; enzyme blend; builder; bleach activator; fragrance; thickener; optical brightener; "
           "foam control agent",
           "sodium citrate; protease; zeolite; TAED; limonene; xanthan gum",
           "remove grass stains; work in cold water; soften hard water; protect colours; reduce foam; "
           "dissolve quickly"),
    _field("beverages", "sports beverage",
           "electrolyte mix; sweetener; flavouring; preservative; acidulant; colourant; protein isolate; "
           "caffeine source",
           "potassium citrate; stevia; citric acid; whey; green tea extract; beet juice",
           "rehydrate quickly; mask bitterness; extend shelf life; stabilise the colour; "
           "support muscle recovery; prevent sedimentation"),
    _field("adhesives", "structural adhesive",
           "epoxy resin; hardener; filler; toughening agent; adhesion promoter; diluent; pigment; catalyst",
           "bisphenol A; polyamide; fumed silica; rubber particles; silane; glass beads",
           "cure at room temperature; resist peeling; bond wet surfaces; fill gaps; conduct heat; "
           "indicate full cure"),
    _field("paints", "exterior paint",
           "binder; pigment; solvent; dispersant; biocide; UV absorber; coalescent; matting agent",
           "acrylic emulsion; titanium dioxide; water; zinc oxide; silica; benzotriazole",
           "resist mildew; block UV light; dry quickly; hide the primer; repel water; keep a matte finish"),
)


@dataclass(frozen=True)
class _Feature:
    """A technical feature: a component and what qualifies it (material or function)."""

    component: str
    qualifier: str

    @property
    def phrase(self) -> str:
        """The feature as a claim element: ``a thermal pad made of graphite``."""
        return f"{_article(self.component)} {self.component} {self.qualifier}"

    @property
    def wherein(self) -> str:
        """The feature as a dependent-claim clause: ``the thermal pad is made of graphite``."""
        return f"the {self.component} is {self.qualifier}"


def _article(noun: str) -> str:
    return "an" if noun[0].lower() in "aeiou" else "a"


def _qualifier(rng: random.Random, fld: _Field, avoid: str = "") -> str:
    while True:
        if rng.random() < 0.55:
            q = f"made of {rng.choice(fld.materials)}"
        else:
            q = f"configured to {rng.choice(fld.functions)}"
        if q != avoid:
            return q


def _features(rng: random.Random, fld: _Field, k: int, exclude: Sequence[str] = ()) -> list[_Feature]:
    """``k`` features on distinct components of ``fld``, none of them in ``exclude``."""
    components = rng.sample([c for c in fld.components if c not in exclude], k)
    return [_Feature(c, _qualifier(rng, fld)) for c in components]


def _claim_body(fld: _Field, feats: Sequence[_Feature]) -> str:
    phrases = [f.phrase for f in feats]
    listed = ", ".join(phrases[:-1]) + f" and {phrases[-1]}" if len(phrases) > 1 else phrases[0]
    return f"{_article(fld.device).capitalize()} {fld.device} comprising {listed}."


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


class _Reserved:
    """Evaluation claims that no source may contain."""

    def __init__(self) -> None:
        self.claims: set[str] = set()

    def add(self, claim: str) -> None:
        self.claims.add(_norm(claim))

    def __contains__(self, claim: str) -> bool:
        return _norm(claim) in self.claims


# -------------------------------------------------------------- the records


@dataclass(frozen=True)
class _Record:
    """One examination record: the claim line, the prior art block, the answer."""

    subtask: str
    field: str
    claim: str  # "Claim 3: A battery module comprising ..."
    claim_body: str  # the claim without its number (what must stay out of the sources)
    prior_art: str
    answer: str  # bare answer: "A, C" / "34" / "103"
    wrong: str  # a plausible wrong answer (noisy labels)
    rationale: str  # an examiner's free-text note that names the answer without the format
    meta: dict[str, Any] = field(default_factory=dict)
    #: Version 3 (PI4PC, NOC4PC): the examiner's working line before ``Answer:``, a
    #: span copied from the prior art (the cited paragraph; the two mapping lines),
    #: and the one a wrong crowd answer would come with.
    work: str = ""
    wrong_work: str = ""

    @property
    def input(self) -> str:
        return f"{self.claim}\n{self.prior_art}"

    @property
    def instruction(self) -> str:
        return INSTRUCTIONS[self.subtask]

    @property
    def prompt(self) -> str:
        return f"{self.instruction}\n{self.input}"

    @property
    def output(self) -> str:
        return _output(self.work, self.answer)

    @property
    def wrong_output(self) -> str:
        """The completion of a wrong crowd answer (with its own working line, if any)."""
        return _output(self.wrong_work, self.wrong)


def _output(work: str, answer: str) -> str:
    return f"{work}\nAnswer: {answer}" if work else f"Answer: {answer}"


_BOILERPLATE = (
    "The figures are not necessarily drawn to scale.",
    "Other embodiments will be apparent to those skilled in the art.",
    "The terms used herein are for describing particular embodiments only.",
    "Like reference numerals refer to like elements throughout the drawings.",
    "Various modifications may be made without departing from the scope of the disclosure.",
    "The singular forms include the plural forms unless the context clearly indicates otherwise.",
    "The following description is merely exemplary in nature.",
    "Such variations are not to be regarded as a departure from the spirit of the invention.",
    "The method steps may be performed in any suitable order.",
    "Well-known structures are not described in detail to avoid obscuring the embodiments.",
    "Each of the elements may be implemented in hardware, software or a combination thereof.",
    "The examples are provided for illustration and are not limiting.",
)


def _filler(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_BOILERPLATE) for _ in range(n))


def _par4pc(rng: random.Random, fld: _Field, others: Sequence[_Field], n_gold: int,
            claim_intro: str = "Claim", long: bool = False) -> _Record:
    """Six candidates: the cited ones disclose claim features, the others do not."""
    feats = _features(rng, fld, 3)
    body = _claim_body(fld, feats)
    claim = f"{claim_intro} {rng.randint(1, 20)}: {body}"
    letters = list(PAR_LETTERS)
    gold_letters = sorted(rng.sample(letters, n_gold))
    # Split the claim features among the cited documents; each one gets at least one, and
    # every claim feature is disclosed by one of them (version 3).
    order = feats[:]
    rng.shuffle(order)
    shares: list[list[_Feature]] = [[] for _ in range(n_gold)]
    for i, f in enumerate(order):
        shares[i % n_gold].append(f)
    claim_components = [f.component for f in feats]
    lines: dict[str, str] = {}
    cited_in: dict[_Feature, str] = {}
    for letter, share in zip(gold_letters, shares, strict=True):
        extra = _features(rng, fld, 1, exclude=claim_components) if len(share) < 3 else []
        disclosed = share + extra
        rng.shuffle(disclosed)
        lines[letter] = _candidate(rng, fld, disclosed, long, letter)
        cited_in.update((f, letter) for f in share)
    rest = [x for x in letters if x not in gold_letters]
    n_same = min(len(rest), rng.choice((1, 1, 2)))
    same_field = set(rng.sample(rest, n_same))
    for letter in rest:
        if letter in same_field:  # same field, other components: shares only the device
            lines[letter] = _candidate(rng, fld, _features(rng, fld, 2, exclude=claim_components), long, letter)
        else:
            other = rng.choice(others)
            lines[letter] = _candidate(rng, other, _features(rng, other, 2), long, letter)
    prior_art = "Candidates:\n" + "\n".join(f"{x}: {lines[x]}" for x in letters)
    answer = ", ".join(gold_letters)
    # Version 3: the examiner first maps each claim feature, in claim order, to the passage
    # that discloses it (the passage as quoted, with its document's letter after it).
    work = "; ".join(f"{f.phrase} [{cited_in[f]}]" for f in feats)
    # The typical careless citation: the documents of the same device, whatever their parts.
    wrong_set = sorted(same_field)
    cited = " and ".join(gold_letters)
    rationale = rng.choice((
        "Looking at the candidates, {c} disclose the claimed features, so those were cited.",
        "The examiner relied on {c}: they describe the same {component}. The other documents are unrelated.",
        "I would cite {c} here, since the {component} of the claim appears there.",
    )).format(c=cited, component=feats[0].component)
    meta = {"gold": gold_letters, "silver": [], "options": letters, "field": fld.key}
    return _Record("PAR4PC", fld.key, claim, body, prior_art, answer, ", ".join(wrong_set), rationale, meta,
                   work=work)


def _candidate(rng: random.Random, fld: _Field, feats: Sequence[_Feature], long: bool, letter: str) -> str:
    """A candidate document: its device, then each disclosed feature followed by the letter."""
    text = f"{fld.device.capitalize()} - " + ", ".join(f"{f.phrase} [{letter}]" for f in feats)
    if long:
        text += ". " + _filler(rng, rng.randint(25, 40))
    return text


# A dependent claim usually copies its wording from the specification: the cited
# paragraph opens with exactly the claimed clause ("The thermal pad is made of
# graphite."), the other paragraphs of the passage describe other parts. The
# shared phrase is the surface cue a small model can learn to follow (version 2;
# version 1 buried the clause after varying openings and a 135M model stayed at
# chance). The paragraphs are a consecutive passage of the document, as cited
# passages are. Version 3 writes each paragraph's number after its text
# (``The thermal pad is made of graphite, in this example. [34]``) and the
# examiner's answer quotes the cited paragraph before the ``Answer:`` line: the
# answer is then a copy of the prompt (the claimed clause leads to the paragraph,
# whose text leads to its number), which a 135M model learns; version 2 put the
# number first ("[34] The thermal pad ...") and asked for it bare, and SmolLM2-135M
# stayed at chance (expert 18 %, chance 26 % on 100 items).
_PARAGRAPH_TAILS = (
    "as shown in FIG. {fig}.",
    "in the {device} of FIG. {fig}.",
    "according to one embodiment.",
    "in this example.",
)


def _paragraph(rng: random.Random, fld: _Field, feat: _Feature) -> str:
    clause = feat.wherein[0].upper() + feat.wherein[1:]
    return f"{clause}, " + rng.choice(_PARAGRAPH_TAILS).format(fig=rng.randint(1, 9), device=fld.device)


def _pi4pc(rng: random.Random, fld: _Field, claim_intro: str = "Claim", n_paragraphs: int = 5) -> _Record:
    """A passage of one document; the cited paragraph opens with the claimed clause."""
    target = _features(rng, fld, 1)[0]
    base = rng.randint(1, 3)
    body = f"The {fld.device} of claim {base}, wherein {target.wherein}."
    claim = f"{claim_intro} {rng.randint(base + 1, 25)}: {body}"
    start = rng.randint(10, 90)
    keys = list(range(start, start + n_paragraphs))
    gold_pos = rng.randrange(n_paragraphs)
    gold_key = keys[gold_pos]
    texts = {gold_key: _paragraph(rng, fld, target)}
    silver: list[int] = []
    # One item in five has the silver paragraph: the same part with another property.
    with_silver = rng.random() < 0.2
    others = [k for k in keys if k != gold_key]
    components = [c for c in fld.components if c != target.component]
    for k in others:
        if with_silver and not silver:
            texts[k] = _paragraph(rng, fld, _Feature(target.component, _qualifier(rng, fld, avoid=target.qualifier)))
            silver.append(k)
        else:
            comp = components.pop(rng.randrange(len(components))) if components else rng.choice(fld.components)
            texts[k] = _paragraph(rng, fld, _Feature(comp, _qualifier(rng, fld)))
    title = f"{fld.device.capitalize()} and method of assembly"
    lines = {k: f"{texts[k]} [{k}]" for k in keys}
    prior_art = f"Prior art: {title}\n" + "\n".join(lines[k] for k in keys)
    # The systematic crowd error: the paragraph after the cited one (the one before, at the end).
    wrong = keys[gold_pos + 1] if gold_pos + 1 < n_paragraphs else keys[gold_pos - 1]
    rationale = rng.choice((
        "Paragraph {k} is the one cited: it describes {p}.",
        "The examiner pointed to paragraph {k}, where {p} is disclosed.",
        "I'd go with paragraph {k} since it shows {p}.",
    )).format(k=gold_key, p=target.phrase)
    meta = {"gold": [gold_key], "silver": silver, "options": keys, "field": fld.key}
    return _Record("PI4PC", fld.key, claim, body, prior_art, str(gold_key), str(wrong), rationale, meta,
                   work=f"Cited: {lines[gold_key]}", wrong_work=f"Cited: {lines[wrong]}")


def _numbered_claim_body(fld: _Field, feats: Sequence[_Feature]) -> str:
    phrases = [f"({i}) {f.phrase}" for i, f in enumerate(feats, 1)]
    return f"{_article(fld.device).capitalize()} {fld.device} comprising {', '.join(phrases[:-1])} and {phrases[-1]}."


def _features_line(numbers: Sequence[int]) -> str:
    if len(numbers) == 3:
        return "discloses all claimed features"
    if len(numbers) == 2:
        return f"discloses features {numbers[0]}-{numbers[1]} only"
    return f"discloses feature {numbers[0]} only"


def _noc4pc(rng: random.Random, fld: _Field, label: str, claim_intro: str = "Claim", long: bool = False) -> _Record:
    """Two cited documents, each summarised by the examiner's feature mapping.

    The claim numbers its three features; each document line opens with which
    of them it discloses ("discloses all claimed features", "discloses features
    1-2 only", "discloses feature 3 only"), then quotes what it discloses. The
    label follows from that mapping: ``102`` when one document discloses all
    features, ``103`` when only the two together do, ``ALLOW`` when feature 3 is
    in neither (version 2; version 1 left the mapping implicit in the quoted
    phrases and a 135M model stayed at chance).
    """
    feats = _features(rng, fld, 3)
    body = _numbered_claim_body(fld, feats)
    claim = f"{claim_intro} {rng.randint(1, 20)}: {body}"
    used = [f.component for f in feats]
    spare = _features(rng, fld, 2, exclude=used)
    if label == "102":
        mapped = [[1, 2, 3], rng.choice(([1], [2], [1, 2]))]
    elif label == "103":
        mapped = [[1, 2], [3]] if rng.random() < 0.7 else [[1], [2, 3]]
    else:  # ALLOW: feature 3 is disclosed by neither document
        mapped = [[1, 2], rng.choice(([1], [2], [1, 2]))]
    if rng.random() < 0.5:
        mapped.reverse()
    blocks, heads = [], []
    for i, numbers in enumerate(mapped, 1):
        quoted = [feats[n - 1].phrase for n in numbers] + [spare[i - 1].phrase]
        head = f"D{i} [{rng.randint(5, 90)}]: {_features_line(numbers)}"
        text = "; ".join(quoted) + "."
        if long:
            text += " " + _filler(rng, rng.randint(90, 120))
        heads.append(head)
        blocks.append(f"{head}: {text}")
    prior_art = "\n".join(blocks)
    # Version 3: the examiner's answer first copies the two mapping heads, so the
    # label is decided on the line just written ("all claimed features": 102; a
    # feature 3 in either: 103; else ALLOW). Version 2 asked for the bare label and
    # SmolLM2-135M answered one constant label (16.5 macro-F1, chance 32.8).
    work = "; ".join(heads)
    # The systematic crowd error: every label shifted to the next one.
    wrong = {"102": "103", "103": "ALLOW", "ALLOW": "102"}[label]
    if label == "102":
        rationale = "A single reference already shows every element of the claim, so the claim lacks novelty."
    elif label == "103":
        rationale = "No single reference has all the elements, but combining the two references covers the claim."
    else:
        rationale = f"Neither reference teaches {feats[2].phrase}, so I see no ground for a rejection."
    meta = {"label": label, "field": fld.key}
    return _Record("NOC4PC", fld.key, claim, body, prior_art, label, wrong, rationale, meta,
                   work=work, wrong_work=work)


def _generate(rng: random.Random, subtask: str, fld: _Field, *, variant: int = 0, long: bool = False,
              fields: Sequence[_Field] = _IN_DOMAIN, claim_intro: str = "Claim") -> _Record:
    """One record of ``subtask`` in ``fld``; ``variant`` picks the gold count (PAR4PC) or label (NOC4PC)."""
    if subtask == "PAR4PC":
        others = [f for f in fields if f.key != fld.key]
        return _par4pc(rng, fld, others, n_gold=(1, 2, 1, 3, 2)[variant % 5], claim_intro=claim_intro, long=long)
    if subtask == "PI4PC":
        return _pi4pc(rng, fld, claim_intro=claim_intro, n_paragraphs=rng.randint(150, 200) if long else 5)
    return _noc4pc(rng, fld, NOC_LABELS[variant % 3], claim_intro=claim_intro, long=long)


def _fresh(rng: random.Random, subtask: str, reserved: _Reserved, **kwargs: Any) -> _Record:
    """A record whose claim is not an evaluation claim."""
    while True:
        record = _generate(rng, subtask, rng.choice(_IN_DOMAIN), **kwargs)
        if record.claim_body not in reserved:
            return record


#: Share of wrong crowd answers. PI4PC and NOC4PC (version 2): most crowd
#: answers are wrong in one systematic way (the next paragraph; the next label),
#: so a model trained on them as they are learns a wrong rule, not noise.
_CROWD_WRONG_RATE = {"PAR4PC": 0.45, "PI4PC": 0.7, "NOC4PC": 0.7}
#: Task version per subtask: 3 for all three (the answer quotes the prior art first).
_VERSIONS = {"PAR4PC": "3", "PI4PC": "3", "NOC4PC": "3"}
#: New tokens per answer: the quoted prior art (PAR4PC's three passages, at most 44
#: SmolLM2 tokens with the answer line; PI4PC's paragraph, 36; NOC4PC's two mapping
#: heads, 36), then the answer line.
_MAX_NEW_TOKENS = {"PAR4PC": 64, "PI4PC": 64, "NOC4PC": 64}


def _row(record: _Record, output: str | None = None) -> dict[str, str]:
    return {"instruction": record.instruction, "input": record.input,
            "output": output if output is not None else record.output, "field": record.field}


# ------------------------------------------------------------------- the task


class PatentTask(Task):
    """Patent examination after PANORAMA: prior-art retrieval (PAR4PC), paragraph
    identification (PI4PC) or novelty/obviousness classification (NOC4PC).

    **Description.** The model reads a patent claim and prior art and answers
    like an examiner. PAR4PC: six candidate documents (A-F), one or more were
    cited; answer their letters. PI4PC: five consecutive paragraphs of one
    prior-art document, each followed by its number (``... in this example.
    [34]``), one was cited; answer its number. The cited paragraph opens with
    the claimed clause word for word, the others describe other parts (one item
    in five also has a paragraph on the same part with another property).
    NOC4PC: a claim with numbered features and two cited documents, each
    summarised by the examiner's mapping ("discloses all claimed features",
    "discloses features 1-2 only", "discloses feature 3 only"); answer ``102``
    (one document discloses every feature), ``103`` (only the two together do)
    or ``ALLOW`` (feature 3 is in neither). Version 3 (PI4PC and NOC4PC): the
    examiner's answer quotes the prior art it relies on first (the cited
    paragraph line; the two mapping heads), so the answer is a copy of the
    prompt followed by a decision on the line just written; versions 1 and 2
    asked for the bare answer and SmolLM2-135M stayed at chance. PAR4PC version
    3 writes each candidate's disclosed features with the candidate's letter
    after each (``a thermal pad made of graphite [C]``) and the answer first
    maps each claim feature, in claim order, to its passage; every claim
    feature is disclosed by a cited document (in version 2 the expert scored
    39.9 F1 against 31.8 for format-only).

    **Prompt and answer format.** Prompt ``{instruction}\\n{input}`` with the
    subtask's instruction, then the claim line (``Claim 7: ...``) and the prior
    art. Answer: the line ``Answer: A, C`` / ``Answer: 34`` / ``Answer: 103``,
    which the reference answers precede with the quoted prior art
    (``a busbar made of ceramic [A]; a thermal pad made of ceramic [A]; a
    separator made of silicone [D]``; ``Cited: The thermal pad is made of graphite, in this example.
    [34]``; ``D1 [22]: discloses features 1-2 only; D2 [39]: discloses feature
    3 only``); the grader reads only the line after the last ``Answer:``. An
    output without ``Answer:`` scores 0.

    **Metric.** PANORAMA's official evaluation code, re-implemented and checked
    against it (``tests/grading/test_patent_parity.py``); the line after the last
    ``Answer:`` plays the role of PANORAMA's JSON answer field. PAR4PC: the
    one-letter tokens ``A``-``H`` of the answer (split on commas and whitespace)
    against the gold set, per-item F1, averaged ("Macro F1-Score (Gold)"). PI4PC:
    the answer read as ``int()`` reads it (``34``, ``0034``; not ``[34]``); gold
    hit rate. NOC4PC: the answer, upper-cased, must be ``ALLOW``, ``102`` or
    ``103``; macro-F1 on the whole split (:meth:`aggregate`) as PANORAMA's
    ``evaluation.py`` computes it, where an unparseable answer is the class
    ``PREDICTION_FAILED`` and adds a fourth class with F1 0 to the average;
    per-item accuracy for the error listing. Deliberately stricter project rules
    are off by default: the hedge rule (an answer naming every PAR4PC option
    scores 0) is available as ``grade_par4pc(..., reject_all_options=True)``.
    Version 2 adopts the official parsing (version 1 also read ``[0034]``,
    ``(A)``, ``A; C`` and ``allowed``, scored every-option answers 0 and averaged
    NOC4PC over three classes only).

    **Splits.** ``EVAL_SIZE`` = 200 items interleaving the fields and the gold
    counts (PAR4PC) or labels (NOC4PC), so that validation (first 100) and hidden
    test (last 100) are balanced; no claim is shared between them or with any
    source.

    **Sources.** ``examiner_records`` (clean), ``crowd_labels``,
    ``citation_mirror``, ``examiner_notes``, ``web_text``,
    ``full_specifications`` and a cross-domain source (``product_search``,
    ``manual_sections`` or ``foreign_decisions``); see the module docstring.
    With ``data="hub"`` the sources are PANORAMA's train split in the
    evaluation format (``examiner_records``) and the items its validation split.

    **Default budget.** 200,000 training tokens.
    """

    domain = "Patent"
    version = "2"
    max_new_tokens = 16
    default_token_budget = 200_000

    def __init__(self, subtask: str = "PAR4PC") -> None:
        if subtask not in SUBTASKS:
            raise ValueError(f"subtask must be one of {SUBTASKS}, got {subtask!r}")
        self.subtask = subtask
        self.init_kwargs = {"subtask": subtask}
        self.name = f"Patent-{subtask}"
        self.version = _VERSIONS[subtask]
        self.max_new_tokens = _MAX_NEW_TOKENS[subtask]
        self.metric = _METRICS[subtask]
        self.source_specs = (*COMMON_SOURCES, CROSS_DOMAIN_SOURCES[subtask])
        self.source_seed = f"patent/{subtask}/{{seed}}/{{source}}"
        self.hub_datasets = {
            "train": HubDataset("LG-AI-Research/PANORAMA", split="train", data_dir=subtask, limit=2000),
            "validation": HubDataset("LG-AI-Research/PANORAMA", split="validation", data_dir=subtask, limit=EVAL_SIZE),
        }
        self._eval_cache: dict[int, list[_Record]] = {}

    # -- evaluation

    def _eval_records(self, seed: int) -> list[_Record]:
        if seed not in self._eval_cache:
            rng = random.Random(f"patent/{self.subtask}/{seed}/eval")
            seen = _Reserved()
            records: list[_Record] = []
            i = 0
            while len(records) < EVAL_SIZE:
                fld = _IN_DOMAIN[i % len(_IN_DOMAIN)]
                record = _generate(rng, self.subtask, fld, variant=len(records))
                i += 1
                if record.claim_body in seen:
                    continue
                seen.add(record.claim_body)
                records.append(record)
            self._eval_cache[seed] = records
        return self._eval_cache[seed]

    def eval_items(self, seed: int) -> list[EvalItem]:
        return [
            EvalItem(id=f"{self.name}/{seed}/{i:03d}", subset=self.subtask, prompt=r.prompt,
                     reference=r.output, meta={**r.meta, "answer": r.answer})
            for i, r in enumerate(self._eval_records(seed))
        ]

    def grade(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        """Per-item scores in ``[0, 1]``; never raises on any output string."""
        if len(items) != len(outputs):
            raise ValueError(f"{len(outputs)} outputs for {len(items)} items")
        scores = []
        for item, output in zip(items, outputs, strict=True):
            if self.subtask == "PAR4PC":
                scores.append(grade_par4pc(output, item.meta["gold"], item.meta["options"]))
            elif self.subtask == "PI4PC":
                scores.append(grade_pi4pc(output, item.meta["gold"]))
            else:
                scores.append(grade_noc4pc(output, item.meta["label"]))
        return scores

    def chance_outputs(self, item: EvalItem) -> list[str]:
        """One answer per choice of ``item`` (an option letter, a paragraph key, a
        label), in the expected format: what a guesser picks from (the benchmark's
        chance level)."""
        if self.subtask == "NOC4PC":
            return [f"Answer: {label}" for label in NOC_LABELS]
        return [f"Answer: {option}" for option in item.meta.get("options", [])]

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[float], outputs: Sequence[str]) -> float:
        """NOC4PC: macro-F1 over the split; the others: the mean item score."""
        if self.subtask != "NOC4PC":
            return super().aggregate(items, scores, outputs)
        gold = [normalise_noc_label(item.meta["label"]) or "" for item in items]
        return macro_f1(gold, [predict_noc(o) for o in outputs])

    # -- sources

    def held_out(self, seed: int) -> _Reserved:
        """The evaluation claims: no source contains one."""
        reserved = _Reserved()
        for record in self._eval_records(seed):
            reserved.add(record.claim_body)
        return reserved

    def _examiner_records(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        return [_row(_fresh(rng, self.subtask, reserved, variant=i)) for i in range(rng.randint(1200, 1500))]

    def _crowd_labels(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for i in range(rng.randint(2000, 2400)):
            record = _fresh(rng, self.subtask, reserved, variant=i)
            wrong = rng.random() < _CROWD_WRONG_RATE[self.subtask]
            # Agreement separates the labels well but not perfectly: a filter at
            # ~0.6 keeps most good rows and drops most bad ones.
            low = rng.random() < (0.9 if wrong else 0.07)
            agreement = rng.uniform(0.2, 0.6) if low else rng.uniform(0.6, 0.8 if wrong else 1.0)
            rows.append({**_row(record, record.wrong_output if wrong else None),
                         "annotator_agreement": round(agreement, 2)})
        return rows

    def _citation_mirror(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for i in range(rng.randint(32, 44)):
            row = _row(_fresh(rng, self.subtask, reserved, variant=i))
            rows += [_surface_variant(rng, row) for _ in range(rng.randint(15, 30))]
        rng.shuffle(rows)
        return rows

    def _examiner_notes(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for i in range(rng.randint(900, 1100)):
            r = _fresh(rng, self.subtask, reserved, variant=i)
            rows.append({"claim": r.claim, "prior_art": r.prior_art, "rationale": r.rationale,
                         "answer": r.answer, "field": r.field})
        return rows

    def _full_specifications(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for i in range(rng.randint(300, 340)):
            short = rng.random() < 0.08
            rows.append(_row(_fresh(rng, self.subtask, reserved, variant=i, long=not short)))
        return rows

    def _product_search(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for i in range(rng.randint(1000, 1200)):
            fld = rng.choice(_PRODUCTS)
            r = _generate(rng, "PAR4PC", fld, variant=i, fields=_PRODUCTS)
            request = r.claim.split(": ", 1)[1]
            rows.append({"request": request, "catalogue": r.prior_art.split("\n", 1)[1], "matches": r.answer,
                         "category": fld.key})
        return rows

    def _manual_sections(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for _ in range(rng.randint(1000, 1200)):
            fld = rng.choice(_PRODUCTS)
            r = _pi4pc(rng, fld)
            title, sections = r.prior_art.split("\n", 1)
            rows.append({"query": r.claim.split(": ", 1)[1], "title": title.split(": ", 1)[1],
                         "manual": sections, "section": r.answer, "product": fld.key})
        return rows

    def _foreign_decisions(self, rng: random.Random, reserved: _Reserved) -> list[dict[str, Any]]:
        rows = []
        for i in range(rng.randint(1000, 1200)):
            fld = rng.choice(_COMPOSITIONS)
            r = _noc4pc(rng, fld, NOC_LABELS[i % 3])
            rows.append({"claim_text": r.claim.split(": ", 1)[1], "citations": r.prior_art, "outcome": r.answer,
                         "technology": fld.key})
        return rows

    # -- real data (PANORAMA on the Hugging Face hub)

    def map_hub_records(self, records: Mapping[str, Any]) -> tuple[dict[str, Any], list[EvalItem]]:
        """PANORAMA rows (``application_number``, ``claim_number``, ``context``,
        ``options``/``prior_art_specification(s)``, ``gold_answers``... or
        ``answer``) in this task's format: ``examiner_records`` from the train
        split, evaluation items from the validation split."""
        mapper = {"PAR4PC": _map_par4pc, "PI4PC": _map_pi4pc, "NOC4PC": _map_noc4pc}[self.subtask]
        train = [r for r in (mapper(row) for row in _rows(records.get("train"))) if r is not None]
        evaluation = [r for r in (mapper(row) for row in _rows(records.get("validation"))) if r is not None]
        sources = {"examiner_records": Dataset.from_list([_row(r) for r in train])} if train else {}
        items = [
            EvalItem(id=f"{self.name}/real/{i:04d}", subset=self.subtask, prompt=r.prompt, reference=r.output,
                     meta={**r.meta, "answer": r.answer})
            for i, r in enumerate(evaluation)
        ]
        return sources, items


def _surface_variant(rng: random.Random, row: dict[str, str]) -> dict[str, str]:
    """``row`` with case and whitespace changes only (equal after normalising both)."""
    instruction = rng.choice((row["instruction"], row["instruction"].lower(), row["instruction"].upper(),
                              row["instruction"].replace(". ", ".  ")))
    text = row["input"].replace("\n", " \n") if rng.random() < 0.5 else row["input"]
    return {"instruction": instruction + rng.choice(("", " ", "  ")), "input": text + rng.choice(("", " ", "\n")),
            "output": row["output"] + rng.choice(("", " ", "  ")), "field": row["field"]}


#: The sources of every subtask (see the module docstring).
COMMON_SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "examiner_records",
        "Examination records (instruction, claim and prior art input, examiner's answer) across eight "
        "technology fields.", PatentTask._examiner_records),
    SourceSpec(
        "crowd_labels",
        "Examination questions answered by paralegal crowd workers, with an annotator agreement score per row.",
        PatentTask._crowd_labels),
    SourceSpec(
        "citation_mirror",
        "Examination records aggregated from several public mirrors of a patent office dump.",
        PatentTask._citation_mirror),
    SourceSpec(
        "examiner_notes",
        "Examiners' free-text notes on claims (claim, prior art, rationale) with the decision extracted "
        "into a separate field.", PatentTask._examiner_notes),
    SourceSpec(
        "web_text",
        "General instruction-response pairs scraped from the web (cooking, travel, everyday chat).",
        ADVICE_CHAT),
    SourceSpec(
        "full_specifications",
        "Examination records whose prior art is quoted from the full specifications of the documents.",
        PatentTask._full_specifications),
)
#: The helpful cross-domain source of each subtask.
CROSS_DOMAIN_SOURCES: dict[str, SourceSpec] = {
    "PAR4PC": SourceSpec(
        "product_search",
        "Shopping requests matched against catalogue entries (request, catalogue, matching entry letters) "
        "for consumer products.", PatentTask._product_search),
    "PI4PC": SourceSpec(
        "manual_sections",
        "Questions about consumer products answered by the numbered section of the product manual that "
        "describes the part (query, manual, section).", PatentTask._manual_sections),
    "NOC4PC": SourceSpec(
        "foreign_decisions",
        "Decisions of another patent office on chemistry and food claims, with the outcome mapped to US "
        "statute codes (claim_text, citations, outcome).", PatentTask._foreign_decisions),
}


# ----------------------------------------------------------- PANORAMA mapping

#: Characters kept of each real abstract, paragraph and claim (PANORAMA prompts
#: quote whole documents; these bounds keep a real prompt within a few thousand tokens).
_REAL_ABSTRACT_CHARS = 400
_REAL_PARAGRAPH_CHARS = 500
_REAL_CLAIM_CHARS = 1500


def _rows(dataset: Any) -> list[dict[str, Any]]:
    if dataset is None:
        return []
    return [dict(row) for row in dataset]


def _json(value: Any, default: Any) -> Any:
    """PANORAMA stores some fields as JSON strings in some exports and as structs in others."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return default
    if hasattr(value, "tolist"):
        value = value.tolist()
    return default if value is None else value


def _clip(text: Any, n: int) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 3].rstrip() + "..."


def _target_claim(context: dict[str, Any], number: Any) -> str:
    claims = _json(context.get("claims"), [])
    if not isinstance(claims, list):
        return ""
    number = str(number)
    for claim in claims:
        text = claim.get("claim_text", "") if isinstance(claim, dict) else str(claim)
        if text.strip().startswith(f"{number}.") or (isinstance(claim, dict) and str(claim.get("claimNumber")) == number):
            return text
    if number.isdigit() and 0 < int(number) <= len(claims):
        claim = claims[int(number) - 1]
        return claim.get("claim_text", "") if isinstance(claim, dict) else str(claim)
    return ""


def _real_claim(row: dict[str, Any]) -> tuple[str, str] | None:
    context = _json(row.get("context"), {})
    if not isinstance(context, dict):
        return None
    text = _target_claim(context, row.get("claim_number"))
    if not text:
        return None
    body = _clip(re.sub(r"^\s*\d+\s*\.\s*", "", str(text)), _REAL_CLAIM_CHARS)  # drop the claim's own "1."
    return f"Claim {row.get('claim_number')}: {body}", body


def _letters(value: Any) -> list[str]:
    value = _json(value, [])
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    return sorted({str(v).strip().upper() for v in value if str(v).strip()})


def _keys(value: Any) -> list[int]:
    value = _json(value, [])
    if not isinstance(value, list):
        value = [value]
    keys = []
    for v in value:
        try:
            keys.append(int(v))
        except (TypeError, ValueError):
            continue
    return keys


def _map_par4pc(row: dict[str, Any]) -> _Record | None:
    claim = _real_claim(row)
    options = _json(row.get("options"), {})
    gold = _letters(row.get("gold_answers"))
    if claim is None or not isinstance(options, dict) or not gold:
        return None
    letters = sorted(str(k).upper() for k, v in options.items() if v is not None)
    lines = []
    for letter in letters:
        details = _json(options.get(letter, options.get(letter.lower())), {})
        details = details if isinstance(details, dict) else {}
        lines.append(f"{letter}: {_clip(details.get('title'), 200)} - {_clip(details.get('abstract'), _REAL_ABSTRACT_CHARS)}")
    answer = ", ".join(gold)
    meta = {"gold": gold, "silver": _letters(row.get("silver_answers")), "options": letters,
            "application_number": str(row.get("application_number"))}
    return _Record("PAR4PC", "real", claim[0], claim[1], "Candidates:\n" + "\n".join(lines), answer, answer, "", meta)


def _map_pi4pc(row: dict[str, Any]) -> _Record | None:
    claim = _real_claim(row)
    options = _json(row.get("options"), {})
    gold = _keys(row.get("gold_answers"))
    if claim is None or not isinstance(options, dict) or not gold:
        return None
    spec = _json(row.get("prior_art_specification"), {})
    title = _clip(spec.get("title") if isinstance(spec, dict) else "", 200)
    # A JSON-lines export loads ``options`` as a struct whose fields are the keys of
    # every row; the keys of other rows are None here.
    keyed = sorted(((int(k), v) for k, v in options.items() if str(k).strip().isdigit() and v is not None),
                   key=lambda kv: kv[0])
    prior_art = f"Prior art: {title}\n" + "\n".join(f"[{k}] {_clip(v, _REAL_PARAGRAPH_CHARS)}" for k, v in keyed)
    meta = {"gold": gold, "silver": _keys(row.get("silver_answers")), "options": [k for k, _ in keyed],
            "application_number": str(row.get("application_number"))}
    return _Record("PI4PC", "real", claim[0], claim[1], prior_art, str(gold[0]), str(gold[0]), "", meta)


def _map_noc4pc(row: dict[str, Any]) -> _Record | None:
    claim = _real_claim(row)
    answer = _json(row.get("answer"), {})
    code = answer.get("code") if isinstance(answer, dict) else answer
    label = normalise_noc_label(code)
    if claim is None or label is None:
        return None
    docs = _json(row.get("prior_art_specifications"), [])
    blocks = []
    for i, doc in enumerate(docs if isinstance(docs, list) else [], 1):
        doc = doc if isinstance(doc, dict) else {}
        paragraphs = _json(doc.get("paragraphs"), [])
        quoted = " ".join(
            f"[{p.get('key')}] {_clip(p.get('content'), _REAL_PARAGRAPH_CHARS)}"
            for p in (paragraphs if isinstance(paragraphs, list) else [])[:3] if isinstance(p, dict)
        )
        blocks.append(f"D{i} ({_clip(doc.get('patent_id'), 40)}): {_clip(doc.get('title'), 200)}. {quoted}".rstrip())
    meta = {"label": label, "application_number": str(row.get("application_number"))}
    return _Record("NOC4PC", "real", claim[0], claim[1], "\n".join(blocks), label, label, "", meta)


__all__ = ["EVAL_SIZE", "INSTRUCTIONS", "PAR_LETTERS", "SUBTASKS", "PatentTask"]

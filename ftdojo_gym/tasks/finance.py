"""FinanceIQ (Finance): single-choice exam questions over ten financial subjects.

The real FinanceIQ (Du Xiaoman, ``Duxiaoman-DI/FinanceIQ``) holds Chinese
certification-exam questions in one CSV file per subject,
``data/{dev,test}/<subject>.csv``, with the columns ``Question, A, B, C, D,
Answer`` after a pandas index column without a name (read as ``"Unnamed:
0"``); ``Answer`` is a letter. ``data="hub"`` loads the twenty files one by
one (the merged splits on the hub lose the subject). The offline
repository keeps that schema and adds a ``subject`` column. Its questions are
English and generated from a knowledge base written here: nine subjects ask
for the term that fits a definition or the definition of a term (72 terms,
distractors from the same subject), and "Actuarial Math" asks calculations
(rule of 72, simple interest, flat-rate tax) whose options follow fixed rules.
Each definition echoes a word of its term, as exam definitions often do, and
distractors never share a content word with the question, so the answer of
a knowledge question follows from its wording by a regular rule that a small
model can learn from a few hundred examples (and better with the glossary's
facts). The same terms recur across sources and evaluation in other question
phrasings, option sets and option orders; an evaluation question (stem with
its set of options) occurs in no source.

The prompt of an evaluation item is :data:`PROMPT_TEMPLATE` filled with the
item's ``subject``, ``Question`` and options, each option followed by its letter
(``Mortgage loan [C]``); the reference completion (:data:`ANSWER_TEMPLATE`) quotes
the correct option line, then answers: ``"Option: Mortgage loan [C]\\nAnswer: C"``.
Only the letter after the last ``Answer:`` is graded. The clean source
``finexam_train`` has these fields (``answer_text`` is the gold option's text),
so the expert recipe (:mod:`ftdojo_gym.recipes`) turns it into training pairs in the
evaluation format. Gold letters are balanced (a quarter each) in every split.

Version 2 (this layout) replaced version 1's ``A. Mortgage loan`` options and bare
``Answer: C`` reference: SmolLM2-135M trained on 320 version-1 pairs learned the
format and a letter prior but not which option fits (expert 30 % against 27 % for
the format-only control), because the letter it had to output stood *before* the
text it had to match; written after it and quoted first, the letter is a copy of
what follows the copied option (the same change as Patent-PI4PC v3, see
``docs/dev/task-redesign.md``).

The score and how it differs from the official evaluator: :class:`FinanceIQTask` (Metric).

Sources (deterministic in the seed):

* ``finexam_train`` — clean, in-domain, evaluation schema.
* ``crowd_answer_key`` — the same schema plus ``annotator_confidence``; about
  40 % of the ``Answer`` letters are wrong (``answer_text`` is the text of the
  option the crowd chose), and those rows mostly have a confidence below 0.6.
* ``exam_mirror`` — a few dozen questions repeated many times with changes
  of case and whitespace only.
* ``study_notes`` — questions with options, but the answer is given as the
  text of the correct option (``answer_text``), not as a letter.
* ``web_chat`` — off-domain ``prompt``/``response`` chat (cooking, travel).
* ``regulation_excerpts`` — evaluation schema, but each ``Question`` starts
  with a long excerpt of (invented) regulations, 1,000-2,000 tokens; a few short
  ones are usable after a length filter.
* ``finance_glossary`` — ``term``/``definition``/``subject`` glossary entries
  (plus related business terms never asked); e.g. the transform prompt
  ``"What does {term} mean in {subject}?"``, completion ``"{definition}"``
  teaches the facts the exam asks about (it does not teach the answer format).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datasets import Dataset

from ftdojo_gym.grading.finance_grading import LETTERS, grade_choice
from ftdojo_gym.tasks.base import EvalItem, HubDataset, SourceSpec, Task
from ftdojo_gym.tasks.offdomain import WEB_CHAT

#: The prompt of every evaluation item (and of the expert recipe's training pairs).
#: Version 2 writes each option's letter *after* its text (version 1: ``A. text``).
PROMPT_TEMPLATE = (
    "The following is a single-choice question from the {subject} exam.\n"
    "Question: {Question}\n"
    "{A} [A]\n{B} [B]\n{C} [C]\n{D} [D]\n"
    "Quote the correct option with its letter, then reply with Answer: followed by the letter."
)
#: The reference answer (and the expert recipe's completion): the chosen option
#: quoted as the prompt writes it, then the letter after the marker the grader reads.
ANSWER_TEMPLATE = "Option: {answer_text} [{Answer}]\nAnswer: {Answer}"
#: Items per evaluation set, split by :meth:`~ftdojo_gym.tasks.base.Task.split`.
EVAL_SIZE = 200
#: Real data: new tokens allowed beyond the quoted gold answer's length in bytes.
REAL_TOKEN_HEADROOM = 32

# ------------------------------------------------------------ knowledge base

#: subject -> ((term, definition as a noun phrase), ...). Every definition shares
#: a word with its own term (the way exam definitions echo the term they
#: define); questions are built so that no distractor shares one (see
#: :func:`_cue_words`), which makes the answer learnable from the wording.
FACTS: dict[str, tuple[tuple[str, str], ...]] = {
    "Banking": (
        ("Mortgage loan", "a loan secured by real estate"),
        ("Account overdraft", "a withdrawal of more money than the account balance holds"),
        ("Reserve requirement", "the share of deposits a bank must keep in reserve and may not lend out"),
        ("Certificate of deposit", "a time deposit that pays a fixed rate until a set maturity date"),
        ("Collateral", "an asset pledged to a lender as collateral to secure a borrowing"),
        ("Prime rate", "the interest rate banks charge their prime, most creditworthy customers"),
        ("Bank run", "a run of depositors withdrawing money for fear a bank will fail"),
        ("Deposit insurance", "a guarantee that repays each insured deposit if a bank fails"),
    ),
    "Securities": (
        ("Cash dividend", "a share of company profits paid to shareholders in cash"),
        ("Government bond", "a debt security issued by a government that pays fixed interest"),
        ("Initial public offering", "the first offering of a company's shares to the public"),
        ("Market capitalization", "the total market value of all of a company's shares"),
        ("Short selling", "the selling of borrowed shares in the hope of buying them back cheaper"),
        ("Stock split", "a split of each existing share into several cheaper shares"),
        ("Blue-chip stock", "a stock of a large, well-established and financially sound company"),
        ("Insider trading", "trading by company insiders on information that is not yet public"),
    ),
    "Funds": (
        ("Mutual fund", "a fund that pools cash from many investors under mutual ownership"),
        ("Index fund", "a fund built to track the performance of a market index"),
        ("Net asset value", "the value of a fund's assets minus its liabilities, per share"),
        ("Expense ratio", "the yearly running expenses of a fund as a ratio of its size"),
        ("Exchange-traded fund", "a fund whose shares are traded on a stock exchange all day"),
        ("Closed-end fund", "a fund with a closed, fixed number of shares that it does not redeem"),
        ("Money market fund", "a fund that holds only short-term, high-quality money market debt"),
        ("Sales load", "a commission charged on each sale of fund shares"),
    ),
    "Futures": (
        ("Futures contract", "a standardized contract to trade an asset at a set price on a later date"),
        ("Margin call", "a call to add funds after an account falls below the maintenance margin"),
        ("Short hedge", "a short futures position that protects a holder against falling prices"),
        ("Spot market", "a market for immediate delivery and payment on the spot"),
        ("Delivery month", "the month in which an expiring futures position must be settled"),
        ("Open interest", "the number of futures positions still open and not yet settled"),
        ("Mark to market", "the daily settlement of gains and losses at current market prices"),
        ("Day trader", "a trader who closes all positions within the same day"),
    ),
    "Insurance": (
        ("Premium", "the premium, or price, a policyholder pays for cover"),
        ("Deductible", "the deductible part of a loss that the insured pays before the insurer does"),
        ("Beneficiary", "the beneficiary, the person who receives the payout of a life policy"),
        ("Underwriting", "the underwriting of risk: deciding whether and at what price to insure"),
        ("Reinsurance", "the reinsurance an insurer buys to pass on part of its own risk"),
        ("Moral hazard", "the moral hazard of taking more risk when protected from its cost"),
        ("Whole life insurance", "life cover that lasts for the whole of the insured's life"),
        ("Insurance claim", "a formal claim to the insurer for payment under a policy"),
    ),
    "Accounting": (
        ("Accounts receivable", "amounts receivable from customers who bought on credit"),
        ("Accounts payable", "amounts payable to suppliers for goods bought on credit"),
        ("Straight-line depreciation", "the spreading of an asset's cost in a straight line over its useful life"),
        ("Accrual basis", "the basis that records revenue when earned and expenses when incurred"),
        ("Balance sheet", "a sheet listing assets, liabilities and equity, which must balance"),
        ("Retained earnings", "the earnings a business has retained rather than paid as dividends"),
        ("Goodwill", "the excess of a purchase price over net assets, reflecting customer goodwill"),
        ("Finished goods", "goods that are completed and held for sale"),
    ),
    "Tax": (
        ("Value-added tax", "a tax on the value added at each stage of production"),
        ("Progressive tax", "a tax with a progressive rate that rises with income"),
        ("Tax deduction", "a deduction subtracted from income before the tax is computed"),
        ("Tax credit", "a credit subtracted directly from the tax owed"),
        ("Withholding tax", "tax collected by withholding part of each pay cheque at the source"),
        ("Capital gains tax", "a tax on the gains from selling a capital asset"),
        ("Excise tax", "an excise duty on specific goods such as fuel, alcohol or tobacco"),
        ("Tax evasion", "the illegal evasion of taxes that are owed"),
    ),
    "Economics": (
        ("Price inflation", "a general, sustained rise in the price level"),
        ("Economic recession", "a significant decline in economic activity lasting months"),
        ("Gross domestic product", "the total value of final goods and services produced in a domestic economy"),
        ("Opportunity cost", "the cost of the next best alternative given up"),
        ("Monetary policy", "the monetary decisions of a central bank on money supply and interest rates"),
        ("Fiscal policy", "the fiscal decisions of a government on public spending and taxation"),
        ("Negative externality", "a negative side effect of a deal that falls on a third party"),
        ("Price elasticity", "the responsiveness of quantity demanded to a change in price"),
    ),
    "Financial Planning": (
        ("Emergency fund", "savings set aside for an unexpected emergency"),
        ("Portfolio diversification", "the spreading of a portfolio across many assets to reduce risk"),
        ("Compound interest", "interest earned on both the principal and past interest"),
        ("Asset allocation", "the division of a portfolio among asset classes such as stocks, bonds and cash"),
        ("Liquid asset", "an asset that can be turned into cash quickly without loss"),
        ("Net worth", "what a person is worth: total assets minus total liabilities"),
        ("Retirement annuity", "a series of regular payments bought to fund retirement"),
        ("Household budget", "a household plan of expected income and spending"),
    ),
}
#: The ten subjects, one per category of the real benchmark (see ``HUB_SUBJECTS``).
SUBJECTS: tuple[str, ...] = (*FACTS, "Actuarial Math")
#: Business terms of other fields, only in the glossary (never asked).
_OTHER_TERMS = (
    ("Supply chain", "the network that moves a product from supplier to customer"),
    ("Brand equity", "the value a well-known brand name adds to a product"),
    ("Lead time", "the time between placing an order and receiving it"),
    ("Market share", "a company's sales as a percentage of total market sales"),
    ("Outsourcing", "the hiring of an outside firm to perform work done in-house"),
    ("Break-even point", "the sales level at which revenue equals total cost"),
    ("Economies of scale", "cost savings that come from producing at a larger scale"),
    ("Franchise", "a licence to run a business under another company's brand"),
    ("Benchmarking", "the comparison of performance against the best in an industry"),
    ("Stakeholder", "anyone with an interest in what a business does"),
    ("Procurement", "the process of buying the goods and services a business needs"),
    ("Overhead", "business costs that are not tied to a specific product"),
)

_TERM_STEMS = (  # the options are terms
    "Which term refers to {definition}?",
    "What is the name for {definition}?",
    "{Definition} is called:",
    "Which of the following describes {definition}?",
)
_DEFINITION_STEMS = (  # the options are definitions
    "What does {term} mean?",
    "Which statement best describes {term}?",
    "{Term} is:",
    "Which of the following is the meaning of {term}?",
)
_RULE_OF_72 = (2, 3, 4, 6, 8, 9, 12)
# Official-sounding filler for the long-context source.
_REGULATION_CLAUSES = (
    "Every licensed institution shall keep complete records of each transaction for no less than five years.",
    "The supervisory authority may request any document it deems necessary for the performance of its duties.",
    "Where a provision of this chapter conflicts with a provision of another chapter, the stricter provision applies.",
    "Institutions shall designate a compliance officer who reports directly to the board of directors.",
    "A client shall be informed in writing of all fees before any service is provided.",
    "Internal audits shall be carried out at least once a year and their findings reported to the board.",
    "Amounts held on behalf of clients shall be kept separate from the institution's own funds.",
    "Any breach of this article shall be reported to the authority within ten business days.",
    "Staff who give advice to clients shall hold a valid qualification certificate.",
    "The institution shall assess the suitability of each product for the client before any sale.",
    "Complaints from clients shall be acknowledged within five business days and resolved within sixty days.",
    "Marketing material shall be fair, clear and not misleading, and shall state the main risks.",
)


@dataclass(frozen=True)
class _Question:
    """A single-choice question; ``options`` in display order, ``answer`` a letter."""

    subject: str
    question: str
    options: tuple[str, str, str, str]
    answer: str
    kind: str
    key: str  # the fact or calculation asked about

    @property
    def identity(self) -> tuple[str, frozenset[str]]:
        """What makes two questions the same question: the stem and the set of options."""
        return (_norm(self.question), frozenset(_norm(o) for o in self.options))

    @property
    def answer_text(self) -> str:
        return self.options[LETTERS.index(self.answer)]

    def record(self) -> dict[str, str]:
        """The question in the FinanceIQ schema plus ``subject`` and ``answer_text``
        (the text of the gold option)."""
        return {"subject": self.subject, "Question": self.question,
                **dict(zip(LETTERS, self.options, strict=True)), "Answer": self.answer,
                "answer_text": self.answer_text}

    @property
    def prompt(self) -> str:
        return PROMPT_TEMPLATE.format(**self.record())


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _place(rng: random.Random, correct: str, distractors: Sequence[str], letter: str) -> tuple[str, str, str, str]:
    """The options with ``correct`` at ``letter`` and the distractors shuffled around it."""
    others = list(distractors)
    rng.shuffle(others)
    others.insert(LETTERS.index(letter), correct)
    return (others[0], others[1], others[2], others[3])


_STOPWORDS = frozenset(
    "a an the of to on in for and or by as at its it is that which what who with from each all any this be are"
    " has not no must may their after before per than rather when does do how much".split()
)
# Words of the question templates and words shared by a whole subject carry no cue.
_NEUTRAL_WORDS = frozenset(
    "term refers refer name called following describes describe mean meaning statement best fund tax bank".split()
)


def _cue_words(text: str) -> frozenset[str]:
    """The content words of ``text``, lower-case, a plural ``s`` dropped."""
    words = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOPWORDS or word in _NEUTRAL_WORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        if len(word) > 2 and word not in _STOPWORDS and word not in _NEUTRAL_WORDS:
            words.add(word)
    return frozenset(words)


def _distractor_pool(subject: str, index: int, kind: str) -> list[tuple[str, str]]:
    """The other facts of ``subject`` that may be distractors of fact ``index``:
    for ``kind="term"`` (the question holds the definition, the options are
    terms) terms that share no word with the definition; for ``"definition"``
    (the question holds the term) definitions that share no word with the term."""
    facts = FACTS[subject]
    term, definition = facts[index]
    if kind == "term":
        cue = _cue_words(definition)
        return [f for i, f in enumerate(facts) if i != index and not cue & _cue_words(f[0])]
    cue = _cue_words(term)
    return [f for i, f in enumerate(facts) if i != index and not cue & _cue_words(f[1])]


def _fact_question(rng: random.Random, subject: str, letter: str) -> _Question:
    facts = FACTS[subject]
    index = rng.randrange(len(facts))
    term, definition = facts[index]
    kind = rng.choice(("term", "definition"))
    others = rng.sample(_distractor_pool(subject, index, kind), 3)
    if kind == "term":
        stem = rng.choice(_TERM_STEMS)
        question = _cap(stem.format(definition=definition, Definition=_cap(definition)))
        options = _place(rng, term, [t for t, _ in others], letter)
    else:
        stem = rng.choice(_DEFINITION_STEMS)
        lowered = term if term[1:2].isupper() else term[:1].lower() + term[1:]
        question = stem.format(term=lowered, Term=term)
        options = _place(rng, _cap(definition), [_cap(d) for _, d in others], letter)
    return _Question(subject, question, options, letter, kind, term)


def _money(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"


def _calc_question(rng: random.Random, letter: str) -> _Question:
    kind = rng.choice(("rule_of_72", "simple_interest", "flat_tax"))
    if kind == "rule_of_72":
        rate = rng.choice(_RULE_OF_72)
        question = rng.choice((
            "By the rule of 72, about how many years does money take to double at {r}% a year?",
            "Using the rule of 72, estimate the doubling time of an investment growing at {r}% per year.",
        )).format(r=rate)
        correct = f"{72 // rate} years"
        wrong = [f"{72 // r} years" for r in _RULE_OF_72 if r != rate]
        distractors = rng.sample(wrong, 3)
        key = f"rule_of_72/{rate}"
    else:
        principal = rng.choice((1_000, 2_000, 4_000, 5_000, 10_000, 20_000))
        rate = rng.choice((2, 3, 4, 5, 6, 8, 10))
        if kind == "simple_interest":
            years = rng.choice((1, 2, 3, 4, 5))
            question = rng.choice((
                "What is the simple interest on {p} at {r}% per year for {t} year{s}?",
                "A deposit of {p} earns {r}% simple interest a year. How much interest does it earn in {t} year{s}?",
            )).format(p=_money(principal), r=rate, t=years, s="" if years == 1 else "s")
            value = principal * rate * years / 100
            # The classic slips: total amount instead of interest, one year only, a factor of ten.
            slips = [principal + value, value * 10, value / 10, principal * rate / 100, value * 2]
        else:
            years = 1
            question = rng.choice((
                "Taxable income is {p} and the flat tax rate is {r}%. What is the tax due?",
                "A flat tax of {r}% applies to a taxable income of {p}. How much tax is owed?",
            )).format(p=_money(principal), r=rate)
            value = principal * rate / 100
            slips = [principal - value, value * 10, value / 10, principal * (rate + 10) / 100, value * 2]
        correct = _money(value)
        distractors = []
        for slip in slips:
            text = _money(slip)
            if text != correct and text not in distractors:
                distractors.append(text)
        distractors = distractors[:3]
        key = f"{kind}/{principal}/{rate}/{years}"
    options = _place(rng, correct, distractors, letter)
    return _Question("Actuarial Math", question, options, letter, kind, key)


def _generate(rng: random.Random, subject: str, letter: str,
              reserved: set[tuple[str, frozenset[str]]] | None = None) -> _Question:
    """One question of ``subject`` with its gold at ``letter`` that is not ``reserved``."""
    while True:
        q = _calc_question(rng, letter) if subject not in FACTS else _fact_question(rng, subject, letter)
        if reserved is None or q.identity not in reserved:
            return q


def _letters(rng: random.Random, n: int) -> list[str]:
    """``n`` gold letters, a quarter each (up to rounding), in random order."""
    letters = [LETTERS[i % 4] for i in range(n)]
    rng.shuffle(letters)
    return letters


# ------------------------------------------------------------ note styles

_NOTE_STYLES = (
    "The correct answer is {answer}.",
    "Answer: {answer}",
    "{answer} — remember this one for the exam!",
    "It's {answer}.",
)

# ------------------------------------------------------------------ hub data

#: The real benchmark's subject files (``data/{test,dev}/<name>.csv``), mapped
#: to the subject names used here.
HUB_SUBJECTS: dict[str, str] = {
    "保险从业资格CICE": "Insurance",
    "基金从业资格": "Funds",
    "期货从业资格": "Futures",
    "注册会计师（CPA）": "Accounting",
    "理财规划师": "Financial Planning",
    "税务师": "Tax",
    "精算师-金融数学": "Actuarial Math",
    "经济师": "Economics",
    "证券从业资格": "Securities",
    "银行从业资格": "Banking",
}
#: Per subject, at most this many questions from the end of its test file are
#: evaluation items (the rest becomes training data), as in the paper's split.
HUB_EVAL_PER_SUBJECT = 20
_HUB_SPLITS = ("test", "dev")


def _hub_questions(records: Any, subject: str) -> list[_Question]:
    """The rows of one FinanceIQ file (``Question, A, B, C, D, Answer``) as questions."""
    out = []
    for row in records:
        answer = str(row.get("Answer") or "").strip().upper()[:1]
        options = tuple("" if row.get(x) is None else str(row.get(x)).strip() for x in LETTERS)
        question = str(row.get("Question") or "").strip()
        if answer not in LETTERS or not question:
            continue
        out.append(_Question(subject, question, options, answer, "hub", question))  # type: ignore[arg-type]
    return out


# -------------------------------------------------------------------- task


class FinanceIQTask(Task):
    """FinanceIQ: single-choice questions from financial certification exams.

    **Description.** Each item is a question from one of ten exam subjects
    (Banking, Securities, Funds, Futures, Insurance, Accounting, Tax,
    Economics, Financial Planning, Actuarial Math) with four options A-D;
    the model names the one correct option. Offline, the questions ask for
    the term matching a definition, the definition of a term, or a simple
    calculation (rule of 72, simple interest, flat tax); ``data="hub"`` loads
    the real Chinese questions of ``Duxiaoman-DI/FinanceIQ``.

    **Sources.** ``finexam_train`` (clean), ``crowd_answer_key``,
    ``exam_mirror``, ``study_notes``, ``web_chat``, ``regulation_excerpts``,
    ``finance_glossary``; see the module docstring for their schemas.

    **Prompt and answer format.** :data:`PROMPT_TEMPLATE` with the subject,
    question and options (each option's letter after its text, ``Mortgage loan
    [C]``); the answer quotes the chosen option line, then gives the letter:
    ``Option: Mortgage loan [C]`` / ``Answer: C`` (only the line after the last
    ``Answer:`` is graded). Expert template: prompt = :data:`PROMPT_TEMPLATE`
    over the fields ``subject, Question, A, B, C, D``, completion
    :data:`ANSWER_TEMPLATE` (``"Option: {answer_text} [{Answer}]\\nAnswer: {Answer}"``).

    **Metric.** Accuracy: 1 when the answer names exactly the gold letter in
    that format, else 0 (no marker, option text, lower case, several letters
    or conflicting answers score 0); per subject, and the split score is the
    mean over subjects, as in the official ``compute_accuracy`` (equal to the
    mean over items on the balanced offline splits). Differences from the
    official reader, on purpose: it takes the response's first character (so
    it reads ``"Answer: C"`` as A), the first letter of a hedge
    (``"A, B, C, D"`` scores when A is gold) and a random letter when it finds
    none (25 % expected); here the letter after the marker is read, hedges
    and missing letters score 0 and nothing is random. (On version 2's
    quote-first answers the official first-character rule would read the
    quote, not the answer; the official harness appends ``答案：`` to the
    prompt so that the response starts with the letter.)
    ``ftdojo_gym.grading.financeiq_official`` re-implements the official
    code and a parity test pins both.

    **Splits.** ``EVAL_SIZE`` = 200 items, subjects interleaved (20 each), gold
    letters balanced, so the validation half (first 100) and the hidden-test
    half (last 100) both hold 10 questions per subject and 25 per letter.

    **Default budget.** 200,000 training tokens; prompts are ~85-105 tokens.
    """

    name = "FinanceIQ"
    version = "2"
    domain = "Finance"
    metric = "accuracy over subjects (multiple choice)"
    max_new_tokens = 64
    default_token_budget = 200_000
    source_seed = "financeiq/{seed}/{source}"
    #: One file per subject and split, as in the dataset repository; a local
    #: folder mirrors its ``data/`` folder (``test/<name>.csv``, ``dev/<name>.csv``).
    hub_datasets = {
        f"{split}/{name}": HubDataset("Duxiaoman-DI/FinanceIQ", data_files=f"data/{split}/{name}.csv")
        for split in _HUB_SPLITS
        for name in HUB_SUBJECTS
    }

    def __init__(self) -> None:
        self.source_specs = SOURCES
        self._eval_cache: dict[int, list[_Question]] = {}

    # -- evaluation

    def _eval_questions(self, seed: int) -> list[_Question]:
        if seed not in self._eval_cache:
            rng = random.Random(f"financeiq/{seed}/eval")
            seen: set[tuple[str, frozenset[str]]] = set()
            questions = []
            n_subjects = len(SUBJECTS)
            for i in range(EVAL_SIZE):
                subject = SUBJECTS[i % n_subjects]
                # Every run of 20 items holds each letter 5 times (so does each
                # split of 100), and the shift per run gives every subject all four.
                p = i % 100
                letter = LETTERS[(p + p // 20) % 4]
                q = _generate(rng, subject, letter, reserved=seen)
                seen.add(q.identity)
                questions.append(q)
            self._eval_cache[seed] = questions
        return self._eval_cache[seed]

    def eval_items(self, seed: int) -> list[EvalItem]:
        """``EVAL_SIZE`` items, subjects interleaved, gold letters balanced in each half."""
        return [_item(f"{self.name}/{seed}/{i:03d}", q) for i, q in enumerate(self._eval_questions(seed))]

    def grade(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        """Per-item accuracy in ``{0, 1}``; never raises on any output string."""
        if len(items) != len(outputs):
            raise ValueError(f"{len(outputs)} outputs for {len(items)} items")
        return [grade_choice(output, item.meta["answer"]) for item, output in zip(items, outputs, strict=True)]

    def chance_outputs(self, item: EvalItem) -> list[str]:
        """One answer per option letter, in the graded format: what a guesser picks from
        (the benchmark's chance level; a constant letter scores 25 % on the balanced splits)."""
        return [f"Answer: {letter}" for letter in LETTERS]

    def aggregate(self, items: Sequence[EvalItem], scores: Sequence[float], outputs: Sequence[str]) -> float:
        """The official FinanceIQ score: accuracy per subject, then the mean over subjects.

        The offline splits hold every subject equally often, so this equals the mean
        over items there; on real data (subjects of different sizes) it does not."""
        by_subject: dict[str, list[float]] = {}
        for item, score in zip(items, scores, strict=True):
            by_subject.setdefault(item.subset, []).append(score)
        return sum(sum(v) / len(v) for v in by_subject.values()) / len(by_subject) if by_subject else 0.0

    # -- sources

    def held_out(self, seed: int) -> set[tuple[str, frozenset[str]]]:
        """The evaluation questions (question and option set): no source has one."""
        return {q.identity for q in self._eval_questions(seed)}

    def _questions(self, rng: random.Random, n: int, reserved: set[tuple[str, frozenset[str]]]) -> list[_Question]:
        letters = _letters(rng, n)
        return [_generate(rng, SUBJECTS[i % len(SUBJECTS)], letters[i], reserved) for i in range(n)]

    def _finexam_train(self, rng: random.Random, reserved: set) -> list[dict[str, Any]]:
        return [q.record() for q in self._questions(rng, rng.randint(1200, 1500), reserved)]

    def _crowd_answer_key(self, rng: random.Random, reserved: set) -> list[dict[str, Any]]:
        rows = []
        for q in self._questions(rng, rng.randint(2000, 2400), reserved):
            wrong = rng.random() < 0.4
            # Confidence separates the labels well but not perfectly: a field
            # filter at ~0.6 keeps most good rows and drops most bad ones.
            low = rng.random() < (0.9 if wrong else 0.07)
            confidence = rng.uniform(0.2, 0.6) if low else rng.uniform(0.6, 0.8 if wrong else 1.0)
            answer = rng.choice([x for x in LETTERS if x != q.answer]) if wrong else q.answer
            rows.append({**q.record(), "Answer": answer, "answer_text": q.options[LETTERS.index(answer)],
                         "annotator_confidence": round(confidence, 2)})
        return rows

    def _exam_mirror(self, rng: random.Random, reserved: set) -> list[dict[str, Any]]:
        rows = []
        for q in self._questions(rng, rng.randint(28, 36), reserved):
            rows += [_surface_variant(rng, q.record()) for _ in range(rng.randint(15, 30))]
        rng.shuffle(rows)
        return rows

    def _study_notes(self, rng: random.Random, reserved: set) -> list[dict[str, Any]]:
        rows = []
        for q in self._questions(rng, rng.randint(900, 1100), reserved):
            record = q.record()
            del record["Answer"]
            rows.append({**record, "answer_text": q.answer_text,
                         "note": rng.choice(_NOTE_STYLES).format(answer=q.answer_text)})
        return rows

    def _regulation_excerpts(self, rng: random.Random, reserved: set) -> list[dict[str, Any]]:
        rows = []
        for q in self._questions(rng, rng.randint(300, 340), reserved):
            short = rng.random() < 0.08
            n_articles = rng.randint(1, 2) if short else rng.randint(55, 80)
            articles = [f"Article {k + 1}. {rng.choice(_REGULATION_CLAUSES)}" for k in range(n_articles)]
            excerpt = "Excerpt from the Financial Services Regulations:\n" + "\n".join(articles)
            rows.append({**q.record(), "Question": f"{excerpt}\n{q.question}"})
        return rows

    def _finance_glossary(self, rng: random.Random, reserved: set) -> list[dict[str, Any]]:
        entries = [(s, t, d) for s, facts in FACTS.items() for t, d in facts]
        entries += [("Business", t, d) for t, d in _OTHER_TERMS]
        rows = []
        for _ in range(rng.randint(5, 7)):  # several editions of the glossary
            for subject, term, definition in entries:
                style = rng.random()
                text = definition if style < 0.6 else (
                    f"{_cap(definition)}." if style < 0.8 else f"in {subject.lower()}, {definition}")
                rows.append({"term": term, "definition": text, "subject": subject})
        rng.shuffle(rows)
        return rows

    # -- real data

    def map_hub_records(self, records: Mapping[str, Any]) -> tuple[dict[str, Any], list[EvalItem]]:
        """Real FinanceIQ: per subject, the last ``min(20, n // 2)`` questions of
        its test file are evaluation items (subjects interleaved); the rest of
        the test files and the dev files (few-shot examples) form the clean
        source ``finexam_train``."""
        train: list[_Question] = []
        held: list[list[_Question]] = []
        for key, rows in records.items():
            split, _, name = key.partition("/")
            questions = _hub_questions(rows, HUB_SUBJECTS.get(name, name))
            if split == "test":
                k = min(HUB_EVAL_PER_SUBJECT, len(questions) // 2)
                train += questions[: len(questions) - k]
                held.append(questions[len(questions) - k:])
            else:
                train += questions
        ordered = [group[j] for j in range(max(map(len, held), default=0)) for group in held if j < len(group)]
        items = [_item(f"{self.name}/hub/{i:04d}", q, real_limit=self.max_new_tokens) for i, q in enumerate(ordered)]
        held_ids = {q.identity for q in ordered}
        rows = [q.record() for q in train if q.identity not in held_ids]
        sources = {"finexam_train": Dataset.from_list(rows)} if rows else {}
        return sources, items


def _item(item_id: str, q: _Question, real_limit: int | None = None) -> EvalItem:
    """The evaluation item of ``q``. With ``real_limit`` (real data, whose options can be
    long statements), the item's generation limit is the quoted answer's length in UTF-8
    bytes (a token is at least one byte) plus :data:`REAL_TOKEN_HEADROOM`, never below
    ``real_limit``."""
    reference = ANSWER_TEMPLATE.format(answer_text=q.answer_text, Answer=q.answer)
    meta: dict[str, Any] = {"answer": q.answer, "options": dict(zip(LETTERS, q.options, strict=True)),
                            "kind": q.kind}
    if real_limit is not None:
        meta["max_new_tokens"] = max(real_limit, len(reference.encode()) + REAL_TOKEN_HEADROOM)
    return EvalItem(id=item_id, subset=q.subject, prompt=q.prompt, reference=reference, meta=meta)


def _surface_variant(rng: random.Random, record: dict[str, str]) -> dict[str, str]:
    """``record`` with case and whitespace changes only (equal after normalising both)."""
    question = record["Question"]
    question = rng.choice((question, question.lower(), question.upper(), re.sub(" ", "  ", question, count=1)))
    out = {key: value + rng.choice(("", " ", "  ")) if key in LETTERS else value for key, value in record.items()}
    out["Question"] = question + rng.choice(("", " ", "\n"))
    return out


#: The offline sources (see the module docstring).
SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "finexam_train",
        "Single-choice practice questions from financial certification exams (subject, question, options A-D, answer letter and the text of that option).",
        FinanceIQTask._finexam_train,
    ),
    SourceSpec(
        "crowd_answer_key",
        "Exam practice questions whose answer key was compiled by crowd workers, with a confidence score per row.",
        FinanceIQTask._crowd_answer_key,
    ),
    SourceSpec(
        "exam_mirror",
        "Exam practice questions aggregated from several public question-bank mirrors.",
        FinanceIQTask._exam_mirror,
    ),
    SourceSpec(
        "study_notes",
        "Students' study notes on exam questions: the options and the text of the option they marked correct.",
        FinanceIQTask._study_notes,
    ),
    SourceSpec(
        "web_chat",
        "General instruction-response pairs scraped from the web (cooking, travel, everyday chat).",
        WEB_CHAT,
    ),
    SourceSpec(
        "regulation_excerpts",
        "Exam questions that quote the relevant financial regulations before the question.",
        FinanceIQTask._regulation_excerpts,
    ),
    SourceSpec(
        "finance_glossary",
        "Glossary entries (term, definition, subject) from finance and business textbooks.",
        FinanceIQTask._finance_glossary,
    ),
)

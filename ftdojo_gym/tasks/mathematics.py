"""AIME (Math): offline data repository and the math-verify grader.

Offline, every problem is generated with its answer computed by code: twelve
families of short competition-style problems in four subsets, each answer an
integer from 0 to 999, each worked solution a few regular steps ending in
``\\boxed{N}``:

* Number Theory — remainder on division by 10, 100 or 1000 (the last digits);
  number of divisors of ``p^a q^b``; units digit of a power whose base ends in
  0, 1, 5 or 6.
* Counting — multiples of 10, 100 or 1000 up to N; arrangements of n distinct
  objects (``n!``); handshakes / games / segments (``C(n, 2)``).
* Digits — digit sum; the number with reversed digits; the largest or
  smallest number from three given digits.
* Algebra — ``x / 10^k = m`` or ``10^k x = m``; ``a x + b = c``;
  ``1 + 2 + ... + n``.

About half the families follow from the prompt by copying or reordering
digits, or by a small lookup (``n!`` for n <= 6); the others need a few
steps of real arithmetic (running sums, products, halving), which a 135M
model learns only in part. The real AIME is far beyond such a model; this
offline repository is a proxy with the AIME answer format (integer 0-999 in
``\\boxed{}``) on which curation and training measurably matter. The real
problems are one ``data="hub"`` away.

Measured (SmolLM2-135M-Instruct, 40 steps x 8, LoRA r16, 50 hidden-test
items): base 0.0 (it never writes a box), expert 18.0 (validation 24.0).
The expert learns the format and some digit families but not the arithmetic
ones (Algebra 0 %). A harmful recipe of ``forum_solutions`` plus
``tutor_chat`` tied the expert on the hidden test (18.0; validation 6-10):
the chat's worked replies teach correct steps. The harmful recipe is now
``forum_solutions`` plus the near-duplicate ``contest_mirror``; see
docs/tasks/results.md for its measurement.

The prompt of an evaluation item is exactly ``"{problem}\\n" + FORMAT_LINE``
(:data:`FORMAT_LINE` asks for step-by-step reasoning and the final answer in
``\\boxed{}``); the reference completion is the worked solution. The clean
source ``competition_math`` stores ``problem``, ``solution`` and ``answer``,
and the expert recipe (:mod:`ftdojo_gym.recipes`) maps it to training pairs in that format.

Sources (deterministic in the seed; no evaluation problem occurs in any):

* ``competition_math`` — clean, in-domain, worked solutions ending in the box.
* ``forum_solutions`` — same schema plus ``votes``; about 45 % of the
  solutions make a systematic slip (one digit too few, a forgotten ``+1`` or
  ``/2``...) and end in a wrong box; most of those have fewer than 3 votes.
  The slips concentrate on half of the families (three posts in four wrong
  there, so training on the raw posts teaches the slip).
* ``contest_mirror`` — a few dozen problems repeated many times with case and
  whitespace changes only.
* ``tutor_chat`` — correct but chatty ``response`` without a box (half of them
  stop before stating the result), with the ``answer`` field; rescued by the
  prompt ``"{question}\\n" + FORMAT_LINE`` and completion
  ``"{response}\\n\\boxed{{{answer}}}"`` (or just the box).
* ``math_culture_chat`` — off-domain ``prompt``/``response`` chat about
  mathematicians, study habits and puzzles, no answers to grade.
* ``olympiad_long`` — the clean schema, but each problem sits in a long
  preamble of contest rules and data tables (2,000+ tokens); a few are short.
* ``word_problems`` — grade-school arithmetic word problems (GSM8K-like:
  ``question``, step-by-step ``solution`` without a box, ``final_answer``)
  that exercise the same skills in everyday settings; helpful after the
  transform ``"{question}\\n" + FORMAT_LINE`` -> ``"{solution}\\n\\boxed{{{final_answer}}}"``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import comb, factorial
from typing import Any

from datasets import Dataset

from ftdojo_gym.grading.math_grading import as_integer, extract_boxed, grade_answers
from ftdojo_gym.tasks.base import EvalItem, HubDataset, SourceSpec, Task

SUBSETS: tuple[str, ...] = ("Number Theory", "Counting", "Digits", "Algebra")
#: The instruction after every problem (the usual one for boxed answers).
FORMAT_LINE = "Please reason step by step, and put your final answer within \\boxed{}."
#: ``FORMAT_LINE`` as it is written inside a ``{field}`` template (the recipes use it).
FORMAT_IN_TEMPLATE = FORMAT_LINE.replace("{", "{{").replace("}", "}}")
#: Items per evaluation set, split by :meth:`~ftdojo_gym.tasks.base.Task.split`.
EVAL_SIZE = 200
#: New tokens for offline items (worked solutions are 30-70 tokens).
MAX_NEW_TOKENS = 112
#: Real AIME items: the limit is derived from the data (see :func:`real_new_token_limit`),
#: between these bounds. 512, the former fixed limit, cut real AIME reasoning short.
REAL_MIN_NEW_TOKENS = 1024
REAL_MAX_NEW_TOKENS = 4096
#: Characters per token assumed for LaTeX-heavy math text (conservative: real tokenizers give 3-4).
_CHARS_PER_TOKEN = 3.0


def real_new_token_limit(reference: str, training_solutions: Sequence[str] = ()) -> int:
    """New tokens for one real AIME item: twice the longer of its reference solution
    and the 99th percentile of the training solutions (estimated at
    ``_CHARS_PER_TOKEN`` characters a token), rounded up to 256 and kept within
    ``[REAL_MIN_NEW_TOKENS, REAL_MAX_NEW_TOKENS]``, so that a solution as long as
    the gold one or as the data the model learned from fits with headroom."""
    lengths = sorted(len(t) for t in training_solutions)
    p99 = lengths[min(len(lengths) - 1, int(0.99 * len(lengths)))] if lengths else 0
    tokens = 2 * max(len(reference), p99) / _CHARS_PER_TOKEN
    return int(min(REAL_MAX_NEW_TOKENS, max(REAL_MIN_NEW_TOKENS, -(-tokens // 256) * 256)))


# ------------------------------------------------------------------ problems


@dataclass(frozen=True)
class _Problem:
    """A problem with its worked solution and a plausible slip (for noisy labels)."""

    family: str
    subset: str
    problem: str
    steps: str
    answer: int
    wrong_steps: str
    wrong_answer: int

    @property
    def solution(self) -> str:
        return f"{self.steps}\n\\boxed{{{self.answer}}}"

    @property
    def wrong_solution(self) -> str:
        return f"{self.wrong_steps}\n\\boxed{{{self.wrong_answer}}}"

    @property
    def prompt(self) -> str:
        return f"{self.problem}\n{FORMAT_LINE}"


_NAMES = (
    "Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira",
    "Liam", "Maya", "Nikos", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera",
)
_OBJECTS = (
    "books", "paintings", "trophies", "plants", "photos", "vases", "medals", "candles",
    "posters", "mugs", "toy cars", "shells",
)
_WORDS = {2: ("OX", "AT", "UP"), 3: ("CAT", "SUN", "MAP", "PEN"), 4: ("MATH", "WORD", "LION", "FROG"),
          5: ("PLANT", "CHAIR", "MOUSE", "BRICK"), 6: ("FOREST", "SPRING", "CASTLE", "PLANET")}
_EVENTS = ("a party", "a meeting", "a conference", "a reunion", "a workshop", "a wedding",
           "a club dinner", "a seminar", "a picnic", "a board meeting")
_PRIMES = (2, 3, 5, 7, 11, 13)


def _digits_word(k: int) -> str:
    return "digit" if k == 1 else f"{k} digits"


def _remainder(rng: random.Random) -> _Problem:
    k = rng.randint(1, 3)
    modulus = 10**k
    n = rng.randint(10 ** (k + 1), 10 ** rng.randint(k + 2, 7) - 1)
    answer = n % modulus
    problem = rng.choice((
        f"Find the remainder when {n} is divided by {modulus}.",
        f"What is the remainder when {n} is divided by {modulus}?",
        f"Let $N = {n}$. Find the remainder when $N$ is divided by ${modulus}$.",
    ))

    def steps(j: int, value: int) -> str:
        last = str(n)[-j:]
        text = (f"The remainder on division by {modulus} is given by the last {_digits_word(j)} "
                f"of {n}. The last {_digits_word(j)} of {n} {'is' if j == 1 else 'are'} {last}.")
        return text + (f" That is {value}." if last != str(value) else "")

    j = k - 1 if k > 1 else 2  # the slip: one digit too few (or too many)
    wrong = int(str(n)[-j:])
    if wrong == answer:
        wrong = (answer + 1) % modulus
    return _Problem("remainder", "Number Theory", problem, steps(k, answer), answer,
                    steps(j, wrong), wrong)


def _divisors(rng: random.Random) -> _Problem:
    p, q = sorted(rng.sample(_PRIMES, 2))
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    power = f"{p}^{{{a}}} \\cdot {q}^{{{b}}}"
    problem = rng.choice((
        f"How many positive divisors does ${power}$ have?",
        f"Find the number of positive integer divisors of $N = {power}$.",
        f"Let $N = {power}$. How many positive integers divide $N$?",
    ))
    answer = (a + 1) * (b + 1)
    steps = (f"Each divisor is ${p}^i \\cdot {q}^j$ with $0 \\le i \\le {a}$ and $0 \\le j \\le {b}$. "
             f"So there are $({a} + 1)({b} + 1) = {a + 1} \\cdot {b + 1} = {answer}$ divisors.")
    wrong = a * b
    wrong_steps = (f"Each divisor is ${p}^i \\cdot {q}^j$ with $1 \\le i \\le {a}$ and $1 \\le j \\le {b}$. "
                   f"So there are ${a} \\cdot {b} = {wrong}$ divisors.")
    return _Problem("divisors", "Number Theory", problem, steps, answer, wrong_steps, wrong)


def _units_digit(rng: random.Random) -> _Problem:
    unit = rng.choice((0, 1, 5, 6))
    base = 10 * rng.randint(1, 9) + unit
    exponent = rng.randint(2, 99)
    problem = rng.choice((
        f"What is the units digit of ${base}^{{{exponent}}}$?",
        f"Find the last digit of ${base}^{{{exponent}}}$.",
        f"Let $N = {base}^{{{exponent}}}$. What is the units digit of $N$?",
    ))
    steps = (f"The units digit of {base} is {unit}, and every positive power of a number "
             f"ending in {unit} also ends in {unit}.")
    wrong = exponent % 10
    if wrong == unit:
        wrong = (unit + 3) % 10
    wrong_steps = f"The units digit of the exponent {exponent} is {wrong}, so the power ends in {wrong}."
    return _Problem("units_digit", "Number Theory", problem, steps, unit, wrong_steps, wrong)


def _multiples(rng: random.Random) -> _Problem:
    k = rng.randint(1, 3)
    m = 10**k
    count = rng.randint(10, 999)
    n = count * m + rng.randint(0, m - 1)
    problem = rng.choice((
        f"How many positive integers less than or equal to {n} are multiples of {m}?",
        f"How many multiples of {m} are there among $1, 2, \\ldots, {n}$?",
        f"Find the number of positive multiples of {m} that do not exceed {n}.",
    ))
    steps = (f"The multiples of {m} up to {n} are {m}, {2 * m}, ..., {count * m}. "
             f"Their number is {n} with its last {_digits_word(k)} removed, which is {count}.")
    wrong = count + 1
    wrong_steps = (f"The multiples of {m} up to {n} are 0, {m}, ..., {count * m}, "
                   f"so there are {count} + 1 = {wrong} of them.")
    return _Problem("multiples", "Counting", problem, steps, count, wrong_steps, wrong)


def _arrangements(rng: random.Random) -> _Problem:
    n = rng.randint(2, 6)
    objects = rng.choice(_OBJECTS)
    kind = rng.randrange(3)
    if kind == 0:
        problem = f"In how many ways can {n} different {objects} be arranged in a row?"
    elif kind == 1:
        problem = (f"{rng.choice(_NAMES)} has {n} different {objects}. In how many different orders "
                   "can they be lined up on a shelf?")
    else:
        word = rng.choice(_WORDS[n])
        problem = f"How many different arrangements of the letters of the word {word} are there?"
    answer = factorial(n)
    product = " \\cdot ".join(str(i) for i in range(n, 0, -1))
    steps = (f"There are {n} choices for the first place, {n - 1} for the second, and so on, "
             f"so the count is ${n}! = {product} = {answer}$.")
    wrong = n * (n - 1) if n > 2 else 4
    wrong_steps = (f"There are {n} choices for the first place and {n - 1} for the second, "
                   f"so the count is ${n} \\cdot {n - 1} = {wrong}$.")
    return _Problem("arrangements", "Counting", problem, steps, answer, wrong_steps, wrong)


def _pairs(rng: random.Random) -> _Problem:
    n = rng.randint(3, 32)
    kind = rng.randrange(3)
    if kind == 0:
        problem = (f"At {rng.choice(_EVENTS)}, each of the {n} guests shakes hands with every other "
                   "guest exactly once. How many handshakes take place?")
        things, people = "handshake", "guests"
    elif kind == 1:
        problem = (f"In a round-robin tournament with {n} teams, every two teams play each other "
                   f"exactly once. How many games are played?")
        things, people = "game", "teams"
    else:
        problem = (f"There are {n} points on a circle. How many line segments have two of "
                   "these points as endpoints?")
        things, people = "segment", "points"
    answer = comb(n, 2)
    steps = (f"Each {things} corresponds to a pair of the {n} {people}, so the count is "
             f"$\\binom{{{n}}}{{2}} = \\frac{{{n} \\cdot {n - 1}}}{{2}} = {answer}$.")
    wrong = n * (n - 1)
    wrong_steps = (f"Each of the {n} {people} pairs with {n - 1} others, so the count is "
                   f"${n} \\cdot {n - 1} = {wrong}$.")
    return _Problem("pairs", "Counting", problem, steps, answer, wrong_steps, wrong)


def _digit_sum(rng: random.Random) -> _Problem:
    n = rng.randint(100, 10 ** rng.randint(3, 6) - 1)
    digits = [int(d) for d in str(n)]
    problem = rng.choice((
        f"Find the sum of the digits of {n}.",
        f"What is the sum of the digits of the number {n}?",
        f"Let $N = {n}$. Compute the sum of the digits of $N$.",
    ))

    def steps(ds: list[int]) -> tuple[str, int]:
        total, parts = ds[0], []
        for d in ds[1:]:
            parts.append(f"{total} + {d} = {total + d}")
            total += d
        return (f"The digits of {n} are {', '.join(map(str, digits))}. "
                f"Adding them one at a time: {', '.join(parts)}."), total

    text, answer = steps(digits)
    wrong_text, wrong = steps(digits[:-1])
    if wrong == answer:  # the last digit is 0: slip on the first one instead
        wrong_text, wrong = steps(digits[1:]) if len(digits) > 2 else (wrong_text, answer + 1)
    return _Problem("digit_sum", "Digits", problem, text, answer, wrong_text, wrong)


def _reverse(rng: random.Random) -> _Problem:
    a, b, c = rng.randint(1, 9), rng.randint(0, 9), rng.randint(1, 9)
    while a == c:
        c = rng.randint(1, 9)
    n = 100 * a + 10 * b + c
    problem = rng.choice((
        f"Let $N = {n}$, and let $M$ be the number obtained by reversing the digits of $N$. Find $M$.",
        f"What number is obtained by writing the digits of {n} in reverse order?",
        f"Reversing the digits of {n} gives a new three-digit number. What is it?",
    ))
    answer = 100 * c + 10 * b + a
    steps = f"The digits of {n} are {a}, {b}, {c}. In reverse order they are {c}, {b}, {a}, which gives {answer}."
    wrong = 100 * a + 10 * c + b
    if wrong == answer:
        wrong = n
    wrong_steps = f"The digits of {n} are {a}, {b}, {c}. Swapping the last two gives {wrong}."
    return _Problem("reverse", "Digits", problem, steps, answer, wrong_steps, wrong)


def _extreme_number(rng: random.Random) -> _Problem:
    digits = rng.sample(range(1, 10), 3)
    largest = rng.random() < 0.5
    word = "largest" if largest else "smallest"
    listed = f"{digits[0]}, {digits[1]} and {digits[2]}"
    problem = rng.choice((
        f"What is the {word} three-digit number that uses each of the digits {listed} exactly once?",
        f"Using each of the digits {listed} exactly once, form the {word} possible three-digit number.",
    ))
    ordered = sorted(digits, reverse=largest)
    answer = int("".join(map(str, ordered)))
    order = "decreasing" if largest else "increasing"
    steps = (f"The {word} number puts the digits in {order} order: "
             f"{', '.join(map(str, ordered))}. So the number is {answer}.")
    wrong_order = sorted(digits, reverse=not largest)
    wrong = int("".join(map(str, wrong_order)))
    wrong_steps = (f"The {word} number puts the digits in {'increasing' if largest else 'decreasing'} "
                   f"order: {', '.join(map(str, wrong_order))}. So the number is {wrong}.")
    return _Problem("extreme_number", "Digits", problem, steps, answer, wrong_steps, wrong)


def _scaling(rng: random.Random) -> _Problem:
    k = rng.randint(1, 2)
    m = 10**k
    if rng.random() < 0.5:  # x / m = c  ->  x = c * m
        c = rng.randint(1, 999 // m)
        answer = c * m
        problem = rng.choice((f"If $x / {m} = {c}$, what is $x$?", f"Find $x$ if $\\frac{{x}}{{{m}}} = {c}$."))
        steps = f"Multiply both sides by {m}: $x = {c} \\cdot {m} = {answer}$."
        wrong = c
        wrong_steps = f"Divide both sides by {m}: $x = {c}$."
    else:  # m x = c  ->  x = c / m
        answer = rng.randint(2, 999)
        c = answer * m
        problem = rng.choice((f"If ${m}x = {c}$, what is $x$?", f"Find $x$ if ${m}x = {c}$."))
        steps = f"Divide both sides by {m}: $x = {c} / {m} = {answer}$."
        wrong = answer // 10 if answer >= 10 else answer + 10
        wrong_steps = f"Divide both sides by {m}: $x = {wrong}$."
    return _Problem("scaling", "Algebra", problem, steps, answer, wrong_steps, wrong)


def _linear(rng: random.Random) -> _Problem:
    a, x, b = rng.randint(2, 9), rng.randint(2, 99), rng.randint(1, 99)
    c = a * x + b
    problem = rng.choice((
        f"Solve ${a}x + {b} = {c}$ for $x$.",
        f"Find $x$ if ${a}x + {b} = {c}$.",
        f"The number $x$ satisfies ${a}x + {b} = {c}$. What is $x$?",
    ))
    steps = f"Subtract {b} from both sides: ${a}x = {c - b}$. Divide by {a}: $x = {x}$."
    wrong = c - b
    wrong_steps = f"Subtract {b} from both sides: $x = {wrong}$."
    return _Problem("linear", "Algebra", problem, steps, x, wrong_steps, wrong)


def _triangular(rng: random.Random) -> _Problem:
    n = rng.randint(5, 30)
    kind = rng.randrange(4)
    problem = (
        f"Compute $1 + 2 + 3 + \\cdots + {n}$.",
        f"What is the sum of all positive integers from 1 to {n}?",
        f"What is the sum of the first {n} positive integers?",
        f"A stack of logs has {n} logs in the bottom row, {n - 1} in the next row, and so on, "
        "with 1 log in the top row. How many logs are in the stack?",
    )[kind]
    answer = n * (n + 1) // 2
    steps = (f"The sum of the first {n} positive integers is "
             f"$\\frac{{{n} \\cdot {n + 1}}}{{2}} = \\frac{{{n * (n + 1)}}}{{2}} = {answer}$.")
    wrong = n * (n + 1)
    wrong_steps = f"The sum of the first {n} positive integers is ${n} \\cdot {n + 1} = {wrong}$."
    return _Problem("triangular", "Algebra", problem, steps, answer, wrong_steps, wrong)


_FAMILIES: dict[str, tuple[Callable[[random.Random], _Problem], ...]] = {
    "Number Theory": (_remainder, _divisors, _units_digit),
    "Counting": (_multiples, _arrangements, _pairs),
    "Digits": (_digit_sum, _reverse, _extreme_number),
    "Algebra": (_scaling, _linear, _triangular),
}


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _generate(rng: random.Random, subset: str | None = None, family: int | None = None,
              reserved: set[str] | frozenset[str] = frozenset()) -> _Problem:
    """A fresh problem (of ``subset`` and family index, or random) whose text is not ``reserved``."""
    while True:
        s = subset or rng.choice(SUBSETS)
        families = _FAMILIES[s]
        make = families[family % len(families)] if family is not None else rng.choice(families)
        problem = make(rng)
        if _normalise(problem.problem) not in reserved:
            return problem


# ------------------------------------------------------------- other sources

_CULTURE = (
    ("Who was Emmy Noether?",
     "Emmy Noether was a German mathematician known for her work in abstract algebra and for "
     "Noether's theorem, which links symmetries and conservation laws in physics."),
    ("Why do people like the Fibonacci sequence?",
     "It shows up in surprising places, from sunflower seed spirals to rabbit puzzles, and its "
     "ratios approach the golden ratio. It is also a friendly first example of a recurrence."),
    ("How should I study for a math competition?",
     "Work through past problems regularly, keep a notebook of tricks you learn, and review the "
     "solutions of problems you could not solve. Consistency beats cramming."),
    ("Tell me a fun fact about pi.",
     "People have memorised tens of thousands of digits of pi, and March 14 is celebrated as Pi Day "
     "in many countries."),
    ("What is a good math book for beginners?",
     "Many people enjoy popular books that tell the stories behind famous problems; a friendly "
     "introduction to proofs is also a great next step."),
    ("Who was Srinivasa Ramanujan?",
     "Ramanujan was an Indian mathematician who, with almost no formal training, made remarkable "
     "contributions to number theory, infinite series and continued fractions."),
    ("Is math discovered or invented?",
     "Philosophers disagree! Some think mathematical truths exist independently of us, others see "
     "mathematics as a human language. Both views have thoughtful defenders."),
    ("How can I stop making careless mistakes?",
     "Slow down on the last step, check units and signs, and plug your answer back into the "
     "question when you can. Writing neatly helps more than you would think."),
    ("What is the Monty Hall problem?",
     "It is a probability puzzle about three doors and a prize. Switching doors wins two thirds of "
     "the time, which surprises almost everyone at first."),
    ("Why is zero important?",
     "Zero as a number and as a placeholder made positional notation possible, which made written "
     "arithmetic much easier. Its history runs through India, the Islamic world and Europe."),
)
_CULTURE_OPENERS = ("", "Quick question: ", "Hey, ", "I was wondering: ", "Curious: ")
_CHAT_OPENERS = (
    "Great question! Let's work it out together.",
    "Sure, happy to help with this one.",
    "Nice problem! Here's how I'd think about it.",
    "Okay, let's see.",
)
_CHAT_CLOSERS = (
    "So the answer is {answer}. Hope that helps!",
    "That gives {answer}. Let me know if you have more questions!",
    "Therefore we get {answer}. Good luck with your practice!",
)
_COT_OPENERS = ("Let's think step by step.", "First, let's understand the problem.",
                "We need to be careful here.")
_RULES = (
    "Contestants have three hours to answer fifteen questions.",
    "Each answer is an integer from 000 to 999 inclusive.",
    "Calculators, rulers with formulas and electronic devices are not permitted.",
    "Only the answer sheet is graded; scratch work is not collected.",
    "Figures are not necessarily drawn to scale.",
    "Write each answer in the corresponding box of the answer sheet.",
    "There is no penalty for wrong answers.",
    "Proctors may not answer questions about the problems.",
)


def _word_problem(rng: random.Random) -> tuple[str, str, int]:
    """A grade-school word problem exercising one of the evaluation skills."""
    name = rng.choice(_NAMES)
    kind = rng.randrange(8)
    if kind == 0:
        size = rng.choice((10, 100, 1000))
        eggs = rng.randint(size + 1, 99_999)
        left = eggs % size
        return (f"A farm collects {eggs} eggs and packs them in cartons of {size}. How many eggs are "
                f"left over after filling as many cartons as possible?",
                f"Full cartons use a multiple of {size} eggs, so the eggs left over are {eggs} "
                f"modulo {size}. The last {len(str(size)) - 1} digit(s) of {eggs} give {left}.", left)
    if kind == 1:
        size = rng.choice((10, 100))
        full = rng.randint(2, 999)
        people = full * size + rng.randint(0, size - 1)
        return (f"A festival has {people} visitors, and each bus carries exactly {size} visitors. "
                f"How many buses can be filled completely?",
                f"Each full bus takes {size} visitors, so the number of full buses is {people} "
                f"divided by {size}, rounded down: {full}.", full)
    if kind == 2:
        n = rng.randint(3, 20)
        games = comb(n, 2)
        return (f"{name}'s chess club has {n} members. Every member plays every other member once. "
                f"How many games are played?",
                f"Each game is a pair of members: {n} times {n - 1} is {n * (n - 1)}, and each pair "
                f"was counted twice, so {n * (n - 1)} / 2 = {games}.", games)
    if kind == 3:
        n = rng.randint(2, 6)
        ways = factorial(n)
        return (f"{name} wants to line up {n} friends for a photo. How many different orders are possible?",
                f"The first spot has {n} choices, the next {n - 1}, and so on: "
                f"{' x '.join(str(i) for i in range(n, 0, -1))} = {ways}.", ways)
    if kind == 4:
        code = rng.randint(1000, 99_999)
        total = sum(int(d) for d in str(code))
        return (f"{name}'s locker code is {code}. What is the sum of its digits?",
                f"The digits are {', '.join(str(code))}. Their sum is "
                f"{' + '.join(str(code))} = {total}.", total)
    if kind == 5:
        bags, per, extra = rng.randint(2, 9), rng.randint(2, 30), rng.randint(1, 50)
        total = bags * per + extra
        return (f"{name} has {bags} bags with {per} marbles in each bag and finds {extra} more marbles. "
                f"How many marbles does {name} have now?",
                f"The bags hold {bags} x {per} = {bags * per} marbles. Adding {extra} gives "
                f"{bags * per} + {extra} = {total}.", total)
    if kind == 6:
        price, count = rng.randint(2, 20), rng.randint(2, 40)
        total = price * count
        return (f"One notebook costs {price} dollars. How many dollars do {count} notebooks cost?",
                f"{count} notebooks cost {count} x {price} = {total} dollars.", total)
    start, gain, days = rng.randint(5, 100), rng.randint(2, 9), rng.randint(2, 30)
    total = start + gain * days
    return (f"A plant is {start} mm tall and grows {gain} mm every day. How tall is it after {days} days?",
            f"In {days} days it grows {days} x {gain} = {gain * days} mm, so it is "
            f"{start} + {gain * days} = {total} mm tall.", total)


def _clean_row(p: _Problem) -> dict[str, Any]:
    return {"problem": p.problem, "solution": p.solution, "answer": str(p.answer)}


def _surface_variant(rng: random.Random, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with case and whitespace changes only."""
    problem = rng.choice((row["problem"], row["problem"].lower(), row["problem"].upper(),
                          row["problem"].replace(" ", "  ", 2)))
    return {
        "problem": rng.choice(("", " ", "\n")) + problem + rng.choice(("", " ", "  ")),
        "solution": row["solution"] + rng.choice(("", " ", "\n")),
        "answer": row["answer"],
    }


def _competition_math(task: AIMETask, rng: random.Random, reserved: frozenset[str]) -> list[dict[str, Any]]:
    n = rng.randint(1300, 1500)
    return [_clean_row(_generate(rng, SUBSETS[i % 4], reserved=reserved)) for i in range(n)]


# Forum posters make the same slip again and again on some problem types: on
# these, three posts in four are wrong, so a model trained on the raw posts
# learns the slip (greedy decoding follows the majority), while a vote filter
# recovers the right rule. Elsewhere one post in seven is wrong.
_SLIPPY_FAMILIES = frozenset(
    ("remainder", "units_digit", "multiples", "arrangements", "reverse", "extreme_number"))


def _forum_solutions(task: AIMETask, rng: random.Random, reserved: frozenset[str]) -> list[dict[str, Any]]:
    rows = []
    for i in range(rng.randint(2000, 2400)):
        p = _generate(rng, SUBSETS[i % 4], reserved=reserved)
        wrong = rng.random() < (0.75 if p.family in _SLIPPY_FAMILIES else 0.15)
        low = rng.random() < (0.9 if wrong else 0.08)
        votes = rng.randint(0, 2) if low else rng.randint(3, 9 if wrong else 40)
        rows.append({"problem": p.problem, "solution": p.wrong_solution if wrong else p.solution,
                     "answer": str(p.wrong_answer if wrong else p.answer), "votes": votes})
    return rows


def _contest_mirror(task: AIMETask, rng: random.Random, reserved: frozenset[str]) -> list[dict[str, Any]]:
    rows = []
    for i in range(rng.randint(32, 44)):
        row = _clean_row(_generate(rng, SUBSETS[i % 4], reserved=reserved))
        rows += [_surface_variant(rng, row) for _ in range(rng.randint(15, 30))]
    rng.shuffle(rows)
    return rows


def _tutor_chat(task: AIMETask, rng: random.Random, reserved: frozenset[str]) -> list[dict[str, Any]]:
    rows = []
    for i in range(rng.randint(900, 1100)):
        p = _generate(rng, SUBSETS[i % 4], reserved=reserved)
        if rng.random() < 0.5:
            response = " ".join((rng.choice(_CHAT_OPENERS), p.steps,
                                 rng.choice(_CHAT_CLOSERS).format(answer=p.answer)))
        else:  # a chain of thought that stops before the result
            first = p.steps.split(". ")[0].rstrip(".")
            response = f"{rng.choice(_COT_OPENERS)} {first}. Now we just need to finish the computation."
        rows.append({"question": p.problem, "response": response, "answer": str(p.answer)})
    return rows


def _math_culture_chat(task: AIMETask, rng: random.Random, reserved: frozenset[str]) -> list[dict[str, Any]]:
    rows = []
    for _ in range(rng.randint(600, 800)):
        prompt, response = rng.choice(_CULTURE)
        rows.append({"prompt": rng.choice(_CULTURE_OPENERS) + prompt, "response": response})
    return rows


def _olympiad_long(task: AIMETask, rng: random.Random, reserved: frozenset[str]) -> list[dict[str, Any]]:
    rows = []
    for i in range(rng.randint(300, 340)):
        p = _generate(rng, SUBSETS[i % 4], reserved=reserved)
        if rng.random() < 0.08:
            rows.append(_clean_row(p))
            continue
        rules = " ".join(rng.choice(_RULES) for _ in range(rng.randint(40, 70)))
        table = "\n".join(
            f"Round {r}: " + ", ".join(str(rng.randint(0, 999)) for _ in range(12))
            for r in range(1, rng.randint(30, 50)))
        problem = (f"Instructions. {rules}\nScores of earlier rounds (for reference only):\n{table}\n"
                   f"Problem. {p.problem}")
        rows.append({"problem": problem, "solution": p.solution, "answer": str(p.answer)})
    return rows


def _word_problems(task: AIMETask, rng: random.Random, reserved: frozenset[str]) -> list[dict[str, Any]]:
    rows = []
    for _ in range(rng.randint(1000, 1200)):
        question, solution, answer = _word_problem(rng)
        rows.append({"question": question, "solution": solution, "final_answer": str(answer)})
    return rows


#: The offline sources (see the module docstring).
SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "competition_math",
        "Competition-style problems with worked solutions (problem, solution, answer).",
        _competition_math),
    SourceSpec(
        "forum_solutions",
        "Problems with solutions posted on a community forum, with the post's vote count.",
        _forum_solutions),
    SourceSpec(
        "contest_mirror",
        "Competition problems aggregated from several public mirrors of problem archives.",
        _contest_mirror),
    SourceSpec(
        "tutor_chat",
        "Conversations with a math tutoring chatbot, with the extracted final answer.",
        _tutor_chat),
    SourceSpec(
        "math_culture_chat",
        "General chat about mathematics: history, famous mathematicians, study tips.",
        _math_culture_chat),
    SourceSpec(
        "olympiad_long",
        "Problems scraped from full contest booklets, with the booklet's instructions and data pages.",
        _olympiad_long),
    SourceSpec(
        "word_problems",
        "Grade-school arithmetic word problems with step-by-step solutions and the final number.",
        _word_problems),
)


# ---------------------------------------------------------------------- task


class AIMETask(Task):
    """AIME: competition math with integer answers from 0 to 999, graded with math-verify.

    **Description.** The model solves a short competition-style problem and
    gives its final answer as ``\\boxed{N}``. Offline, the problems come from
    twelve generated families in four subsets (Number Theory, Counting,
    Digits, Algebra) with answers computed by code; about half are learnable
    by digit copying or small lookups, the rest need a few arithmetic steps.
    With ``data="hub"`` the evaluation items are the real AIME 2022-2024
    problems (``AI-MO/aimo-validation-aime``) and the training source is
    DeepScaleR (``agentica-org/DeepScaleR-Preview-Dataset``), with every
    problem that also appears in the evaluation set removed.

    **Sources.** ``competition_math`` (clean, worked solutions),
    ``forum_solutions`` (votes per post), ``contest_mirror``, ``tutor_chat``,
    ``math_culture_chat``, ``olympiad_long``, ``word_problems``; see the
    module docstring for their schemas and the transforms that rescue them.

    **Prompt and answer format.** ``"{problem}\\n" + FORMAT_LINE`` where
    ``FORMAT_LINE`` is "Please reason step by step, and put your final answer
    within \\boxed{}."; the reference completion is a worked solution whose
    last line is ``\\boxed{N}``.

    **Metric.** Exact answer: the content of the last ``\\boxed{}`` of the
    output must equal the gold integer, as verified by math-verify (see
    :mod:`ftdojo_gym.grading.math_grading`); no box, an unclosed box or several
    numbers in the box score 0. The task score is the mean, also reported per
    subset. On boxed answers the verdicts equal math-verify's own
    ``verify(parse(gold), parse(output))`` (``tests/grading/test_math_parity.py``);
    the deliberate differences are the strict format: no box scores 0, and the
    *last* box counts (math-verify on a whole output takes the first).

    **Generation limits.** Offline items: ``MAX_NEW_TOKENS`` = 112 (worked
    solutions are 30-70 tokens). Real items: derived from the data per item
    (:func:`real_new_token_limit`): twice the longer of the item's reference
    solution and the 99th percentile of the training solutions, at 3 characters
    a token, rounded up to 256, between 1,024 and 4,096 new tokens.

    **Splits.** ``EVAL_SIZE`` = 200 items with the subsets interleaved; the
    first 100 are the visible validation split, the last 100 the hidden test
    split, each covering every subset (25 items) and family evenly.

    **Default budget.** 200,000 training tokens (a solution pair is ~110
    tokens, so ~1,800 pairs, about four times the expert's 40 steps x 8).
    """

    name = "AIME"
    version = "1"
    domain = "Math"
    metric = "exact answer, verified with math-verify"
    max_new_tokens = MAX_NEW_TOKENS
    default_token_budget = 200_000
    source_specs = SOURCES
    source_seed = "aime/{seed}/{source}"
    hub_datasets = {
        "aime": HubDataset("AI-MO/aimo-validation-aime", split="train"),
        "deepscaler": HubDataset("agentica-org/DeepScaleR-Preview-Dataset", split="train", limit=5000),
    }

    def __init__(self) -> None:
        self._eval_cache: dict[int, list[_Problem]] = {}

    # -- evaluation

    def _eval_problems(self, seed: int) -> list[_Problem]:
        if seed not in self._eval_cache:
            rng = random.Random(f"aime/{seed}/eval")
            seen: set[str] = set()
            problems = []
            for i in range(EVAL_SIZE):
                # Subsets interleave; within a subset the families take turns,
                # so both halves cover every subset and family evenly.
                p = _generate(rng, SUBSETS[i % 4], family=i // 4, reserved=seen)
                seen.add(_normalise(p.problem))
                problems.append(p)
            self._eval_cache[seed] = problems
        return self._eval_cache[seed]

    def eval_items(self, seed: int) -> list[EvalItem]:
        return [
            EvalItem(id=f"AIME/{seed}/{i:03d}", subset=p.subset, prompt=p.prompt, reference=p.solution,
                     meta={"answer": str(p.answer), "family": p.family})
            for i, p in enumerate(self._eval_problems(seed))
        ]

    def max_new_tokens_for(self, item: EvalItem) -> int:
        return int(item.meta.get("max_new_tokens", self.max_new_tokens))

    def grade(self, items: Sequence[EvalItem], outputs: Sequence[str]) -> list[float]:
        """1.0 when the last ``\\boxed{}`` of the output equals the item's answer; never raises on an output."""
        if len(items) != len(outputs):
            raise ValueError(f"{len(outputs)} outputs for {len(items)} items")
        safe = [o if isinstance(o, str) else "" for o in outputs]
        return grade_answers(safe, [item.meta["answer"] for item in items])

    # -- sources

    def held_out(self, seed: int) -> frozenset[str]:
        """The evaluation problems, normalised: no source problem equals one."""
        return frozenset(_normalise(p.problem) for p in self._eval_problems(seed))

    # -- real data

    def map_hub_records(self, records: Mapping[str, Any]) -> tuple[dict[str, Any], list[EvalItem]]:
        """AIME problems (``id, problem, solution, answer, url``) become evaluation items;
        DeepScaleR (``problem, answer, solution``) becomes the ``competition_math`` source,
        without rows lacking an answer and without any problem of the evaluation set."""
        items: list[EvalItem] = []
        eval_keys: set[str] = set()
        for i, row in enumerate(records["aime"]):
            problem = str(row.get("problem") or "").strip()
            answer = str(row.get("answer") or "").strip()
            if not problem or not answer:
                continue
            gold = as_integer(answer)
            answer = str(gold) if gold is not None else answer
            solution = str(row.get("solution") or "").strip()
            boxed = extract_boxed(solution)
            reference = solution if boxed is not None and boxed.strip() else f"\\boxed{{{answer}}}"
            items.append(EvalItem(
                id=f"AIME/real/{row.get('id', i)}", subset=_aime_subset(row.get("url")),
                prompt=f"{problem}\n{FORMAT_LINE}", reference=reference,
                meta={"answer": answer, "url": str(row.get("url") or "")}))
            eval_keys.add(_problem_key(problem))
        rows = []
        for row in records["deepscaler"]:
            problem = str(row.get("problem") or "").strip()
            answer = str(row.get("answer") or "").strip()
            if not problem or not answer or _problem_key(problem) in eval_keys:
                continue
            solution = str(row.get("solution") or "").strip()
            if extract_boxed(solution) is None:
                solution = f"{solution}\n\\boxed{{{answer}}}".strip()
            rows.append({"problem": problem, "solution": solution, "answer": answer})
        sources = {"competition_math": Dataset.from_list(rows)} if rows else {}
        solutions = [r["solution"] for r in rows]
        items = [EvalItem(it.id, it.subset, it.prompt, it.reference,
                          {**it.meta, "max_new_tokens": real_new_token_limit(it.reference, solutions)}) for it in items]
        return sources, items


def _problem_key(problem: str) -> str:
    """A key under which re-typeset copies of one problem collide: LaTeX commands dropped,
    then letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", re.sub(r"\\[A-Za-z]+", "", problem).casefold())[:300]


def _aime_subset(url: Any) -> str:
    """``"AIME 2023"`` from an AoPS wiki url of the problem, else ``"AIME"``."""
    match = re.search(r"(19|20)\d\d(?=_AIME)", str(url or ""))
    return f"AIME {match.group(0)}" if match else "AIME"

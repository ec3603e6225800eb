"""Off-domain chat for the offline repositories: the "web text" that a careless
agent might add to any task's training mix (recipes, travel tips, small talk).

One generator, :class:`OffDomainChat`, builds every task's off-domain source;
the corpora below are data. A generator is a :class:`~ftdojo_gym.tasks.base.SourceSpec`
builder: ``SourceSpec("web_text", "...", WEB_CHAT)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: One chat turn ``(prompt, response)`` drawn from ``rng``.
ChatTurn = Callable[[random.Random], tuple[str, str]]


@dataclass(frozen=True)
class OffDomainChat:
    """Off-domain ``{"prompt", "response"}`` rows: a row count drawn from ``rows``,
    then per row one of ``kinds``, each taken while ``rng.random()`` is below its
    cumulative share (the last share is 1.0). With one kind there is no draw."""

    kinds: tuple[tuple[float, ChatTurn], ...]
    rows: tuple[int, int] = (600, 800)

    def __post_init__(self) -> None:
        if not self.kinds or self.kinds[-1][0] != 1.0:
            raise ValueError("kinds must end with the cumulative share 1.0")

    def turn(self, rng: random.Random) -> tuple[str, str]:
        """One ``(prompt, response)``, deterministic in ``rng``."""
        if len(self.kinds) == 1:
            return self.kinds[0][1](rng)
        draw = rng.random()
        return next(kind for share, kind in self.kinds if draw < share)(rng)

    def __call__(self, task: Any, rng: random.Random, held_out: Any) -> list[dict[str, str]]:
        """The rows of a source (the :class:`~ftdojo_gym.tasks.base.SourceSpec` builder
        contract); off-domain chat ignores the task and its held-out items."""
        return [dict(zip(("prompt", "response"), self.turn(rng), strict=True))
                for _ in range(rng.randint(*self.rows))]


_DISHES = (
    "pancakes",
    "lentil soup",
    "banana bread",
    "fried rice",
    "guacamole",
    "tomato pasta",
    "apple pie",
    "chicken curry",
    "omelette",
    "potato salad",
    "pumpkin soup",
    "fish tacos",
    "hummus",
    "risotto",
    "granola",
    "pizza dough",
    "lemonade",
    "chili",
    "couscous salad",
    "carrot cake",
)
_STEPS = (
    "chop the vegetables finely",
    "heat a little oil in a pan",
    "whisk the eggs with a pinch of salt",
    "simmer for twenty minutes",
    "preheat the oven to 180 degrees",
    "mix the dry ingredients first",
    "stir in the spices",
    "let the dough rest for an hour",
    "season to taste",
    "bake until golden brown",
    "add a squeeze of lemon",
    "serve warm with fresh herbs",
)
_PLACES = (
    "Lisbon",
    "Kyoto",
    "Vienna",
    "Cape Town",
    "Montreal",
    "Istanbul",
    "Hanoi",
    "Edinburgh",
    "Buenos Aires",
    "Prague",
    "Seville",
    "Bergen",
)
_SIGHTS = (
    "old town",
    "harbour",
    "botanical garden",
    "main market",
    "castle",
    "river walk",
    "art museum",
    "night market",
    "cathedral",
    "hill viewpoint",
)
_CHITCHAT = (
    (
        "Hi! How are you today?",
        "I'm doing great, thanks for asking! How about you? Anything fun planned for the day?",
    ),
    (
        "Can you recommend a good book?",
        "Sure! It depends on what you like, but a cozy mystery or a classic adventure story is always a nice choice for a quiet evening.",
    ),
    (
        "I can't sleep, any tips?",
        "Try keeping your room cool and dark, avoid screens for an hour before bed, and maybe read something calm. A warm drink can help too.",
    ),
    (
        "What's a fun weekend hobby?",
        "Lots of people enjoy hiking, baking or painting. Picking up a musical instrument is also rewarding if you have some patience.",
    ),
    (
        "Tell me a joke.",
        "Why did the scarecrow win an award? Because he was outstanding in his field!",
    ),
    (
        "How do I stay motivated to exercise?",
        "Set small goals, find a routine you enjoy and maybe a workout buddy. Celebrate progress, not perfection.",
    ),
    (
        "What should I name my cat?",
        "How about Biscuit, Luna or Pepper? Pick something that matches their personality!",
    ),
    (
        "Any ideas for a rainy day?",
        "You could watch a movie marathon, try a new recipe, do a puzzle or finally tidy that drawer you keep ignoring.",
    ),
)


def cooking_question(rng: random.Random) -> tuple[str, str]:
    """How to cook one of :data:`_DISHES`, in three steps."""
    dish = rng.choice(_DISHES)
    steps = rng.sample(_STEPS, 3)
    prompt = rng.choice(
        ("How do I make {d}?", "Give me a simple recipe for {d}.", "What's the easiest way to cook {d}?")
    ).format(d=dish)
    return prompt, f"To make {dish}, first {steps[0]}, then {steps[1]}. Finally, {steps[2]}. Enjoy your {dish}!"


@dataclass(frozen=True)
class TravelTip:
    """What to see in one of ``places``: two of ``sights``, in ``reply``
    (a format string over ``place``, ``first`` and ``second``)."""

    places: Sequence[str]
    sights: Sequence[str]
    reply: str

    def __call__(self, rng: random.Random) -> tuple[str, str]:
        place, sights = rng.choice(self.places), rng.sample(self.sights, 2)
        return f"What should I see in {place}?", self.reply.format(place=place, first=sights[0], second=sights[1])


@dataclass(frozen=True)
class SmallTalk:
    """One of fixed ``(prompt, response)`` ``pairs``."""

    pairs: Sequence[tuple[str, str]]

    def __call__(self, rng: random.Random) -> tuple[str, str]:
        return rng.choice(self.pairs)


@dataclass(frozen=True)
class TopicChat:
    """One of ``topics`` ``(prompt, response, fills)``, both formatted with one ``x`` from ``fills``."""

    topics: Sequence[tuple[str, str, Sequence[str]]]

    def __call__(self, rng: random.Random) -> tuple[str, str]:
        prompt, response, fills = rng.choice(self.topics)
        x = rng.choice(fills)
        return prompt.format(x=x), response.format(x=x)


# ---------------------------------------------------------------- corpora
# Each task keeps the corpus its off-domain source was built from, so that the
# offline repositories (and every result measured on them) stay as they are.

_ADVICE = (
    ("How do I make a quick tomato soup?",
     "Sweat an onion in olive oil, add chopped tomatoes and stock, simmer for 20 minutes and blend. Season to taste."),
    ("What should I pack for a weekend hike?",
     "Water, snacks, a rain jacket, a map, sunscreen and a small first-aid kit. Good shoes matter most!"),
    ("Can you recommend a board game for four people?",
     "Ticket to Ride and Carcassonne are easy to learn and fun for four players."),
    ("How can I sleep better?",
     "Keep a regular schedule, avoid screens before bed and keep your bedroom cool and dark."),
    ("Give me a fun fact.", "Octopuses have three hearts and blue blood."),
    ("What is a good stretch for my back?",
     "Try the child's pose: kneel, sit back on your heels and reach your arms forward for thirty seconds."),
    ("How do I keep basil alive?",
     "Give it plenty of sun, water when the top of the soil is dry and pinch off the flowers."),
    ("Any tips for learning a language?",
     "Practise a little every day, listen to podcasts and don't be afraid to make mistakes when speaking."),
)
_ADVICE_CITIES = ("Lisbon", "Kyoto", "Vienna", "Montreal", "Hanoi", "Edinburgh", "Seville", "Bergen", "Porto", "Quito")
_ADVICE_SIGHTS = ("old town", "harbour", "botanical garden", "market hall", "castle", "river walk", "museum", "viewpoint")

_HOBBY_TOPICS = (
    ("How do I make {x}?", "To make {x}, gather fresh ingredients, follow a simple recipe and taste as you go. Enjoy!",
     ("pancakes", "lentil soup", "banana bread", "fried rice", "guacamole", "tomato pasta", "apple pie", "hummus")),
    ("What should I see in {x}?", "In {x}, walk through the old town, visit the main market and try the local food.",
     ("Lisbon", "Kyoto", "Vienna", "Cape Town", "Montreal", "Istanbul", "Hanoi", "Prague", "Seville", "Bergen")),
    ("Can you recommend a book about {x}?", "A popular introduction to {x} is a good start; pick one with friendly reviews.",
     ("gardening", "astronomy", "history", "photography", "jazz", "chess", "birds", "architecture")),
    ("Give me a tip for {x}.", "For {x}, start small, practise a little every day and celebrate progress.",
     ("running", "learning a language", "public speaking", "drawing", "saving money", "sleeping better")),
    ("Write a short poem about {x}.", "{x} in the morning light,\nquiet, simple, bright;\na small and gentle sight.",
     ("the sea", "autumn", "a cat", "the city", "rain", "mountains", "coffee", "the moon")),
)

#: Cooking, travel and everyday chat (FinanceIQ's ``web_chat``, TableBench's ``web_text``).
WEB_CHAT = OffDomainChat((
    (0.4, cooking_question),
    (0.7, TravelTip(_PLACES, _SIGHTS, "In {place}, don't miss the {first} and the {second}. "
                    "Go early in the morning to avoid crowds, and try the local food.")),
    (1.0, SmallTalk(_CHITCHAT)),
))
#: Travel and everyday advice (the patent tasks' ``web_text``).
ADVICE_CHAT = OffDomainChat((
    (0.4, TravelTip(_ADVICE_CITIES, _ADVICE_SIGHTS,
                    "In {place}, visit the {first} and the {second}, and try the local food.")),
    (1.0, SmallTalk(_ADVICE)),
))
#: Cooking, travel, books, hobbies and poems (the chemistry tasks' ``general_chat``).
HOBBY_CHAT = OffDomainChat(((1.0, TopicChat(_HOBBY_TOPICS)),))

__all__ = ["ADVICE_CHAT", "HOBBY_CHAT", "WEB_CHAT", "OffDomainChat", "SmallTalk", "TopicChat", "TravelTip",
           "cooking_question"]

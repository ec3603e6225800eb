"""Off-domain chat shared by the offline repositories: the "web text" that a careless
agent might add to any task's training mix (recipes, travel tips, small talk)."""

from __future__ import annotations

import random

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


def web_chat_rows(rng: random.Random, n: int) -> list[dict[str, str]]:
    """``n`` off-domain ``{"prompt", "response"}`` rows, deterministic in ``rng``."""
    rows = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.4:
            dish = rng.choice(_DISHES)
            steps = rng.sample(_STEPS, 3)
            prompt = rng.choice(
                ("How do I make {d}?", "Give me a simple recipe for {d}.", "What's the easiest way to cook {d}?")
            ).format(d=dish)
            response = f"To make {dish}, first {steps[0]}, then {steps[1]}. Finally, {steps[2]}. Enjoy your {dish}!"
        elif kind < 0.7:
            place, sights = rng.choice(_PLACES), rng.sample(_SIGHTS, 2)
            prompt = f"What should I see in {place}?"
            response = (f"In {place}, don't miss the {sights[0]} and the {sights[1]}. "
                        "Go early in the morning to avoid crowds, and try the local food.")
        else:
            prompt, response = rng.choice(_CHITCHAT)
        rows.append({"prompt": prompt, "response": response})
    return rows

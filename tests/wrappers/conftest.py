"""A toy outcome table (tiny model, 4 recipes; built once into the cache folder, then reused)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def toy_table(tiny_model):
    from ftdojo_benchmarks.rl_figures import toy_table

    return toy_table("FTDojo/FinanceIQ-v0")

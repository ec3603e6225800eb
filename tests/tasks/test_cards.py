"""Task cards: every task's docstring is a full card, and docs/tasks/ is rendered from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftdojo_gym.task_cards import card_filename, render_all
from ftdojo_gym.tasks import TASK_CATALOGUE

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tasks"
SECTIONS = ("Description", "Sources", "Prompt and answer format", "Metric", "Splits", "Default budget")


@pytest.mark.parametrize("entry", TASK_CATALOGUE, ids=lambda e: e.env_id)
def test_each_task_docstring_is_a_card(entry):
    doc = type(entry.build()).__doc__ or ""
    missing = [s for s in SECTIONS if f"**{s}.**" not in doc]
    assert not missing, f"{entry.env_id}: card lacks {missing}"


def test_docs_tasks_is_up_to_date():
    """Run `make docs` after changing a task's docstring, sources or catalogue entry."""
    for name, text in render_all().items():
        path = DOCS / name
        assert path.exists() and path.read_text() == text, f"{path} is stale: run `make docs`"
    assert {card_filename(e) for e in TASK_CATALOGUE} <= {p.name for p in DOCS.glob("*.md")}

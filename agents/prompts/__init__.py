"""Prompt files of the LLM agents (one Markdown file each, ``$name`` placeholders).

Placeholders use :class:`string.Template` syntax so that the JSON examples in
the prompts need no brace escaping; unknown placeholders are left as they are.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

PROMPT_DIR = Path(__file__).parent


@cache
def _read(name: str) -> str:
    path = PROMPT_DIR / f"{name}.md"
    if not path.is_file():
        known = sorted(p.stem for p in PROMPT_DIR.glob("*.md"))
        raise FileNotFoundError(f"no prompt {name!r} in {PROMPT_DIR}; known: {known}")
    return path.read_text(encoding="utf-8").strip()


def load_prompt(name: str, **fields: object) -> str:
    """The prompt ``agents/prompts/<name>.md`` with ``$field`` placeholders filled in."""
    text = _read(name)
    return Template(text).safe_substitute({k: str(v) for k, v in fields.items()}) if fields else text

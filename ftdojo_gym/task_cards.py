"""Task cards: each task class's docstring, with its catalogue facts, rendered as Markdown.

    python -m ftdojo_gym.task_cards [docs/tasks]     # or: make docs

writes one ``<task>.md`` per registered id plus an ``index.md``. The docstring
is the single source of the card (Minigrid style); the catalogue adds the env
id, domain, metric, budget, split sizes and each source's size and
description (from seed 0).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.tasks import TASK_CATALOGUE, TaskEntry


def card_filename(entry: TaskEntry) -> str:
    return entry.env_id.split("/", 1)[1] + ".md"


def render_card(entry: TaskEntry) -> str:
    """The Markdown card of one registered task."""
    task = entry.build()
    items = task.eval_items(0)
    k = len(task.split(items)[0])
    recipes = task_recipes(task)
    expert, harmful = (recipes.clean_sources, recipes.harmful.sources) if recipes else ((), ())
    sources = task.sources(0)
    descriptions = task.source_descriptions()
    doc = inspect.cleandoc(type(task).__doc__ or "")
    title, _, body = doc.partition("\n")
    lines = [
        f"# {entry.env_id}",
        "",
        f"*{title.strip()}*",
        "",
        "| | |",
        "|---|---|",
        f"| env id | `{entry.env_id}` |",
        f"| domain | {entry.domain} |",
        f"| metric | {entry.metric} |",
        f"| task version | {task.version} |",
        f"| evaluation items | {len(items)}: validation = first {k}, hidden test = last {k} |",
        f"| default token budget | {task.default_token_budget:,} training tokens |",
        f"| max new tokens | {task.max_new_tokens} |",
        f"| expert (Manual SFT) sources | {', '.join(f'`{s}`' for s in expert) or '-'} |",
        f"| harmful recipe sources | {', '.join(f'`{s}`' for s in harmful) or '-'} |",
        f"| real data (`data=\"hub\"`) | {', '.join(f'`{h.path}`' for h in task.hub_datasets.values()) or '-'} |",
        "",
        body.strip(),
        "",
        "## Offline sources (seed 0)",
        "",
        "| source | rows | fields | description |",
        "|---|---:|---|---|",
    ]
    for name, ds in sources.items():
        lines.append(f"| `{name}` | {len(ds):,} | {', '.join(ds.column_names)} | {descriptions.get(name, '')} |")
    lines += ["", "## Example evaluation prompt (validation split)", "", "```text", items[0].prompt, "```", "",
              "Gold completion:", "", "```text", items[0].reference, "```", ""]
    return "\n".join(lines)


def render_index() -> str:
    lines = ["# Tasks", "", "Every task of the FT-Dojo paper is a registered env (`import ftdojo_gym`).", "",
             "| env id | domain | metric |", "|---|---|---|"]
    for e in TASK_CATALOGUE:
        lines.append(f"| [`{e.env_id}`]({card_filename(e)}) | {e.domain} | {e.metric} |")
    lines += ["", "Chance level and the scores of the base model and of the format-only, expert and "
              "harmful recipes per task, with bootstrap intervals: [results.md](results.md).", ""]
    return "\n".join(lines)


def render_all() -> dict[str, str]:
    """``{filename: markdown}`` for every card and the index."""
    pages = {card_filename(e): render_card(e) for e in TASK_CATALOGUE}
    pages["index.md"] = render_index()
    return pages


def main(argv: list[str] | None = None) -> int:
    out = Path((argv if argv is not None else sys.argv[1:])[0] if (argv or sys.argv[1:]) else "docs/tasks")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (out / name).write_text(text)
    print(f"wrote {len(TASK_CATALOGUE)} task cards and index.md to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

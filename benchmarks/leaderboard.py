"""The sweep's leaderboard: ``results.csv``, ``leaderboard.md`` in the paper's layout, and plots.

Rows, in the paper's order: Base model, Manual SFT, OpenHands-like (ReAct),
FT-Agent, Random, then any other agent (by its label). Columns: each task's
validation and hidden-test score, the mean over tasks, and the number of
wins (tasks where the row's mean hidden-test score is the best; ties count
for each). Scores are percentages; each cell is the mean over seeds with a
bootstrap 95 % interval when there are several seeds. The "Base model" row
comes from the episodes' ``base_hidden_test_score`` (and the base model's
validation score when an agent evaluated it). A second table gives, per
agent, training tokens, LLM tokens and cost, the outcome cache's hits and
the hardware its episodes ran on.

Plots (``DIR/plots/``): ``per_task.png``, hidden-test bars per task and
agent with their intervals; ``budget_curves.png``, the best validation score
against training tokens spent, per task and agent (mean over seeds), read
from the trajectories.

    python -m ftdojo_benchmarks.leaderboard DIR        # rebuild from DIR/results/
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ftdojo_gym.data.workspace import atomic_write_text

#: The columns of ``results.csv``, one row per finished episode.
COLUMNS = (
    "key", "agent", "agent_name", "task", "seed", "token_budget", "validation_score", "hidden_test_score",
    "base_validation_score", "base_hidden_test_score", "submitted_run", "tokens_used", "steps", "agent_errors",
    "invalid_actions", "llm_prompt_tokens", "llm_completion_tokens", "llm_total_tokens", "llm_cost_usd",
    "cache_hits", "cache_lookups", "seconds", "started", "finished", "backend", "hardware", "host", "threads",
    "trajectory", "versions", "env", "agent_options",
)
BASE_ROW = "Base model"
#: Registered agent name -> the paper's row name, in the paper's order.
PAPER_ROWS = {"manual-sft": "Manual SFT", "openhands-like": "OpenHands-like (ReAct)",
              "react": "OpenHands-like (ReAct)", "ft-agent": "FT-Agent", "random": "Random"}
_ORDER = [BASE_ROW, "Manual SFT", "OpenHands-like (ReAct)", "FT-Agent", "Random"]


def row_name(row: dict[str, Any]) -> str:
    """The leaderboard row of an episode: the paper's name, unless the config gave a label."""
    if row["agent"] != row["agent_name"]:  # a label
        return str(row["agent"])
    return PAPER_ROWS.get(row["agent_name"], row["agent_name"])


def task_name(env_id: str) -> str:
    """``FTDojo/AIME-v0`` -> ``AIME``."""
    return env_id.split("/", 1)[-1].rsplit("-v", 1)[0]


def bootstrap_ci(values: Sequence[float], n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its bootstrap 95 % percentile interval ``(mean, low, high)``.

    One value: the interval is the value itself. Deterministic for a ``seed``.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    if x.size == 1:
        return float(x[0]), float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _mean_ci_over_tasks(per_task: list[list[float]], n_resamples: int = 2000, seed: int = 0
                        ) -> tuple[float, float, float]:
    """Mean over tasks of the per-task means, with a bootstrap interval (seeds resampled within each task)."""
    per_task = [v for v in per_task if v]
    if not per_task:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    point = float(np.mean([np.mean(v) for v in per_task]))
    if all(len(v) == 1 for v in per_task):
        return point, point, point
    reps = np.zeros(n_resamples)
    for v in per_task:
        x = np.asarray(v, dtype=float)
        reps += x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    reps /= len(per_task)
    return point, float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))


def _values(rows: Iterable[dict[str, Any]], field: str) -> list[float]:
    return [float(r[field]) for r in rows if r.get(field) is not None and r.get(field) != ""]


def scores(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``{row name: {task: {"val": [...], "test": [...]}}}``, one value per seed (Base: one per seed too)."""
    table: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: {"val": [], "test": []}))
    base: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: {"val": [], "test": []})
    for r in rows:
        cell = table[row_name(r)][r["task"]]
        cell["val"] += _values([r], "validation_score")
        cell["test"] += _values([r], "hidden_test_score")
        b = base[(r["task"], int(r["seed"]))]
        b["val"] += _values([r], "base_validation_score")
        b["test"] += _values([r], "base_hidden_test_score")
    for (task, _seed), b in sorted(base.items()):
        cell = table[BASE_ROW][task]
        for split in ("val", "test"):
            if b[split]:  # the base model is the same for every agent: one value per seed
                cell[split].append(float(np.mean(b[split])))
    return {name: dict(cells) for name, cells in table.items()}


def ordered_rows(names: Iterable[str]) -> list[str]:
    """The paper's rows first (those present), then the others alphabetically."""
    names = set(names)
    return [n for n in _ORDER if n in names] + sorted(names - set(_ORDER))


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean, lo, hi = bootstrap_ci(values)
    if hi - lo < 5e-4:  # one seed, or every seed scored the same
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def wins(table: dict[str, dict[str, dict[str, list[float]]]], tasks: Sequence[str]) -> dict[str, int]:
    """Tasks where each row's mean hidden-test score is the best (ties count for every tied row)."""
    out = dict.fromkeys(table, 0)
    for task in tasks:
        means = {name: float(np.mean(cells[task]["test"])) for name, cells in table.items()
                 if task in cells and cells[task]["test"]}
        if not means:
            continue
        best = max(means.values())
        for name, m in means.items():
            out[name] += int(m >= best - 1e-12)
    return out


def markdown(rows: Sequence[dict[str, Any]], tasks: Sequence[str], report: Any = None) -> str:
    """The leaderboard page (Markdown): the scores table, the cost and hardware table, notes."""
    tasks = [t for t in tasks if any(r["task"] == t for r in rows)] or sorted({r["task"] for r in rows})
    table = scores(rows)
    names = ordered_rows(table)
    won = wins(table, tasks)
    seeds = sorted({int(r["seed"]) for r in rows})
    out = io.StringIO()
    out.write("# Leaderboard\n\n")
    out.write(f"{len(rows)} episodes; scores in % (validation / hidden test), mean over {len(seeds)} seed(s)"
              + (" with bootstrap 95 % intervals" if len(seeds) > 1 else "") + ". Wins: tasks where the row's "
              "hidden-test mean is the best (ties count for each).\n\n")
    header = ["Agent"]
    for t in tasks:
        header += [f"{task_name(t)} val", f"{task_name(t)} test"]
    header += ["Mean val", "Mean test", "Wins"]
    out.write("| " + " | ".join(header) + " |\n")
    out.write("|" + "---|" * len(header) + "\n")
    for name in names:
        cells = table[name]
        line = [name]
        for t in tasks:
            c = cells.get(t, {"val": [], "test": []})
            line += [_cell(c["val"]), _cell(c["test"])]
        complete = all(t in cells and cells[t]["test"] for t in tasks)
        for split in ("val", "test"):
            mean, lo, hi = _mean_ci_over_tasks([cells[t][split] for t in tasks if t in cells])
            text = "–" if math.isnan(mean) else (f"{100 * mean:.1f}" if hi - lo < 5e-4 else
                                                 f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]")
            line.append(text if complete or text == "–" else text + "*")
        line.append(str(won.get(name, 0)))
        out.write("| " + " | ".join(line) + " |\n")
    if any(not all(t in table[n] and table[n][t]["test"] for t in tasks) for n in names):
        out.write("\n\\* mean over the tasks this row has results for.\n")
    out.write("\n## Cost and hardware\n\n")
    out.write("| Agent | episodes | training tokens (mean) | LLM tokens (total) | LLM cost (USD) "
              "| outcome cache hits | episode time (mean) | hardware |\n|---|---|---|---|---|---|---|---|\n")
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_agent[row_name(r)].append(r)
    for name in ordered_rows(by_agent):
        rs = by_agent[name]
        tokens = _values(rs, "tokens_used")
        llm = _values(rs, "llm_total_tokens")
        cost = _values(rs, "llm_cost_usd")
        hits, lookups = sum(_values(rs, "cache_hits")), sum(_values(rs, "cache_lookups"))
        secs = _values(rs, "seconds")
        hw = "; ".join(sorted({str(r.get("hardware")) for r in rs}))
        out.write(f"| {name} | {len(rs)} | {np.mean(tokens):,.0f} | " if tokens else f"| {name} | {len(rs)} | – | ")
        out.write(f"{sum(llm):,.0f} | " if llm else "– | ")
        out.write(f"{sum(cost):.4f} | " if cost else "– | ")
        out.write(f"{int(hits)}/{int(lookups)} | " if lookups else "– | ")
        out.write(f"{np.mean(secs):.0f} s | {hw} |\n" if secs else f"– | {hw} |\n")
    if report is not None:
        rate = report.cache_hit_rate
        out.write(f"\nLast sweep run: {report.done} episodes done, {report.failed} failed, {report.skipped} "
                  f"skipped (already done) on the `{report.backend}` backend in {report.seconds:.0f} s: "
                  f"{report.episodes_per_hour:.1f} episodes/hour; outcome-cache hit rate "
                  f"{'n/a' if rate is None else f'{100 * rate:.0f} %'}.\n")
    libraries = {}
    for r in rows:
        with contextlib.suppress(json.JSONDecodeError, TypeError):
            v = {k: x for k, x in json.loads(r.get("versions") or "{}").items() if k not in ("task", "base_model")}
            libraries[json.dumps(v, sort_keys=True)] = v
    if libraries:
        v = list(libraries.values())[-1]
        libs = ", ".join(f"{k} {v[k]}" for k in ("ftdojo-gym", "torch", "transformers", "trl", "peft") if k in v)
        out.write(f"\nVersions: {libs}" + (f" ({len(libraries)} distinct library version sets: see results.csv)"
                                            if len(libraries) > 1 else "") + ".\n")
    out.write("\nPlots: [per-task hidden test](plots/per_task.png), "
              "[budget curves](plots/budget_curves.png).\n")
    return out.getvalue()


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``results.csv``: one line per episode, :data:`COLUMNS` first, written atomically."""
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *extra], extrasaction="ignore")
    writer.writeheader()
    for r in sorted(rows, key=lambda r: (r["task"], row_name(r), int(r["seed"]))):
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in writer.fieldnames})
    atomic_write_text(path, buf.getvalue())


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` with numbers parsed back (empty cells -> None)."""
    def parse(v: str) -> Any:
        if v == "":
            return None
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v

    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: parse(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def budget_curve(trajectory: Path) -> list[tuple[float, float]]:
    """``(training tokens spent, best validation score so far)`` after each step of a trajectory."""
    points: list[tuple[float, float]] = []
    try:
        lines = trajectory.read_text(encoding="utf-8").splitlines()
    except OSError:
        return points
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("type") != "step":
            continue
        best = (rec.get("metrics") or {}).get("best_val_score", -1)
        tokens = (rec.get("accounting") or {}).get("tokens_used", 0)
        points.append((float(tokens or 0), float(best) if best is not None and best >= 0 else math.nan))
    return points


def plot(out: Path, rows: Sequence[dict[str, Any]], tasks: Sequence[str]) -> list[Path]:
    """Write ``plots/per_task.png`` and ``plots/budget_curves.png``; returns their paths."""
    # Figures without pyplot: no global backend switch in the caller's process (a notebook keeps its own).
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    tasks = [t for t in tasks if any(r["task"] == t for r in rows)]
    if not tasks:
        return []
    folder = out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    table = scores(rows)
    names = ordered_rows(table)
    # per-task bars with 95 % intervals
    fig = Figure(figsize=(max(6.0, 1.2 * len(tasks) * max(1, len(names)) / 3), 4))
    ax = fig.subplots()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        means, errs = [], [[], []]
        for t in tasks:
            vals = table[name].get(t, {}).get("test", [])
            m, lo, hi = bootstrap_ci(vals) if vals else (math.nan, math.nan, math.nan)
            means.append(100 * m)
            errs[0].append(100 * (m - lo) if vals else 0)
            errs[1].append(100 * (hi - m) if vals else 0)
        ax.bar(np.arange(len(tasks)) + i * width - 0.4 + width / 2, means, width, yerr=errs, capsize=2, label=name)
    ax.set_xticks(np.arange(len(tasks)), [task_name(t) for t in tasks], rotation=30, ha="right")
    ax.set_ylabel("hidden test score (%)")
    ax.set_ylim(0, max(5.0, 1.15 * max((100 * float(np.max(c["test"])) for cells in table.values()
                                         for c in cells.values() if c["test"]), default=0.0)))
    ax.set_title("Hidden test per task (mean over seeds, 95 % bootstrap interval)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    per_task = folder / "per_task.png"
    fig.savefig(per_task, dpi=110)
    # budget curves, one panel per task
    cols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / cols)
    fig = Figure(figsize=(4 * cols, 3 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, t in zip(axes.flat, tasks, strict=False):
        trs = [r for r in rows if r["task"] == t]
        budget = max(float(r.get("token_budget") or 1) for r in trs)
        top = 5.0
        for name in [n for n in names if n != BASE_ROW]:
            episodes = [pts for r in trs if row_name(r) == name
                        if (pts := budget_curve(out / str(r.get("trajectory", ""))))]
            if not episodes:
                continue
            # every episode's best-so-far at every token count any episode reached (the union of their
            # steps); NaN before an episode's first validation and after its end
            grid = np.unique(np.concatenate([[p[0] for p in pts] for pts in episodes]))
            curves = []
            for pts in episodes:
                xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
                idx = np.searchsorted(xs, grid, side="right") - 1
                curve = np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan)
                curve[grid > xs.max()] = np.nan
                curves.append(curve)
            stacked = np.vstack(curves)
            seen = ~np.all(np.isnan(stacked), axis=0)
            if not seen.any():
                continue
            mean = np.nanmean(stacked[:, seen], axis=0)
            ax.step(grid[seen], 100 * mean, where="post", marker=".", label=name)
            top = max(top, 110 * float(np.nanmax(mean)))
        ax.set_xlim(0, budget)
        ax.set_ylim(0, min(100.0, top))
        ax.set_title(task_name(t), fontsize="medium")
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        ax.set_xlabel("training tokens spent")
        ax.set_ylabel("best validation (%)")
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles, labels = next(iter(axes.flat)).get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small")
    fig.suptitle("Best validation score vs training tokens (mean over seeds)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    curves_path = folder / "budget_curves.png"
    fig.savefig(curves_path, dpi=110)
    return [per_task, curves_path]


def write_leaderboard(out: str | Path, rows: Sequence[dict[str, Any]], tasks: Sequence[str],
                      report: Any = None, plots: bool = True) -> Path:
    """Write ``DIR/results.csv``, ``DIR/leaderboard.md`` and (``plots``) ``DIR/plots/*.png``; returns the .md."""
    out = Path(out)
    write_csv(out / "results.csv", rows)
    if rows and plots:
        plot(out, rows, tasks)
    path = out / "leaderboard.md"
    atomic_write_text(path, markdown(rows, tasks, report) if rows else "# Leaderboard\n\nNo finished episode yet.\n")
    return path


def publish(out: str | Path, page: str | Path) -> Path:
    """Copy ``DIR``'s leaderboard to ``page`` (e.g. ``docs/benchmarks/leaderboard.md``), its plots beside it
    as ``<page stem>_per_task.png`` and ``<page stem>_budget_curves.png``, links rewritten."""
    import shutil

    out, page = Path(out), Path(page)
    text = (out / "leaderboard.md").read_text(encoding="utf-8")
    for name in ("per_task", "budget_curves"):
        src = out / "plots" / f"{name}.png"
        if src.exists():
            shutil.copyfile(src, page.parent / f"{page.stem}_{name}.png")
        text = text.replace(f"(plots/{name}.png)", f"({page.stem}_{name}.png)")
    text = text.replace("# Leaderboard\n", "# Leaderboard\n\n![Hidden test per task]"
                        f"({page.stem}_per_task.png)\n", 1) if (out / "plots" / "per_task.png").exists() else text
    atomic_write_text(page, text)
    return page


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftdojo_benchmarks.leaderboard",
                                     description="Rebuild a sweep folder's results.csv, leaderboard.md and plots.")
    parser.add_argument("out", help="the sweep's results folder")
    parser.add_argument("--publish", metavar="PAGE", default=None,
                        help="also copy the leaderboard and its plots to PAGE (e.g. docs/benchmarks/leaderboard.md)")
    args = parser.parse_args(argv)
    from ftdojo_benchmarks.sweep import ResultStore

    out = Path(args.out)
    saved = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    print(write_leaderboard(out, ResultStore(out).rows(), tasks=saved["config"]["tasks"]))
    if args.publish:
        print(publish(out, args.publish))
    return 0


if __name__ == "__main__":
    sys.exit(main())

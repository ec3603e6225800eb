"""Sweep throughput: 1 vs 2 concurrent episodes on the local pool, and the pool vs Ray, same episodes.

Each configuration runs the *same* planned episodes (Manual SFT with a short
training run, ``--episodes`` seeds of one task) into a fresh results folder,
with the outcome cache off so that every episode really trains, after one
untimed warm-up episode (it computes and caches the base model's scores):

* ``pool-1``: local pool, one episode at a time, all cores for it;
* ``pool-2``: local pool, two at once, ``cores // 2`` threads each;
* ``ray-2``: a local Ray instance with 2 CPUs, ``cpus_per_episode = 1``
  (two at once), results streamed back to the driver.

It reports the aggregate episodes/hour of each, the speed-up of two at once
over one, Ray's overhead per episode against the pool at the same
concurrency, and ends with one line ``RESULT {json}``. Run it on a quiet
machine: other processes competing for the cores change the answer.

    python -m ftdojo_benchmarks.perf.sweep_throughput                       # tiny model, 4 episodes
    python -m ftdojo_benchmarks.perf.sweep_throughput --base-model smollm2-135m --train-steps 8 --episodes 4
    python -m ftdojo_benchmarks.perf.sweep_throughput --no-ray              # pool only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ftdojo_benchmarks.sweep import SweepConfig, run_sweep


def sweep_config(args: argparse.Namespace, backend: str, parallel: int) -> SweepConfig:
    """The benchmark's sweep: Manual SFT, ``args.episodes`` seeds of ``args.task``, one backend."""
    return SweepConfig.model_validate({
        "tasks": [args.task], "seeds": list(range(args.episodes)),
        "agents": [{"name": "manual-sft", "max_steps": args.train_steps, "samples": args.samples,
                    "evaluate_base": False}],
        "env": {"base_model": args.base_model, "eval_limit": args.eval_limit, "token_budget": args.token_budget,
                "outcome_cache": False},
        "run": {"backend": backend, "parallel": parallel, "cpus_per_episode": 1},
    })


def measure(args: argparse.Namespace, name: str, backend: str, parallel: int, console: Console) -> dict:
    """Run one configuration in a fresh folder; wall seconds, episodes/hour and mean episode seconds."""
    with tempfile.TemporaryDirectory(prefix=f"sweep-throughput-{name}-") as out:
        t0 = time.monotonic()
        report = run_sweep(sweep_config(args, backend, parallel), out, console=console, progress=False,
                           leaderboard=False)
        wall = time.monotonic() - t0
        rows = [json.loads(p.read_text()) for p in (Path(out) / "results").glob("*.json")]
    if report.failed:
        raise SystemExit(f"{name}: {report.failed} episodes failed")
    episode_seconds = [float(r["seconds"]) for r in rows]
    return {"name": name, "backend": backend, "parallel": parallel, "episodes": report.done,
            "wall_s": round(wall, 1), "episodes_per_hour": round(3600 * report.done / wall, 1),
            "mean_episode_s": round(sum(episode_seconds) / len(episode_seconds), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", default="tiny", help="tiny (seconds) or smollm2-135m (minutes)")
    parser.add_argument("--task", default="FTDojo/AIME-v0")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per configuration (seeds)")
    parser.add_argument("--train-steps", type=int, default=4, help="optimizer steps of the training run")
    parser.add_argument("--samples", type=int, default=64, help="training rows")
    parser.add_argument("--eval-limit", type=int, default=4)
    parser.add_argument("--token-budget", type=int, default=50_000)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray configuration")
    args = parser.parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    # Warm-up, not timed: the first episode of a task computes the base model's scores (cached on
    # disk after) and warms the file cache; without it the first configuration pays for that.
    warm = argparse.Namespace(**{**vars(args), "episodes": 1})
    measure(warm, "warm-up", "local", 1, console)
    runs = [measure(args, "pool-1", "local", 1, console), measure(args, "pool-2", "local", 2, console)]
    if not args.no_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            console.print("ray is not installed: skipping ray-2 (pip install 'ftdojo-gym[dist]')")
        else:
            runs.append(measure(args, "ray-2", "ray", 2, console))
    by = {r["name"]: r for r in runs}
    result = {
        "base_model": args.base_model, "task": args.task, "episodes": args.episodes, "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "runs": runs,
        "speedup_2_over_1": round(by["pool-2"]["episodes_per_hour"] / by["pool-1"]["episodes_per_hour"], 2),
    }
    if "ray-2" in by:
        result["ray_overhead_s_per_episode"] = round(
            (by["ray-2"]["wall_s"] - by["pool-2"]["wall_s"]) / args.episodes, 2)
    print(f"{'config':<8} {'episodes':>8} {'wall s':>8} {'episodes/h':>11} {'mean episode s':>15}")
    for r in runs:
        print(f"{r['name']:<8} {r['episodes']:>8} {r['wall_s']:>8} {r['episodes_per_hour']:>11} "
              f"{r['mean_episode_s']:>15}")
    print(f"two at once vs one: x{result['speedup_2_over_1']}"
          + (f"; Ray overhead {result['ray_overhead_s_per_episode']} s/episode vs the pool"
             if "ray_overhead_s_per_episode" in result else ""))
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

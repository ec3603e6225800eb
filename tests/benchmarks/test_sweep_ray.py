"""``--backend ray``: the same episodes as Ray tasks on a local Ray cluster started by the test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftdojo_benchmarks.sweep import ResultStore, load_config, plan, run_sweep

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A small local Ray cluster of this process: 2 CPUs, no dashboard, the smallest object store.

    Its workers inherit the environment at start: the outcome cache is off there too, as in every test.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTDOJO_OUTCOME_CACHE", "0")
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False,
                 configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_backend_runs_the_planned_episodes_and_streams_results_back(local_ray: None, tmp_path: Path) -> None:
    config_path = tmp_path / "sweep.toml"
    config_path.write_text("""
tasks = ["FTDojo/AIME-v0"]
seeds = [0]
agents = [
  { name = "random", grounded = true, submit_after = 2 },
  { name = "manual-sft", max_steps = 2, samples = 16, evaluate_base = false },
]
[env]
base_model = "tiny"
eval_limit = 2
token_budget = 5000
[run]
cpus_per_episode = 1
""")
    config = load_config(config_path)
    out = tmp_path / "out"
    report = run_sweep(config, out, backend="ray", progress=False)
    assert (report.planned, report.done, report.failed, report.backend) == (2, 2, 0, "ray")
    rows = ResultStore(out).rows()
    assert sorted(r["key"] for r in rows) == sorted(s.key for s in plan(config))
    assert all(r["backend"] == "ray" and r["threads"] == 1 for r in rows)
    manual = next(r for r in rows if r["agent"] == "manual-sft")
    assert manual["tokens_used"] > 0 and manual["hidden_test_score"] is not None
    for r in rows:  # trajectories were written on the worker and shipped back to the driver's folder
        lines = [json.loads(x) for x in (out / r["trajectory"]).read_text().splitlines()]
        assert lines[0]["sweep_key"] == r["key"] and lines[-1]["type"] == "summary"
    assert "| Manual SFT |" in (out / "leaderboard.md").read_text()
    # the local pool resumes a Ray sweep's folder: same keys, nothing to run
    again = run_sweep(config, out, backend="local", progress=False)
    assert (again.skipped, again.done) == (2, 0)

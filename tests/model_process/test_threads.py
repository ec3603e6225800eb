"""The worker's thread count: an option, default all the cores the process may use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ftdojo_gym.model_process.client import (
    THREAD_VARS,
    ModelWorker,
    available_cores,
    worker_threads,
)


def test_default_is_the_affinity_mask_unless_omp_num_threads_is_set():
    assert available_cores() == len(os.sched_getaffinity(0))
    assert worker_threads(None, {}) == available_cores()
    assert worker_threads(None, {"OMP_NUM_THREADS": "1"}) == 1
    assert worker_threads(None, {"OMP_NUM_THREADS": "junk"}) == available_cores()
    assert worker_threads(3, {"OMP_NUM_THREADS": "1"}) == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_rejected(bad):
    with pytest.raises(ValueError, match="threads"):
        ModelWorker(threads=bad)


def test_the_child_environment_carries_the_thread_count(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = ModelWorker(threads=1)._child_env()
    assert all(env[v] == "1" for v in THREAD_VARS)
    env = ModelWorker()._child_env()
    assert all(env[v] == str(available_cores()) for v in THREAD_VARS)


def test_the_worker_applies_the_count_to_torch():
    """Catches: the env variable set but torch's pool left at its default (all cores)."""
    pytest.importorskip("torch")
    code = ("import os; os.environ['FTDOJO_WORKER_THREADS'] = '1'; import torch; torch.set_num_threads(2); "
            "from ftdojo_gym.model_process.worker import configure_threads; "
            "print(configure_threads(), torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_a_running_worker_gets_the_thread_variables(tmp_path):
    with ModelWorker(threads=1) as w:
        pid = w.ping().pid
        environ = dict(kv.split("=", 1) for kv in
                       open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace").split("\0") if "=" in kv)
    assert environ["OMP_NUM_THREADS"] == "1" and environ["FTDOJO_WORKER_THREADS"] == "1"


def test_the_env_option_reaches_its_worker(tmp_path):
    from ftdojo_gym.env import FTDojoEnv

    env = FTDojoEnv("TableBench", base_model="tiny", worker_threads=1, outcome_cache=False, workdir=tmp_path)
    try:
        assert env._worker.threads == 1
        assert env._worker._child_env()["OMP_NUM_THREADS"] == "1"
    finally:
        env.close()
    with pytest.raises(ValueError, match="threads"):
        FTDojoEnv("TableBench", base_model="tiny", worker_threads=0, outcome_cache=False, workdir=tmp_path)

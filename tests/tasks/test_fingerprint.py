"""The grader fingerprint follows the code that scores a task, and only that code: stored
results go stale when a grader, a helper it calls, a value it reads or the task version
changes, not when another subtask's data generator does."""

from __future__ import annotations

import inspect

import pytest

from ftdojo_gym.grading import chemistry_grading
from ftdojo_gym.tasks import chemistry, make_task
from ftdojo_gym.tasks.chemistry import ChemCoTTask
from ftdojo_gym.tasks.fingerprint import _fingerprint, grader_fingerprint, grading_sources

MOLOPT = "FTDojo/ChemCoT-MolOpt-v0"


@pytest.fixture(autouse=True)
def fresh():
    _fingerprint.cache_clear()
    yield
    _fingerprint.cache_clear()


def edited(monkeypatch, target):
    """Make ``inspect.getsource`` report an edit of ``target``."""
    original = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: original(obj) + ("# edited" if obj is target else ""))


def test_same_code_same_fingerprint_and_every_task_has_one():
    import gymnasium as gym

    import ftdojo_gym  # noqa: F401

    ids = [i for i in gym.registry if i.startswith("FTDojo/")]
    prints = {i: grader_fingerprint(make_task(i)) for i in ids}
    assert all(len(p) == 16 for p in prints.values())
    assert grader_fingerprint(make_task(MOLOPT)) == prints[MOLOPT]
    # different tasks' graders differ (the TableBench envs share one task class and grader)
    assert len(set(prints.values())) >= 6


def test_the_task_version_changes_it(monkeypatch):
    noc = make_task("FTDojo/Patent-NOC4PC-v0")
    before = grader_fingerprint(noc)
    monkeypatch.setattr(noc, "version", "999")  # each patent subtask has its own version
    _fingerprint.cache_clear()
    assert grader_fingerprint(noc) != before


@pytest.mark.parametrize("target", [ChemCoTTask.grade, chemistry_grading.grade_optimization, chemistry_grading])
def test_an_edit_of_the_grader_or_a_helper_it_calls_changes_it(monkeypatch, target):
    before = grader_fingerprint(make_task(MOLOPT))
    edited(monkeypatch, target)
    _fingerprint.cache_clear()
    assert grader_fingerprint(make_task(MOLOPT)) != before


def test_a_data_generator_edit_leaves_it_alone(monkeypatch):
    """MolUnd's question generator builds data (the task version covers it), it grades nothing."""
    before = grader_fingerprint(make_task(MOLOPT))
    assert not any(name.endswith("._molund") for name in grading_sources(ChemCoTTask))
    edited(monkeypatch, chemistry._molund)
    _fingerprint.cache_clear()
    assert grader_fingerprint(make_task(MOLOPT)) == before


def test_a_value_the_grader_reads_counts_by_its_source_not_its_content(monkeypatch):
    """Catches: module-level values left out (a rule table edit would go unnoticed), and values
    hashed by content (a cache the grader fills would change the hash mid-run: an env would
    then refuse the table it just loaded)."""
    from ftdojo_gym.tasks import fingerprint

    sources = grading_sources(ChemCoTTask)
    key = "ftdojo_gym.grading.chemistry_grading.ORACLES"
    assert sources[key].startswith("ORACLES")  # the assigning statement
    before = grader_fingerprint(make_task(MOLOPT))
    monkeypatch.setattr(chemistry_grading, "ORACLES", ("changed", "at", "run time"))
    _fingerprint.cache_clear()
    assert grader_fingerprint(make_task(MOLOPT)) == before
    original = fingerprint._assignments("ftdojo_gym.grading.chemistry_grading")
    monkeypatch.setattr(fingerprint, "_assignments",
                        lambda module: {**original, "ORACLES": original["ORACLES"] + " # edited"}
                        if module == "ftdojo_gym.grading.chemistry_grading" else {})
    _fingerprint.cache_clear()
    assert grader_fingerprint(make_task(MOLOPT)) != before


def test_it_is_the_same_in_every_process():
    """Catches: addresses (``<function at 0x...>``) or set order (per-process string hashing)
    in the hashed text: a table built in one process would be refused by the next."""
    import os
    import subprocess
    import sys

    code = ("import gymnasium as gym, ftdojo_gym; from ftdojo_gym.tasks import make_task; "
            "from ftdojo_gym.tasks.fingerprint import grader_fingerprint; "
            "print(*[grader_fingerprint(make_task(i)) for i in sorted(gym.registry) if i.startswith('FTDojo/')])")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")}
    assert len(runs) == 1 and len(runs.pop().split()) >= 13

"""The outcome cache: a repeated run replays instead of training, charged the same; entries are
checked, shareable, safe across processes, and never hold hidden-test outputs."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time

import gymnasium as gym
import pytest

import ftdojo_gym  # noqa: F401
from ftdojo_gym.observations import latest_result
from ftdojo_gym.outcome_cache import OutcomeCache, export_entries, restore_adapter, run_key

QUICK = {"base_model": "tiny", "eval_limit": 2}
RECIPE = [
    {"tool": "fetch", "args": {"source": "tableinstruct", "limit": 16}},
    {"tool": "transform", "args": {"dataset": "tableinstruct", "prompt_template": "{instruction}\n{input}",
                                   "completion_template": "{output}", "output": "sft"}},
    {"tool": "set_config", "args": {"max_steps": 3, "batch_size": 2, "max_len": 128, "seed": 7}},
    {"tool": "train", "args": {"dataset": "sft"}},
    {"tool": "evaluate", "args": {"run": "run1"}},
    {"tool": "submit", "args": {"run": "run1"}},
]


def _episode(env, seed=0):
    env.reset(seed=seed)
    infos = []
    for action in RECIPE:
        t0 = time.monotonic()
        *_, info = env.step(action)
        assert info["ok"], info
        infos.append((info, time.monotonic() - t0))
    return infos


def test_a_repeated_recipe_replays_from_the_cache_and_is_charged_the_same(tiny_model, isolated_cache, tmp_path):
    path = tmp_path / "outcomes.sqlite"
    env = gym.make("FTDojo/TableBench-v0", workdir=tmp_path / "a", outcome_cache=str(path), **QUICK)
    try:
        first = _episode(env)
        second = _episode(env)
    finally:
        env.close()
    (t1, s1), (t2, s2) = first[3], second[3]
    r1, r2 = latest_result(t1), latest_result(t2)
    assert not t1["cached"] and t2["cached"] and r2.cached
    assert r2.train_tokens == r1.train_tokens == t2["accounting"]["tokens_trained"]  # charged the same
    assert (r2.final_loss, r2.loss_head, r2.steps) == (r1.final_loss, r1.loss_head, r1.steps)
    assert "replayed from the outcome cache" in r2.render()
    assert s2 < s1  # no training happened
    e1, e2 = latest_result(first[4][0]), latest_result(second[4][0])
    assert second[4][0]["cached"] and e2.score == e1.score
    assert [w.output for w in e2.wrong_answers] == [w.output for w in e1.wrong_answers]
    assert second[5][0]["submission"]["hidden_test_score"] == first[5][0]["submission"]["hidden_test_score"]
    db = sqlite3.connect(path)
    hidden = [json.loads(v) for (s, v) in db.execute("SELECT split, value FROM evaluations") if s.startswith("hidden")]
    assert hidden and all("outputs" not in v for v in hidden)  # hidden-test outputs are never stored


def test_another_config_or_the_cache_off_trains_for_real(tiny_model, isolated_cache, tmp_path):
    path = tmp_path / "outcomes.sqlite"
    env = gym.make("FTDojo/TableBench-v0", workdir=tmp_path / "a", outcome_cache=str(path), **QUICK)
    try:
        _episode(env)
        RECIPE[2]["args"]["seed"] = 8
        try:
            assert not _episode(env)[3][0]["cached"]
        finally:
            RECIPE[2]["args"]["seed"] = 7
    finally:
        env.close()
    off = gym.make("FTDojo/TableBench-v0", workdir=tmp_path / "b", outcome_cache=False, **QUICK)
    try:
        assert not _episode(off)[3][0]["cached"]
    finally:
        off.close()


def _key(i: int = 0) -> str:
    return run_key(rows=[{"prompt": "p", "completion": str(i)}], config={"lr": 1}, debug=False, base_model="m",
                   task="t", task_version="1", data_seed=0)


def test_keys_cover_rows_config_model_task_and_seed():
    base = dict(rows=[{"prompt": "p", "completion": "c"}], config={"seed": 1}, debug=False, base_model="m",
                task="t", task_version="1", data_seed=0)
    keys = {run_key(**base)}
    for change in ({"rows": [{"prompt": "p", "completion": "d"}]}, {"config": {"seed": 2}}, {"debug": True},
                   {"base_model": "n"}, {"task": "u"}, {"task_version": "2"}, {"data_seed": 1}):
        keys.add(run_key(**{**base, **change}))
    assert len(keys) == 8


def test_keys_change_with_the_training_path_revision_except_table_keys(monkeypatch):
    """Catches: outcomes cached by an older training path (other numerics) served as this one's,
    or a shipped table's keys (measured once, with their own recorded versions) moved by it."""
    from ftdojo_gym import outcome_cache

    base = dict(rows=[{"prompt": "p", "completion": "c"}], config={"seed": 1}, debug=False, base_model="m",
                task="t", task_version="1", data_seed=0)
    live, table = run_key(**base), run_key(**base, libraries=False)
    monkeypatch.setattr(outcome_cache, "TRAIN_PATH_REVISION", outcome_cache.TRAIN_PATH_REVISION + 1)
    assert run_key(**base) != live
    assert run_key(**base, libraries=False) == table


def test_keys_change_with_the_precision_training_runs_in_except_table_keys(monkeypatch):
    """Catches: a run trained under bf16 autocast on one machine served as the fp32 run of
    another (the choice is measured per machine), or table keys moved by it."""
    from ftdojo_gym.model_process import resident

    base = dict(rows=[{"prompt": "p", "completion": "c"}], config={"seed": 1}, debug=False, base_model="m",
                task="t", task_version="1", data_seed=0)
    monkeypatch.setattr(resident, "_gpu_visible", lambda: False)
    keys, tables = set(), set()
    for fast in (True, False):
        monkeypatch.setattr(resident, "cpu_has_fast_bf16", lambda fast=fast: fast)
        keys.add(run_key(**base))
        tables.add(run_key(**base, libraries=False))
    assert len(keys) == 2 and len(tables) == 1


def test_corrupt_or_foreign_entries_are_ignored_and_dropped(tmp_path):
    cache = OutcomeCache(tmp_path / "c.sqlite")
    cache.put_run(_key(), {"status": "ok", "train_tokens": 5}, None)
    cache.put_evaluation(_key(), "validation:x", {"outputs": ["a"], "seconds": 1.0})
    assert cache.get_run(_key()).result["train_tokens"] == 5
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute("UPDATE runs SET result = ?", (json.dumps({"status": "ok", "train_tokens": 1}),))
    db.execute("UPDATE evaluations SET format = 0")
    db.commit()
    assert cache.get_run(_key()) is None and cache.get_evaluation(_key(), "validation:x") is None
    assert cache.stats()["runs"] == 0 and cache.stats()["evaluations"] == 0
    with pytest.raises(ValueError, match="never stored"):
        cache.put_evaluation(_key(), "hidden_test@x", {"outputs": ["leak"], "score": 1.0})


def test_export_and_merge_share_entries_with_their_adapters(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00weights")
    a = OutcomeCache(tmp_path / "a.sqlite")
    a.put_run(_key(1), {"status": "ok"}, adapter)
    a.put_evaluation(_key(1), "validation:x", {"outputs": ["o"], "seconds": 0.5})
    assert export_entries(a, tmp_path / "export.jsonl") == 2
    (tmp_path / "export.jsonl").write_text((tmp_path / "export.jsonl").read_text() + "not json\n")
    b = OutcomeCache(tmp_path / "b.sqlite")
    assert b.merge(tmp_path / "export.jsonl") == 2
    assert b.merge(tmp_path / "a.sqlite") == 0  # nothing new
    hit = b.get_run(_key(1))
    restored = restore_adapter(hit.adapter, tmp_path / "restored")
    assert (restored / "adapter_model.safetensors").read_bytes() == b"\x00weights"
    assert b.get_evaluation(_key(1), "validation:x")["outputs"] == ["o"]
    with pytest.raises(ValueError, match="bad file name"):
        restore_adapter({"../escape": b"x"}, tmp_path / "r2")


def _writer(path: str, start: int) -> None:
    cache = OutcomeCache(path)
    for i in range(start, start + 50):
        cache.put_run(_key(i), {"status": "ok", "i": i}, None)


def test_concurrent_writers_in_several_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    OutcomeCache(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k * 50)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = OutcomeCache(path)
    assert cache.stats()["runs"] == 150
    assert all(cache.get_run(_key(i)).result["i"] == i for i in range(150))

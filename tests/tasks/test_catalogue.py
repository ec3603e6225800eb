"""The task catalogue: the 13 paper tasks, list_tasks, unknown ids, real-data loading."""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import pytest

import ftdojo_gym
from ftdojo_gym.recipes import task_recipes
from ftdojo_gym.tasks import TASK_CATALOGUE, closest_ids, make_task
from ftdojo_gym.tasks.base import HubUnavailableError, RealDataTask
from ftdojo_gym.utils import check_task

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hub"
PAPER_IDS = {
    "FTDojo/AIME-v0", "FTDojo/Patent-PAR4PC-v0", "FTDojo/Patent-PI4PC-v0", "FTDojo/Patent-NOC4PC-v0",
    "FTDojo/ChemCoT-MolUnd-v0", "FTDojo/ChemCoT-MolEdit-v0", "FTDojo/ChemCoT-MolOpt-v0",
    "FTDojo/ChemCoT-Reaction-v0", "FTDojo/FinanceIQ-v0", "FTDojo/TableBench-FactChecking-v0",
    "FTDojo/TableBench-NumericalReasoning-v0", "FTDojo/TableBench-DataAnalysis-v0",
    "FTDojo/TableBench-Visualization-v0",
}


def test_the_13_paper_tasks_and_the_union_are_registered_and_listed():
    listed = {t["env_id"]: t for t in ftdojo_gym.list_tasks()}
    assert set(listed) == PAPER_IDS | {"FTDojo/TableBench-v0"}
    assert all(i in gym.registry for i in listed)
    domains = {t["domain"] for t in listed.values()}
    assert domains == {"Math", "Patent", "Chemistry", "Finance", "Table QA"}
    assert all(t["metric"] for t in listed.values())


@pytest.mark.parametrize(("typed", "expected"), [
    ("FTDojo/aime-v0", "FTDojo/AIME-v0"),
    ("TableBench-v0", "FTDojo/TableBench-v0"),
    ("FTDojo/Patnt-PI4PC-v0", "FTDojo/Patent-PI4PC-v0"),
    ("ftdojo_gym:FTDojo/FinanceIQ-v1", "FTDojo/FinanceIQ-v0"),
])
def test_an_unknown_id_gives_gymnasiums_error_plus_the_closest_ids(typed, expected):
    with pytest.raises(gym.error.Error) as err:
        ftdojo_gym.make(typed)
    assert "doesn't exist" in str(err.value)  # Gymnasium's own message is kept
    assert "Closest FT-Dojo ids:" in str(err.value) and expected in str(err.value)
    assert closest_ids(typed.split(":")[-1])[0] == expected


def test_plain_gym_make_keeps_gymnasiums_own_error():
    with pytest.raises(gym.error.Error) as err:
        gym.make("FTDojo/aime-v0")
    assert "doesn't exist" in str(err.value) and "FT-Dojo" not in str(err.value)


def test_unrelated_ids_get_no_ftdojo_hint():
    with pytest.raises(gym.error.Error) as err:
        ftdojo_gym.make("CartPol-v1")
    assert "FT-Dojo" not in str(err.value)


def test_make_task_unknown_name_suggests():
    with pytest.raises(ValueError, match="Did you mean FTDojo/TableBench-v0"):
        make_task("TableBench-v0x")


def test_tablebench_real_schema_fixture_maps_to_the_task_format():
    task = make_task("TableBench", data=str(FIXTURES / "TableBench"))
    assert isinstance(task, RealDataTask) and "+real-" in task.version
    items = task.eval_items(0)
    # Direct-prompting rows only, one per id; every official chart type (scatter too) is graded.
    assert len(items) == 9 and len({i.id for i in items}) == 9
    assert [i.subset for i in items[:4]] == ["FactChecking", "NumericalReasoning", "DataAnalysis", "Visualization"]
    assert items[0].prompt.splitlines()[1:5] == ["team,wins,losses", "hawks,10,2", "owls,7,5", "rams,3,9"]
    assert task.grade(items, [i.reference for i in items]) == [1.0] * 9
    assert task.grade(items[:2], ["Final Answer: No", "Final Answer: 999"]) == [0.0, 0.0]
    sources = task.sources(0)
    assert list(sources) == ["tableinstruct"]
    row = sources["tableinstruct"][0]
    assert set(row) == {"instruction", "input", "output", "subset"} and row["output"].startswith("Final Answer: ")
    assert task_recipes(task).clean_sources == ("tableinstruct",)


def test_subset_tasks_keep_only_their_subset_of_real_data():
    task = make_task("TableBench-Visualization", data=str(FIXTURES / "TableBench"))
    items = task.eval_items(0)
    assert {i.subset for i in items} == {"Visualization"} and len(items) == 3


def test_env_runs_on_a_local_copy_of_the_real_data(tiny_model, isolated_cache):
    env = gym.make("FTDojo/TableBench-v0", data=str(FIXTURES / "TableBench"), base_model="tiny", eval_batch_size=8)
    obs, info = env.reset(seed=0)
    obs, _, _, _, info = env.step({"tool": "list_sources", "args": {}})
    assert info["ok"] and "tableinstruct" in obs["log"]
    obs, _, _, _, info = env.step({"tool": "evaluate", "args": {"run": "base"}})
    assert info["ok"] and info["result"]["n"] == 4
    env.close()


def test_hub_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    start = time.monotonic()
    with pytest.raises(HubUnavailableError, match="cannot be reached.*data='offline'"):
        make_task("TableBench", data="hub")
    assert time.monotonic() - start < 10


def test_local_folder_errors_name_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tablebench.jsonl"):
        make_task("TableBench", data=str(tmp_path))
    with pytest.raises(ValueError, match="'offline', 'hub' or a folder"):
        make_task("TableBench", data=str(tmp_path / "missing"))


def test_real_data_task_passes_check_task():
    task = make_task("TableBench", data=str(FIXTURES / "TableBench"))
    report = check_task(task)  # real data need not have six sources
    assert report.n_items == 9 and report.sources == {"tableinstruct": 8}


def test_every_catalogue_entry_builds_and_has_a_card():
    for entry in TASK_CATALOGUE:
        task = entry.build()
        assert task.name == entry.task_name
        assert "Description" in (type(task).__doc__ or ""), entry.env_id


def _real_fixture(task_name: str, *, splits: bool = False) -> Path:
    """The real-shaped fixture folder of a catalogue task (with ``splits``, for ChemCoT the
    benchmark's per-subtask layout, whose splits hold a Murcko scaffold item)."""
    if task_name.startswith("TableBench"):
        return FIXTURES / "tablebench_official"  # the official example predictions' items
    if splits and task_name.startswith("ChemCoT"):
        return FIXTURES / "ChemCoTBench-subtasks"
    return FIXTURES / task_name


@pytest.mark.parametrize("entry", TASK_CATALOGUE, ids=lambda e: e.env_id)
def test_real_gold_answers_fit_their_generation_limits(entry, token_counter) -> None:
    """Every real-shaped item's gold completion fits the generation limit the env gives it
    (SmolLM2's tokenizer), so a perfect model can score 1.0 on real data."""
    real = make_task(entry.task_name, data=str(_real_fixture(entry.task_name)))
    items = real.eval_items(0)
    assert items
    too_long = [(i.id, len(token_counter.encode(i.reference).ids), real.max_new_tokens_for(i)) for i in items
                if len(token_counter.encode(i.reference).ids) > real.max_new_tokens_for(i)]
    assert too_long == []


@pytest.mark.parametrize("entry", TASK_CATALOGUE, ids=lambda e: e.env_id)
def test_real_gold_answers_score_one_through_the_env(entry, tiny_model, isolated_cache, token_counter, tmp_path,
                                                     monkeypatch) -> None:
    """A model that writes each real item's gold completion, cut at the item's generation
    limit, scores 1.0 on validation (``evaluate``) and on the hidden test (``submit``)."""
    from ftdojo_gym.grading.sandbox import sandbox_unavailable
    from ftdojo_gym.model_process.client import ModelWorker
    from ftdojo_gym.model_process.protocol import GenerateResult

    folder = _real_fixture(entry.task_name, splits=True)
    real = make_task(entry.task_name, data=str(folder))
    if "Visualization" in {i.subset for i in real.eval_items(0)} and sandbox_unavailable() is not None:
        pytest.skip(f"no sandbox: {sandbox_unavailable()}")
    gold = {item.prompt: item.reference for item in real.eval_items(0)}

    def gold_model(self, model, adapter, prompts, max_new_tokens, **kwargs):
        outputs = [token_counter.decode(token_counter.encode(gold[p]).ids[:limit])
                   for p, limit in zip(prompts, max_new_tokens, strict=True)]
        return GenerateResult(status="ok", outputs=outputs, seconds=0.0)

    monkeypatch.setattr(ModelWorker, "generate", gold_model)
    env = gym.make(entry.env_id, data=str(folder), workdir=tmp_path / "ws", base_model="tiny")
    try:
        env.reset(seed=0)
        _, _, _, _, info = env.step({"tool": "evaluate", "args": {"run": "base"}})
        assert info["ok"] and info["result"]["score"] == pytest.approx(1.0), info["result"]
        _, reward, terminated, _, info = env.step({"tool": "submit", "args": {}})
        assert terminated and info["ok"] and reward == pytest.approx(1.0), info
    finally:
        env.close()

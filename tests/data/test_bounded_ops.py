"""Red team: no data operation can stall the env (agent-written regexes, huge inputs).

Bounds are asserted in CPU seconds of this process: the engine stops on the wall
clock, which only makes it stop sooner, and a machine busy with other work
must not fail the test."""

from __future__ import annotations

import time

import pytest
from datasets import Dataset

from ftdojo_gym.data import workspace as workspace_module
from ftdojo_gym.data.workspace import DataWorkspace
from ftdojo_gym.errors import DataError

#: Patterns that backtrack catastrophically in Python's `re` (the first two hung the env for good).
HOSTILE = [r"(\w+\s?)+$", r"(.*)*@", r"(a|aa)+$", r"(a+)+b", r"^(([a-z])+.)+[A-Z]([a-z])+$"]


@pytest.fixture
def ws(tmp_path, token_counter):
    rows = [{"text": "a" * 40 + "!", "other": "word " * 30 + "!"} for _ in range(50)]
    return DataWorkspace({"src": Dataset.from_list(rows)}, token_counter, tmp_path)


@pytest.mark.parametrize("pattern", HOSTILE)
def test_a_hostile_regex_returns_within_two_seconds(ws, pattern):
    ws.fetch("src", None, None, 0, False, 0)
    t0 = time.process_time()
    try:
        ds, dropped = ws.filter("src", "out", regex=pattern)
        assert len(ds) + dropped == 50
    except DataError as exc:  # a timeout is a DATA error naming the pattern, never a hang
        assert ("regex" in str(exc) and "longer than" in str(exc)) or "would be empty" in str(exc)
    assert time.process_time() - t0 < 2.0  # CPU seconds: robust to a busy machine


def test_a_regex_that_cannot_finish_is_a_data_error(ws):
    ws.fetch("src", None, None, 0, False, 0)
    t0 = time.process_time()
    with pytest.raises(DataError, match="catastrophic backtracking"):
        ws.filter("src", "out", regex=r"(a|aa)+$", regex_field="text")
    assert time.process_time() - t0 < 2.0  # CPU seconds: robust to a busy machine


def test_invalid_regexes_are_data_errors(ws):
    ws.fetch("src", None, None, 0, False, 0)
    for pattern in ("(", "[a-", "a{99999999999}", "\\"):
        with pytest.raises(DataError, match="invalid regex"):
            ws.filter("src", "out", regex=pattern)


def test_every_row_loop_has_a_deadline(ws, monkeypatch):
    """With the bound at zero, each row-wise operation stops with a DATA error instead of running on."""
    ws.fetch("src", None, None, 0, False, 0)
    monkeypatch.setattr(workspace_module, "DATA_OP_TIMEOUT_S", 0.0)
    for kwargs in ({"rules": ["non_empty"]}, {"dedupe": True}, {"field": "text", "op": "contains", "value": "a"}):
        with pytest.raises(DataError, match="longer than"):
            ws.filter("src", "out", **kwargs)
    with pytest.raises(DataError, match="longer than"):
        ws.transform("src", "{text}", "{other}", "sft")

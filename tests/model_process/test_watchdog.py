"""The watchdog on the model process: a stopped or silent child is found and killed within the
stall bound, with or without a timeout; the error class says what happened."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ftdojo_gym.model_process import client as client_module
from ftdojo_gym.model_process.client import ModelWorker, oom_kill_count, process_state
from ftdojo_gym.model_process.protocol import HEARTBEAT_INTERVAL_S, TrainRequest

from .test_worker import request, toy_rows, write_jsonl

#: A stand-in child that answers ping, then reads a request and goes silent forever (a deadlock).
SILENT_CHILD = """
import json, sys, time
from ftdojo_gym.model_process.protocol import PingResult, ReplyLine, RequestLine
for line in sys.stdin:
    req = RequestLine.decode(line)
    if req.request.OP == "ping":
        sys.stdout.write(ReplyLine(req.id, "ping", PingResult(status="ok", pid=0)).encode()); sys.stdout.flush()
        continue
    time.sleep(3600)
"""


@pytest.fixture
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", toy_rows(40))


def test_a_sigstopped_worker_is_detected_without_a_time_limit(tiny_model, data, tmp_path):
    with ModelWorker(stall_timeout_s=6) as w:
        pid = w.ping().pid

        def stop_on_first_log(event):
            if event["event"] == "log":
                os.kill(pid, signal.SIGSTOP)

        t0 = time.monotonic()
        res = w.train(request(tiny_model, data, tmp_path / "o", config={"max_steps": 10_000}),
                      on_event=stop_on_first_log, timeout=None)
        elapsed = time.monotonic() - t0
        assert res.status == "error" and res.error_class == "ENV", res
        assert "stopped responding" in res.error and "SIGSTOP" in res.error
        assert elapsed < 6 + 20  # the stall bound plus the run's first step
        assert res.train_tokens > 0  # the steps before the stop are charged
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # killed and reaped
        assert w.ping().status == "ok"  # and replaced


def test_a_silent_child_is_killed_as_hung(tmp_path):
    with ModelWorker(command=(sys.executable, "-c", SILENT_CHILD), stall_timeout_s=3) as w:
        assert w.ping().status == "ok"
        t0 = time.monotonic()
        res = w.train(TrainRequest(base_model="tiny", data_path=str(tmp_path / "x"), output_dir=str(tmp_path / "o"),
                                   config={}), timeout=None)
        assert res.error_class == "ENV" and "hung or deadlocked" in res.error, res
        assert 3 <= time.monotonic() - t0 < 8


def test_a_busy_worker_keeps_beating_and_is_not_killed(tiny_model, data, tmp_path):
    """A run that sends no log event for longer than the stall bound survives: the heartbeats
    prove it alive (the model load before the first step alone outlasts 2.5 heartbeats here)."""
    with ModelWorker(stall_timeout_s=HEARTBEAT_INTERVAL_S * 1.25) as w:
        w.ping()
        t0 = time.monotonic()
        res = w.train(request(tiny_model, data, tmp_path / "o", config={"max_steps": 15, "batch_size": 8}))
    assert res.status == "ok", res
    assert time.monotonic() - t0 > HEARTBEAT_INTERVAL_S * 1.25


def test_sigkill_is_oom_only_when_the_kernel_counted_an_oom_kill(tiny_model, data, tmp_path, monkeypatch):
    if oom_kill_count() is None:
        pytest.skip("/proc/vmstat has no oom_kill counter here")
    killed: list[int] = []
    # The counter moves between the op's start and the kill's discovery: the OOM killer acted.
    monkeypatch.setattr(client_module, "oom_kill_count", lambda: 6 if killed else 5)
    with ModelWorker() as w:
        pid = w.ping().pid

        def kill(event):
            if event["event"] == "log" and not killed:
                killed.append(pid)
                os.kill(pid, signal.SIGKILL)

        res = w.train(request(tiny_model, data, tmp_path / "o", config={"max_steps": 500}), on_event=kill)
    assert res.error_class == "OOM" and "out-of-memory killer" in res.error


def test_process_state_reads_stopped():
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    try:
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while process_state(pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_state(pid) == "T"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert process_state(pid) is None

"""bf16 on a CPU only where it is measured faster than fp32 (``model_process.cpu_bf16``)."""

from __future__ import annotations

import json
import sys

import pytest

from ftdojo_gym.model_process import cpu_bf16, resident


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """A fresh decision: nothing remembered in this process, a private cache folder, no override."""
    monkeypatch.setattr(cpu_bf16, "_decided", {})
    monkeypatch.setenv("FTDOJO_CACHE", str(tmp_path))
    monkeypatch.delenv(cpu_bf16.ENV_VAR, raising=False)

    def cpuinfo(text):
        monkeypatch.setattr(cpu_bf16.Path, "read_text", lambda self, *a, **k:
                            text if str(self) == "/proc/cpuinfo" else _real_read_text(self, *a, **k))
    return cpuinfo


_real_read_text = cpu_bf16.Path.read_text
XEON = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 avx512_bf16\n"


def measured(monkeypatch, speedup):
    """Make the timing return ``speedup`` and count how often it runs."""
    calls = []

    def fake(*a, **k):
        calls.append(1)
        return {"fp32_gflops": 100.0, "bf16_gflops": 100.0 * speedup, "speedup": speedup}

    monkeypatch.setattr(cpu_bf16, "measure", fake)
    monkeypatch.setattr(cpu_bf16, "_measure_in_child", fake)
    return calls


def test_bf16_instructions_are_read_from_the_cpu_flags(cpu, monkeypatch):
    cpu("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert cpu_bf16.has_bf16_instructions() is True
    cpu("flags\t\t: fpu amx_bf16\n")
    assert cpu_bf16.has_bf16_instructions() is True
    cpu("model name : avx512_bf16 in the name only\nflags\t\t: fpu avx2\n")
    assert cpu_bf16.has_bf16_instructions() is False
    cpu("no flags line\n")
    assert cpu_bf16.has_bf16_instructions() is False

    def unreadable(self, *a, **k):
        raise OSError("no /proc")

    monkeypatch.setattr(cpu_bf16.Path, "read_text", unreadable)
    assert cpu_bf16.has_bf16_instructions() is False and cpu_bf16.cpu_info() == ("", frozenset())


@pytest.mark.parametrize("speedup, fast", [(4.0, True), (1.25, True), (1.1, False), (0.53, False)])
def test_bf16_is_chosen_only_where_it_is_measured_faster(cpu, monkeypatch, speedup, fast):
    """Catches: bf16 chosen from the flags alone (on an Intel VM with avx512_bf16, bf16 products
    ran at half the fp32 rate and training 1.5x slower)."""
    cpu(XEON)
    measured(monkeypatch, speedup)
    assert cpu_bf16.fast_bf16() is fast
    assert resident.cpu_has_fast_bf16() is fast


def test_no_bf16_instructions_means_fp32_without_measuring(cpu, monkeypatch):
    cpu("flags\t\t: fpu avx2\n")
    calls = measured(monkeypatch, 4.0)
    assert cpu_bf16.fast_bf16() is False and calls == []


def test_the_override_wins_and_a_bad_value_is_refused(cpu, monkeypatch):
    cpu(XEON)
    calls = measured(monkeypatch, 0.5)
    monkeypatch.setenv(cpu_bf16.ENV_VAR, "1")
    assert cpu_bf16.fast_bf16() is True
    cpu("flags\t\t: fpu avx2\n")
    assert cpu_bf16.fast_bf16() is True  # asked for: emulated bf16 is the user's choice
    monkeypatch.setenv(cpu_bf16.ENV_VAR, "0")
    cpu(XEON)
    measured(monkeypatch, 4.0)
    assert cpu_bf16.fast_bf16() is False
    assert calls == []
    monkeypatch.setenv(cpu_bf16.ENV_VAR, "yes")
    with pytest.raises(ValueError, match="FTDOJO_CPU_BF16 must be 1, 0 or auto"):
        cpu_bf16.fast_bf16()
    monkeypatch.setenv(cpu_bf16.ENV_VAR, "auto")
    assert cpu_bf16.fast_bf16() is True


def test_the_measurement_is_made_once_per_machine_and_kept_on_disk(cpu, monkeypatch, tmp_path):
    """Catches: a timing per call or per process (seconds each, and a choice that could flip
    between two processes of one sweep), or a cache shared by two different machines."""
    cpu(XEON)
    calls = measured(monkeypatch, 2.0)
    assert cpu_bf16.fast_bf16()
    stored = json.loads((tmp_path / cpu_bf16.CACHE_FILE).read_text())
    assert stored == {cpu_bf16.machine_key(): {"fp32_gflops": 100.0, "bf16_gflops": 200.0, "speedup": 2.0}}
    (tmp_path / cpu_bf16.CACHE_FILE).unlink()  # this process remembers its answer
    assert cpu_bf16.fast_bf16() and len(calls) == 1
    (tmp_path / cpu_bf16.CACHE_FILE).write_text(json.dumps(stored))
    monkeypatch.setattr(cpu_bf16, "_decided", {})  # a new process on the same machine reads the file
    assert cpu_bf16.fast_bf16() and len(calls) == 1
    cpu(XEON.replace("Xeon", "EPYC"))  # another machine (or a new torch) measures again
    measured(monkeypatch, 0.5)
    assert cpu_bf16.fast_bf16() is False
    assert len(json.loads((tmp_path / cpu_bf16.CACHE_FILE).read_text())) == 2


@pytest.mark.parametrize("junk", ["not json", "[1, 2]", '{"KEY": {"speedup": "fast"}}', '{"KEY": {"fp32_gflops": 1, "bf16_gflops": 1, "speedup": -1}}'])
def test_a_corrupt_cache_file_is_measured_over(cpu, monkeypatch, tmp_path, junk):
    cpu(XEON)
    (tmp_path / cpu_bf16.CACHE_FILE).write_text(junk.replace("KEY", cpu_bf16.machine_key()))
    calls = measured(monkeypatch, 2.0)
    assert cpu_bf16.fast_bf16() is True and len(calls) == 1
    assert json.loads((tmp_path / cpu_bf16.CACHE_FILE).read_text())[cpu_bf16.machine_key()]["speedup"] == 2.0


def test_a_failed_measurement_means_fp32(cpu, monkeypatch, tmp_path):
    cpu(XEON)
    monkeypatch.setattr(cpu_bf16, "_measure_in_child", lambda: None)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # measured in a child process
    assert cpu_bf16.fast_bf16() is False
    assert not (tmp_path / cpu_bf16.CACHE_FILE).exists()


def test_the_child_process_measures_for_a_process_without_torch(cpu, monkeypatch):
    """The real child (``python -m ftdojo_gym.model_process.cpu_bf16``): both rates positive and
    the speedup their ratio; its answer is parsed, and a failing child gives None."""
    probe = cpu_bf16._measure_in_child()
    assert probe is not None and probe["fp32_gflops"] > 0 and probe["bf16_gflops"] > 0
    assert probe["speedup"] == pytest.approx(probe["bf16_gflops"] / probe["fp32_gflops"], rel=0.01)
    monkeypatch.setattr(cpu_bf16.sys, "executable", "/nonexistent/python")
    assert cpu_bf16._measure_in_child() is None


def test_a_timing_that_raises_in_this_process_means_fp32(cpu, monkeypatch, tmp_path):
    cpu(XEON)

    def broken(*a, **k):
        raise RuntimeError("no CPU generator on this default device")

    monkeypatch.setattr(cpu_bf16, "measure", broken)
    pytest.importorskip("torch")  # measured in this process
    assert cpu_bf16.fast_bf16() is False
    assert not (tmp_path / cpu_bf16.CACHE_FILE).exists()


def test_the_worker_trains_in_the_precision_its_environment_decided(monkeypatch):
    """Catches: the worker deciding bf16 again on its own (a second timing, at its own thread
    count and load) while the environment keyed its cached outcomes with the first decision."""
    from ftdojo_gym.model_process.client import ModelWorker

    monkeypatch.delenv(cpu_bf16.ENV_VAR, raising=False)
    for fast, flag in ((True, "1"), (False, "0")):
        monkeypatch.setattr(resident, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert ModelWorker()._child_env()[cpu_bf16.ENV_VAR] == flag
    monkeypatch.setenv(cpu_bf16.ENV_VAR, "1")  # the user's choice goes through as it is
    assert ModelWorker()._child_env()[cpu_bf16.ENV_VAR] == "1"

"""The training worker through its client: real (tiny-model) runs, errors as values, crashes."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest

from ftdojo_gym.model_process.client import ModelWorker
from ftdojo_gym.model_process.protocol import TrainRequest

LORA = {"method": "lora", "batch_size": 4, "max_steps": 3, "learning_rate": 1e-3, "max_len": 256}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def toy_rows(n: int) -> list[dict]:
    return [{"prompt": f"What is {i} plus {i % 7}?", "completion": f"Final Answer: {i + i % 7}"}
            for i in range(n)]


@pytest.fixture(scope="module")
def worker():
    w = ModelWorker()
    yield w
    w.close()


@pytest.fixture
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", toy_rows(40))


def request(tiny: str, data: Path, out: Path, **kw) -> TrainRequest:
    config = {**LORA, **kw.pop("config", {})}
    return TrainRequest(base_model=tiny, data_path=str(data), output_dir=str(out), config=config, **kw)


def test_lora_run_streams_logs_counts_tokens_and_saves_adapter(worker, tiny_model, data, tmp_path):
    events = []
    res = worker.train(request(tiny_model, data, tmp_path / "out"), on_event=events.append)
    assert res.status == "ok", res.traceback
    assert res.error_class is None and res.steps == 3
    logs = [e for e in events if e["event"] == "log"]
    assert [e["step"] for e in logs] == [1, 2, 3]
    assert all(math.isfinite(e["loss"]) and e["learning_rate"] > 0 for e in logs)
    tokens = [e["tokens"] for e in logs]
    assert tokens == sorted(tokens) and tokens[0] > 0
    assert res.train_tokens == tokens[-1]
    # 3 batches of 4 short chat-formatted samples: tens of tokens each, never padding
    assert 12 * 20 < res.train_tokens < 12 * 80
    assert res.samples == 40
    assert [p[0] for p in res.loss_head] == [1, 2, 3] and res.loss_tail == []
    assert res.final_loss == pytest.approx(logs[-1]["loss"])
    assert res.model_dir == str(tmp_path / "out")
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert 0 < res.train_seconds <= res.seconds
    assert len(res.warnings) <= 11


def test_full_fine_tuning_saves_a_model(worker, tiny_model, data, tmp_path):
    res = worker.train(request(tiny_model, data, tmp_path / "full", config={"method": "full", "max_steps": 2,
                                                                         "learning_rate": 1e-4}))
    assert res.status == "ok", res.traceback
    assert res.steps == 2
    assert (tmp_path / "full" / "config.json").is_file()
    assert (tmp_path / "full" / "model.safetensors").is_file()
    assert not (tmp_path / "full" / "adapter_config.json").exists()


def test_debug_run_uses_about_100_samples_and_a_few_steps(worker, tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "big.jsonl", toy_rows(300))
    res = worker.train(request(tiny_model, data, tmp_path / "dbg", debug=True,
                               config={"max_steps": 0, "num_epochs": 3.0, "batch_size": 8}))
    assert res.status == "ok", res.traceback
    assert res.samples == 100
    assert 1 <= res.steps <= 4


def test_max_samples_truncates_with_a_warning(worker, tiny_model, data, tmp_path):
    res = worker.train(request(tiny_model, data, tmp_path / "o", max_samples=10, config={"max_steps": 1}))
    assert res.status == "ok", res.traceback
    assert res.samples == 10
    assert any("first 10 of 40" in w for w in res.warnings)


@pytest.mark.parametrize("rows, text", [
    ([{"prompt": "hi"}], "completion"),
    ([{"question": "hi", "answer": "yo"}], "prompt"),
    ([{"prompt": "", "completion": "  "}], "no usable sample"),
    ([], "empty"),
])
def test_data_errors(worker, tiny_model, tmp_path, rows, text):
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    res = worker.train(request(tiny_model, data, tmp_path / "o"))
    assert res.status == "error" and res.error_class == "DATA", res
    assert text in res.error
    assert res.model_dir is None and res.steps == 0


def test_missing_file_is_a_data_error(worker, tiny_model, tmp_path):
    res = worker.train(request(tiny_model, tmp_path / "nope.jsonl", tmp_path / "o"))
    assert res.error_class == "DATA" and "not found" in res.error


def test_prompts_longer_than_max_len_leave_zero_samples(worker, tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "word " * 200, "completion": "ok"}] * 4)
    res = worker.train(request(tiny_model, data, tmp_path / "o", config={"max_len": 32}))
    assert res.error_class == "DATA" and "max_len" in res.error


@pytest.mark.parametrize("config", [{"lora_targets": ["no_such_proj"]}, {"learning_rate": -1.0},
                                    {"unknown_knob": 3}])
def test_config_errors(worker, tiny_model, data, tmp_path, config):
    res = worker.train(request(tiny_model, data, tmp_path / "o", config=config))
    assert res.status == "error" and res.error_class == "CONFIG", res
    assert res.traceback  # the first traceback is reported, bounded
    assert len(res.traceback) <= 4000


def test_token_budget_stops_the_run(worker, tiny_model, data, tmp_path):
    res = worker.train(request(tiny_model, data, tmp_path / "o", max_tokens=300,
                               config={"max_steps": 50}))
    assert res.status == "stopped_budget", res.traceback
    assert 300 <= res.train_tokens < 300 + 4 * 80  # overshoot below one batch
    assert res.steps < 50
    assert (tmp_path / "o" / "adapter_config.json").is_file()  # the partial run is still saved


def test_generate_through_the_worker(worker, tiny_model):
    seen = []
    res = worker.generate(tiny_model, None, ["Hi", "What is 2+2?", "Tell me a story"], 5, batch_size=2,
                          on_progress=lambda d, t: seen.append((d, t)))
    assert res.status == "ok", res.traceback
    assert len(res.outputs) == 3 and all(isinstance(o, str) for o in res.outputs)
    assert seen[-1] == (3, 3)
    bad = worker.generate(tiny_model, None, "not a list", 5)  # type: ignore[arg-type]
    assert bad.status == "error" and bad.error_class == "DATA"


def test_oom_under_a_memory_limit_is_reported_and_recovered(tiny_model, tmp_path, monkeypatch):
    # The tiny worker peaks at ~2.5 GB of address space. 32 completions of ~900 tokens need
    # ~6 GB for their fp32 logits alone when the batch runs in one pass (chunks off in the
    # child): that fits in this machine's RAM but not in the limit.
    monkeypatch.setenv("FTDOJO_TRAIN_CHUNK_TOKENS", "0")
    data = write_jsonl(tmp_path / "huge.jsonl", [{"prompt": "Write.", "completion": "table " * 900}] * 32)
    with ModelWorker(memory_limit_gb=4) as w:
        res = w.train(request(tiny_model, data, tmp_path / "o",
                              config={"batch_size": 32, "max_len": 1024, "max_steps": 1}))
        assert res.status == "error" and res.error_class == "OOM", res
        ok = w.train(request(tiny_model, write_jsonl(tmp_path / "s.jsonl", toy_rows(8)), tmp_path / "o2",
                             config={"max_steps": 1}))
        assert ok.status == "ok", ok.traceback


def test_the_same_batch_fits_the_memory_limit_in_chunks(tiny_model, tmp_path, monkeypatch):
    """The default: the batch above runs as row chunks (``sft.CHUNK_TOKENS``) and fits."""
    monkeypatch.delenv("FTDOJO_TRAIN_CHUNK_TOKENS", raising=False)
    data = write_jsonl(tmp_path / "huge.jsonl", [{"prompt": "Write.", "completion": "table " * 900}] * 32)
    with ModelWorker(memory_limit_gb=4) as w:
        res = w.train(request(tiny_model, data, tmp_path / "o",
                              config={"batch_size": 32, "max_len": 1024, "max_steps": 1}))
    assert res.status == "ok", res.traceback
    assert res.train_tokens > 28_000 and 0 < res.peak_rss_gb < 4


@pytest.mark.parametrize("sig, error_class", [(signal.SIGKILL, "ENV"), (signal.SIGTERM, "ENV")])
def test_worker_killed_mid_train_gives_an_error_then_restarts(tiny_model, data, tmp_path, sig, error_class):
    """A kill from outside is ENV (SIGKILL is OOM only when the kernel's OOM-kill counter moved:
    see test_watchdog.py); the steps trained before it are charged."""
    with ModelWorker() as w:
        first_pid = w.ping().pid

        def kill_on_first_log(event):
            if event["event"] == "log":
                os.kill(first_pid, sig)

        res = w.train(request(tiny_model, data, tmp_path / "o", config={"max_steps": 500}),
                      on_event=kill_on_first_log)
        assert res.status == "error" and res.error_class == error_class, res
        assert signal.Signals(sig).name in res.error
        assert res.train_tokens > 0 and res.steps >= 1  # work done before the kill is paid for
        assert w.pid is None
        again = w.ping()
        assert again.status == "ok" and again.pid != first_pid
        assert w.restarts == 1


def test_timeout_kills_the_worker_and_reports(tiny_model, data, tmp_path):
    with ModelWorker() as w:
        first_pid = w.ping().pid
        res = w.train(request(tiny_model, data, tmp_path / "o", config={"max_steps": 10_000}),
                      timeout=3)
        assert res.status == "error" and res.error_class == "ENV"
        assert "timed out after 3 s" in res.error
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)  # gone and reaped, not a zombie
        assert w.ping().status == "ok"


def test_close_reaps_the_process(tiny_model):
    w = ModelWorker()
    pid = w.ping().pid
    w.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert w.pid is None


def test_worker_exits_when_its_parent_dies():
    import subprocess
    import sys
    import time

    code = ("import os; from ftdojo_gym.model_process.client import ModelWorker\n"
            "w = ModelWorker(); print(w.ping().pid, flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail(f"worker {pid} outlived its parent")


def test_a_diverging_run_stops_at_the_first_nonfinite_loss_as_a_config_error(tiny_model, data, tmp_path, monkeypatch):
    """In-process: the loss turns NaN at step 2; the run stops there, saves nothing, and says why."""
    from ftdojo_gym.model_process import sft

    trainer_cls, _ = sft._trainer_classes()
    original = trainer_cls.compute_loss

    def nan_from_step_2(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = original(self, model, inputs, return_outputs, num_items_in_batch)
        return loss * float("nan") if self.state.global_step >= 1 else loss

    monkeypatch.setattr(trainer_cls, "compute_loss", nan_from_step_2)
    progress = sft.TrainProgress()
    req = request(tiny_model, data, tmp_path / "nan", config={"max_steps": 6})
    with pytest.raises(sft.TrainingDiverged, match="non-finite at step 2"):
        sft.run_sft(req, lambda event: None, progress=progress)
    assert progress.diverged_step == 2 and progress.steps == 2
    assert not (tmp_path / "nan" / "adapter_model.safetensors").exists()
    from ftdojo_gym.model_process.worker import classify_exception

    assert classify_exception(sft.TrainingDiverged("x")) == "CONFIG"

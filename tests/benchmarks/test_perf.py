"""The performance benchmarks' CPU-side logic: GPU check shapes and MFU, RESULT lines, fair-loop batching."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from ftdojo_benchmarks.perf import gpu_check, train_throughput  # noqa: E402


@pytest.mark.parametrize("shape", ["135m", "1.7b", "7b"])
def test_gpu_check_shapes_have_the_named_sizes(shape):
    """Catches: a shape config that is not the model it is named after (MFU would be wrong)."""
    n = gpu_check.count_params(gpu_check.build_config(shape))
    assert n == pytest.approx(gpu_check.EXPECTED_PARAMS[shape], rel=0.03)


def test_mfu_and_peak_flops():
    assert gpu_check.peak_flops("NVIDIA H200") == 989e12
    assert gpu_check.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_check.peak_flops("NVIDIA L4") == 121e12 and gpu_check.peak_flops("NVIDIA L40S") == 362e12
    assert gpu_check.peak_flops("Mystery GPU") is None
    assert gpu_check.peak_flops("Mystery GPU", 100.0) == 100e12
    # 10k tokens/s of a 1e9-parameter model at 4N FLOPs a token on a 400 TFLOPS GPU: 10 %
    assert gpu_check.mfu(10_000, 10**9, 4, 400e12) == pytest.approx(0.1)
    assert gpu_check.mfu(10_000, 10**9, 4, None) is None


def test_gpu_check_help_and_refusal_without_cuda():
    script = str(gpu_check.__file__)
    assert subprocess.run([sys.executable, script, "--help"], capture_output=True, timeout=120).returncode == 0
    import torch

    if not torch.cuda.is_available():
        out = subprocess.run([sys.executable, script, "--shapes", "tiny"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "no CUDA" in out.stderr


def test_gpu_check_runs_the_benchmarks_on_a_tiny_shape(capsys):
    """Catches: the GPU script broken in its CPU-side plumbing (build, save, train, generate, report)."""
    result = gpu_check.main(["--shapes", "tiny", "--allow-cpu", "--skip-episode", "--train-steps", "1",
                             "--prompts", "2", "--batch-size", "2"])
    (r,) = result["shapes"]
    assert r["shape"] == "tiny" and r["train_tokens_per_s"] > 0 and r["eval_prompts_per_s"] > 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("RESULT ") and json.loads(last[len("RESULT "):])["shapes"][0]["shape"] == "tiny"


def test_fair_loop_batches_are_length_bucketed():
    """Catches: the plain loop's batches not bucketed by length (the baseline would be weaker)."""
    lengths = [(i * 37) % 101 for i in range(400)]
    batches = train_throughput.bucketed_batches(lengths, 8, 40, seed=0)
    assert len(batches) == 40 and all(len(b) == 8 for b in batches)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # random batches of these lengths spread ~80


def test_train_benchmark_prints_a_result_line(tiny_model, capsys):
    out = train_throughput.main(["--model", "tiny", "--steps", "2", "--samples", "16", "--eval-prompts", "2",
                                 "--concurrent-steps", "0"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(last[len("RESULT "):])
    for key in ("env_tokens_per_s", "plain_tokens_per_s", "bf16_limit_share", "worker_peak_rss_gb"):
        assert data[key] > 0, key
    assert data["bf16_limit_share"] == pytest.approx(out["env_tokens_per_s"] / 750, rel=1e-3)

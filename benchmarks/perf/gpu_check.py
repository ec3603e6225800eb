"""GPU check: one episode and both throughput benchmarks on CUDA, for three model shapes.

For each shape (SmolLM2-135M, SmolLM2-1.7B, a 7B Qwen2.5 shape) a randomly
initialised model is built in code (config below, no download), saved once
(bf16 on a GPU) with SmolLM2's tokenizer, and then used as the env's base model:

1. **episode**: ``FTDojo/TableBench-v0`` with a short Manual-SFT recipe (a LoRA
   run of a few steps, evaluate, submit) on small splits: the whole live path
   (worker, resident model, LoRA swap, generation, grading) runs on CUDA;
2. **train**: :func:`ftdojo_benchmarks.perf.train_throughput.env_path`
   (LoRA r16 all-linear through the worker): tokens/s and MFU at 4N FLOPs a
   token (forward 2N, backward through frozen weights 2N);
3. **eval**: batched generation through the worker on TableBench prompts:
   prompts/s and the MFU of the prefill and decode tokens at 2N FLOPs a token.

The code picks CUDA and bf16 weights by itself when a GPU is present
(:func:`ftdojo_gym.model_process.resident.default_dtype`, trl's ``bf16``);
this script only checks that it does (``device``/``dtype`` in the output).
Random weights make the outputs meaningless (scores ~0) but the costs real.

Run on a GPU machine::

    python -m ftdojo_benchmarks.perf.gpu_check                   # all three shapes
    python -m ftdojo_benchmarks.perf.gpu_check --shapes 135m 1.7b --train-steps 8

Without CUDA it refuses unless ``--allow-cpu`` (used by the tests with the
``tiny`` shape). The last line printed is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

#: Model shapes (Hugging Face config fields). 135m and 1.7b are SmolLM2's; 7b is Qwen2.5-7B's
#: (the paper's base model). ``tiny`` is for tests.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=49152, tie_word_embeddings=True),
    "135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                 num_attention_heads=9, num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True,
                 rope_theta=100000.0),
    "1.7b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                 num_attention_heads=32, num_key_value_heads=32, vocab_size=49152, tie_word_embeddings=True,
                 rope_theta=130000.0),
    "7b": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
               rope_theta=1000000.0),
}
#: Approximate parameter counts of the shapes (checked by the tests against the built configs).
EXPECTED_PARAMS = {"135m": 134.5e6, "1.7b": 1.71e9, "7b": 7.6e9}

#: Dense bf16 peak TFLOPS by GPU name fragment (no sparsity); ``--peak-tflops`` overrides.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "B200": 2250.0}


def build_config(shape: str, tokenizer: Any = None) -> Any:
    """The transformers config of ``shape`` (special tokens from ``tokenizer`` when given)."""
    from transformers import AutoConfig

    fields = dict(SHAPES[shape])
    model_type = fields.pop("model_type")
    if tokenizer is not None:
        fields.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    return AutoConfig.for_model(model_type, max_position_embeddings=4096, **fields)


def count_params(config: Any) -> int:
    """Parameters of a model with ``config``, counted on the meta device (nothing allocated)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def build_model(shape: str, folder: Path, tokenizer_source: str | Path, device: str) -> Path:
    """Save a randomly initialised ``shape`` model (bf16 on CUDA, fp32 on CPU) and the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_source))
    config = build_config(shape, tok)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return folder


def peak_flops(device_name: str, override_tflops: float | None = None) -> float | None:
    """Dense bf16 peak FLOP/s of the GPU named ``device_name``, or None if unknown."""
    if override_tflops:
        return override_tflops * 1e12
    for fragment, tflops in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if fragment.lower() in device_name.lower():
            return tflops * 1e12
    return None


def mfu(tokens_per_s: float, n_params: int, flops_per_param_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved ``flops_per_param_token * N`` FLOPs a token over the peak."""
    if not peak:
        return None
    return tokens_per_s * flops_per_param_token * n_params / peak


def run_episode(model_dir: Path, workdir: Path, train_steps: int, eval_limit: int) -> dict[str, Any]:
    """One short live TableBench episode with the Manual-SFT agent on ``model_dir``."""
    import gymnasium as gym

    import ftdojo_gym  # noqa: F401
    from ftdojo_agents.manual_sft import ManualSFTAgent
    from ftdojo_gym.recipes import task_recipes

    t0 = time.monotonic()
    env = gym.make("FTDojo/TableBench-v0", base_model=str(model_dir), eval_limit=eval_limit, workdir=str(workdir),
                   outcome_cache=False)
    try:
        task = env.unwrapped.task
        agent = ManualSFTAgent(max_steps=train_steps, samples=64)
        recipes = task_recipes(task)
        agent.reset({"task": task.name, "clean_sources": recipes.clean_sources,
                     "expert_template": recipes.expert_template})
        obs, info = env.reset(seed=0)
        done, steps, errors = False, 0, []
        while not done and steps < 40:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
            steps += 1
            if not info["ok"]:
                errors.append(f"{info['tool']}: {info['error_class']}")
            done = terminated or truncated
    finally:
        env.close()
    return {"episode_seconds": time.monotonic() - t0, "episode_steps": steps, "episode_done": done,
            "episode_errors": errors}


def check_shape(shape: str, args: argparse.Namespace, device: str, peak: float | None, tmp: Path
                ) -> dict[str, Any]:
    """Build ``shape`` and run the episode, the train and the eval benchmarks on it."""
    from ftdojo_benchmarks.perf.eval_throughput import tablebench_prompts
    from ftdojo_benchmarks.perf.train_throughput import env_path, make_pairs
    from ftdojo_gym.model_process.client import ModelWorker

    model_dir = build_model(shape, tmp / f"model-{shape}", args.tokenizer, device)
    n_params = count_params(build_config(shape))
    out: dict[str, Any] = {"shape": shape, "params": n_params}
    if not args.skip_episode:
        out.update(run_episode(model_dir, tmp / f"episode-{shape}", args.train_steps, args.eval_limit))
    data = tmp / f"train-{shape}.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in make_pairs(max(64, args.batch_size * 4))))
    train = env_path(str(model_dir), data, tmp / f"adapter-{shape}", args.train_steps, args.batch_size, 1e-4, 0,
                     max_len=1024, eval_prompts=0)
    out.update(train_tokens_per_s=train["tokens_per_s"], train_mfu=mfu(train["tokens_per_s"], n_params, 4, peak),
               train_peak_rss_gb=train["train_peak_rss_gb"])
    prompts, max_new = tablebench_prompts(args.prompts)
    with ModelWorker() as worker:
        warm = worker.generate(str(model_dir), None, prompts[:2], 2)
        gen = worker.generate(str(model_dir), None, prompts, max_new, batch_size=args.eval_batch_size)
    if warm.status != "ok" or gen.status != "ok":
        bad = gen if gen.status != "ok" else warm
        raise RuntimeError(f"generation failed on {shape}: {bad.error_class}: {bad.error}\n{bad.traceback}")
    tokens = gen.stats.get("prompt_tokens", 0) + gen.stats.get("decode_rows", 0) + len(prompts)
    out.update(eval_prompts_per_s=len(prompts) / gen.seconds,
               eval_tokens_per_s=tokens / gen.seconds,
               eval_mfu=mfu(tokens / gen.seconds, n_params, 2, peak),
               eval_prefill_share=gen.stats.get("prefill_s", 0) / gen.seconds)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["135m", "1.7b", "7b"], choices=sorted(SHAPES))
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--eval-batch-size", type=int, default=32)
    ap.add_argument("--eval-limit", type=int, default=16, help="items per split in the episode")
    ap.add_argument("--skip-episode", action="store_true")
    ap.add_argument("--tokenizer", default=None, help="folder with the tokenizer (default: the 'tiny' model's, "
                    "which is SmolLM2's)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="GPU bf16 peak (default: from its name)")
    ap.add_argument("--allow-cpu", action="store_true", help="run without CUDA (tests, with --shapes tiny)")
    args = ap.parse_args(argv)

    import torch

    from ftdojo_gym.model_process.resident import default_dtype
    from ftdojo_gym.models import resolve_model

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        ap.error("no CUDA device here; this check is for a GPU machine (--allow-cpu runs it on the CPU)")
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = peak_flops(name, args.peak_tflops) if cuda else None
    args.tokenizer = args.tokenizer or str(resolve_model("tiny"))
    result: dict[str, Any] = {"device": name, "dtype": str(default_dtype()).replace("torch.", ""),
                              "peak_tflops": peak / 1e12 if peak else None, "shapes": []}
    print(f"gpu check on {name} ({result['dtype']} weights picked by the code), peak "
          f"{result['peak_tflops'] or '?'} TFLOPS")
    with tempfile.TemporaryDirectory(prefix="ftdojo-gpu-") as tmp:
        for shape in args.shapes:
            r = check_shape(shape, args, device, peak, Path(tmp))
            result["shapes"].append(r)
            fmt = (lambda v: f"{v:.1%}") if peak else (lambda v: "n/a")
            print(f"{shape:>6} ({r['params'] / 1e6:,.0f}M): train {r['train_tokens_per_s']:,.0f} tokens/s "
                  f"(MFU {fmt(r['train_mfu'])}), eval {r['eval_prompts_per_s']:.2f} prompts/s "
                  f"(MFU {fmt(r['eval_mfu'])}), episode "
                  f"{r.get('episode_seconds', float('nan')):.0f} s {r.get('episode_errors', [])}")
            shutil_rm(Path(tmp) / f"model-{shape}")
    print("RESULT " + json.dumps(result, default=str))
    return result


def shutil_rm(path: Path) -> None:
    """Remove a built model folder (a 7B one is 15 GB) once its shape is done."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()

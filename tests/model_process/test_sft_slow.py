"""Real learning on SmolLM2-135M: a LoRA run teaches a table lookup in a few minutes on CPU."""

from __future__ import annotations

import json
import random
import re
import time

import pytest

from ftdojo_gym.model_process.client import ModelWorker
from ftdojo_gym.model_process.protocol import TrainRequest

NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
         "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yvonne"]


def lookup_item(rng: random.Random) -> tuple[str, str]:
    """A 4-row table and a question about one row's Score; the answer as 'Final Answer: N'."""
    names = rng.sample(NAMES, 4)
    scores = [rng.randint(10, 99) for _ in names]
    table = "Name,Score\n" + "\n".join(f"{n},{s}" for n, s in zip(names, scores, strict=True))
    k = rng.randrange(4)
    return f"{table}\nWhat is the Score of {names[k]}?", f"Final Answer: {scores[k]}"


def exact_match(outputs: list[str], answers: list[str]) -> float:
    def norm(text: str) -> str:
        m = re.search(r"Final Answer:\s*(\S+)", text)
        return m.group(1).strip(".") if m else ""

    return sum(norm(o) == norm(a) for o, a in zip(outputs, answers, strict=True)) / len(answers)


@pytest.mark.slow
def test_lora_learns_a_table_lookup(smollm2_model, tmp_path):
    rng = random.Random(0)
    train = [lookup_item(rng) for _ in range(400)]
    held_out = [lookup_item(random.Random(10_000 + i)) for i in range(40)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in train))
    prompts, answers = [p for p, _ in held_out], [a for _, a in held_out]

    t0 = time.monotonic()
    with ModelWorker() as worker:
        base = worker.generate(smollm2_model, None, prompts, 12, batch_size=20)
        assert base.status == "ok", base.traceback
        config = {"method": "lora", "lora_r": 16, "lora_alpha": 32, "learning_rate": 1e-3,
                  "lr_scheduler": "linear", "batch_size": 8, "max_steps": 48, "max_len": 256, "seed": 0}
        res = worker.train(TrainRequest(base_model=smollm2_model, data_path=str(data),
                                        output_dir=str(tmp_path / "adapter"), config=config))
        assert res.status == "ok", res.traceback
        tuned = worker.generate(smollm2_model, res.model_dir, prompts, 12, batch_size=20)
        assert tuned.status == "ok", tuned.traceback
    minutes = (time.monotonic() - t0) / 60

    before, after = exact_match(base.outputs, answers), exact_match(tuned.outputs, answers)
    print(f"\nexact match {before:.2f} -> {after:.2f}; loss {res.loss_head[0][1]:.3f} -> "
          f"{res.final_loss:.3f}; {res.train_tokens} tokens in {res.train_seconds:.0f} s "
          f"({res.train_tokens / res.train_seconds:.0f} tokens/s); total {minutes:.1f} min")
    assert res.final_loss < res.loss_head[0][1]
    assert after >= before + 0.3
    assert after >= 0.6

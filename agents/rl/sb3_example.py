"""stable-baselines3 PPO over recipe experiments in tabular mode: the same setting as
:mod:`ftdojo_agents.rl.ppo`, with a well-kept RL library.

    python -m ftdojo_agents.rl.sb3_example --env-id FTDojo/FinanceIQ-v0 --total-timesteps 20000
    python -m ftdojo_agents.rl.sb3_example --outcome-table /tmp/FinanceIQ.jsonl --base-model tiny --eval-limit 2

Writes ``<out>/policy.zip`` with ``<out>/policy.json`` (grid and episode
settings; play it with ``ftdojo_agents.make("rl-policy", path=".../policy.zip")``),
``<out>/curve.png`` and ``<out>/curve.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

import ftdojo_gym  # noqa: F401  (registers the envs)
from ftdojo_agents.rl.ppo import plot_curve
from ftdojo_gym.wrappers import NumericObservation, RecipeActions


class EpisodeCurve(BaseCallback):
    """Collects each finished episode's best validation and submitted hidden-test scores."""

    def __init__(self) -> None:
        super().__init__()
        self.curve: dict[str, list] = {"episode": [], "step": [], "validation": [], "hidden_test": []}

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if done:
                self.curve["episode"].append(len(self.curve["episode"]) + 1)
                self.curve["step"].append(self.num_timesteps)
                self.curve["validation"].append(float(info.get("best_validation_score", 0.0)))
                self.curve["hidden_test"].append(float(info.get("hidden_test_score") or 0.0))
        return True


def make_env(env_id: str, max_experiments: int, **kwargs: Any) -> gym.Env:
    return NumericObservation(RecipeActions(gym.make(env_id, mode="tabular", **kwargs), max_experiments=max_experiments))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="FTDojo/FinanceIQ-v0")
    parser.add_argument("--outcome-table", default=None, help="default: the table shipped for the task")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--eval-limit", type=int, default=None)
    parser.add_argument("--max-experiments", type=int, default=4)
    parser.add_argument("--total-timesteps", type=int, default=4096)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--ent-coef", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/sb3")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a small MLP: more threads only contend with the envs for the cores
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"base_model": args.base_model}
    if args.outcome_table:
        kwargs["outcome_table"] = args.outcome_table
    if args.eval_limit:
        kwargs["eval_limit"] = args.eval_limit
    env = make_vec_env(functools.partial(make_env, args.env_id, args.max_experiments, **kwargs),
                       n_envs=args.num_envs, seed=args.seed)
    model = PPO("MlpPolicy", env, n_steps=args.n_steps, batch_size=max(8, args.n_steps * args.num_envs // 4),
                learning_rate=args.learning_rate, ent_coef=args.ent_coef, seed=args.seed, verbose=0, device="cpu")
    curve = EpisodeCurve()
    model.learn(total_timesteps=args.total_timesteps, callback=curve)
    model.save(out / "policy.zip")
    grid = env.get_attr("grid")[0]
    meta = {"algo": "sb3-ppo", "grid": grid.to_dict(), "max_experiments": args.max_experiments, "history": 4,
            "env_id": args.env_id}
    (out / "policy.json").write_text(json.dumps(meta))
    env.close()
    plot_curve(curve.curve, out / "curve.png", f"stable-baselines3 PPO on {args.env_id} (tabular)")
    (out / "curve.json").write_text(json.dumps(curve.curve))
    return curve.curve


if __name__ == "__main__":
    main()

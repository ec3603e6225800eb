"""PPO over recipe experiments, CleanRL style: one file, read it top to bottom.

The env is an FT-Dojo task in tabular mode (real outcomes from an outcome
table, thousands of episodes in minutes) seen through
:class:`ftdojo_gym.wrappers.RecipeActions` (an action = a recipe of the grid,
or submit) and :class:`ftdojo_gym.wrappers.NumericObservation` (a ``Box``
vector). The reward is the improvement of the episode's best *validation*
score: the policy never trains on the hidden test, which only scores the
submissions (the learning curve plots both).

    python -m ftdojo_agents.rl.ppo --env-id FTDojo/FinanceIQ-v0 --total-timesteps 20000
    python -m ftdojo_agents.rl.ppo --outcome-table /tmp/FinanceIQ.jsonl --base-model tiny --eval-limit 2

Writes ``<out>/policy.pt`` (play it with ``ftdojo_agents.make("rl-policy",
path=...)``, live or tabular), ``<out>/curve.png`` and ``<out>/curve.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

import ftdojo_gym  # noqa: F401  (registers the envs)
from ftdojo_gym.wrappers import NumericObservation, RecipeActions


@dataclass
class Args:
    env_id: str = "FTDojo/FinanceIQ-v0"
    outcome_table: str | None = None  # default: the table shipped for the task
    base_model: str = "smollm2-135m"  # the table's base model
    eval_limit: int | None = None  # the table's split size
    max_experiments: int = 4  # experiments per episode (then the best validated run is submitted)
    total_timesteps: int = 4096  # recipe experiments over the whole training
    num_envs: int = 4
    vectorization_mode: str = "sync"  # or "async" (one process per env)
    num_steps: int = 32  # steps per env per rollout
    learning_rate: float = 3e-3
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 10
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64
    torch_threads: int = 1  # a small MLP: more threads only contend with the envs for the cores
    seed: int = 0
    out: str = "runs/ppo"


def make_envs(args: Args) -> gym.vector.VectorEnv:
    """``num_envs`` tabular envs behind the recipe and numeric wrappers (same-step autoreset, as CleanRL expects)."""
    kwargs: dict[str, Any] = {"mode": "tabular", "base_model": args.base_model}
    if args.outcome_table:
        kwargs["outcome_table"] = args.outcome_table
    if args.eval_limit:
        kwargs["eval_limit"] = args.eval_limit
    return gym.make_vec(
        args.env_id, num_envs=args.num_envs, vectorization_mode=args.vectorization_mode,
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        wrappers=[functools.partial(RecipeActions, max_experiments=args.max_experiments), NumericObservation],
        **kwargs)


def layer(inputs: int, outputs: int, std: float = np.sqrt(2)) -> nn.Linear:
    linear = nn.Linear(inputs, outputs)
    nn.init.orthogonal_(linear.weight, std)
    nn.init.constant_(linear.bias, 0.0)
    return linear


class Policy(nn.Module):
    """Actor-critic for a ``MultiDiscrete`` action: one categorical head per action dimension."""

    def __init__(self, obs_dim: int, nvec: list[int], hidden: int = 64):
        super().__init__()
        self.nvec = [int(n) for n in nvec]
        self.critic = nn.Sequential(layer(obs_dim, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh(),
                                    layer(hidden, 1, std=1.0))
        self.actor = nn.Sequential(layer(obs_dim, hidden), nn.Tanh(), layer(hidden, hidden), nn.Tanh(),
                                   layer(hidden, sum(self.nvec), std=0.01))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs)

    def action_and_value(self, obs: torch.Tensor, action: torch.Tensor | None = None, greedy: bool = False):
        heads = [Categorical(logits=logits) for logits in torch.split(self.actor(obs), self.nvec, dim=1)]
        if action is None:
            action = torch.stack([h.probs.argmax(dim=1) if greedy else h.sample() for h in heads], dim=1)
        logprob = torch.stack([h.log_prob(a) for h, a in zip(heads, action.T, strict=True)]).sum(0)
        entropy = torch.stack([h.entropy() for h in heads]).sum(0)
        return action, logprob, entropy, self.critic(obs)


def train(args: Args) -> dict[str, Any]:
    """Train, save the policy and the learning curve; returns the curve."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    envs = make_envs(args)
    nvec = [int(n) for n in envs.single_action_space.nvec]
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    policy = Policy(obs_dim, nvec, args.hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate, eps=1e-5)

    batch_size = args.num_envs * args.num_steps
    minibatch_size = max(1, batch_size // args.num_minibatches)
    num_iterations = max(1, args.total_timesteps // batch_size)
    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim))
    actions = torch.zeros((args.num_steps, args.num_envs, len(nvec)), dtype=torch.long)
    logprobs = torch.zeros((args.num_steps, args.num_envs))
    rewards = torch.zeros((args.num_steps, args.num_envs))
    dones = torch.zeros((args.num_steps, args.num_envs))
    values = torch.zeros((args.num_steps, args.num_envs))

    curve: dict[str, list] = {"episode": [], "step": [], "validation": [], "hidden_test": []}
    global_step, start = 0, time.monotonic()
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
    next_done = torch.zeros(args.num_envs)

    for iteration in range(1, num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

        # 1. Roll out the policy: num_steps recipe experiments in each env.
        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = policy.action_and_value(next_obs)
            actions[step], logprobs[step], values[step] = action, logprob, value.flatten()
            next_obs, reward, terminated, truncated, infos = envs.step(action.numpy())
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
            next_done = torch.as_tensor(np.logical_or(terminated, truncated), dtype=torch.float32)
            next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
            final = infos.get("final_info", {})  # same-step autoreset: the ended episodes' last info
            for i in np.flatnonzero(np.logical_or(terminated, truncated)):  # an episode ended: one curve point
                curve["episode"].append(len(curve["episode"]) + 1)
                curve["step"].append(global_step)
                curve["validation"].append(float(final["best_validation_score"][i]))
                curve["hidden_test"].append(float(final["hidden_test_score"][i] or 0.0))

        # 2. Advantages by GAE (an episode's end cuts the bootstrap).
        with torch.no_grad():
            next_value = policy.value(next_obs).flatten()
            advantages = torch.zeros_like(rewards)
            last = torch.zeros(args.num_envs)
            for t in reversed(range(args.num_steps)):
                not_done = 1.0 - (next_done if t == args.num_steps - 1 else dones[t + 1])
                following = next_value if t == args.num_steps - 1 else values[t + 1]
                delta = rewards[t] + args.gamma * following * not_done - values[t]
                last = delta + args.gamma * args.gae_lambda * not_done * last
                advantages[t] = last
            returns = advantages + values

        # 3. Optimise the clipped surrogate objective over minibatches.
        b_obs, b_actions = obs.reshape(-1, obs_dim), actions.reshape(-1, len(nvec))
        b_logprobs, b_advantages = logprobs.reshape(-1), advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        indices = np.arange(batch_size)
        for _epoch in range(args.update_epochs):
            np.random.shuffle(indices)
            for begin in range(0, batch_size, minibatch_size):
                mb = indices[begin:begin + minibatch_size]
                _, new_logprob, entropy, new_value = policy.action_and_value(b_obs[mb], b_actions[mb])
                ratio = (new_logprob - b_logprobs[mb]).exp()
                adv = b_advantages[mb]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8) if len(mb) > 1 else adv
                policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                value_loss = 0.5 * ((new_value.flatten() - b_returns[mb]) ** 2).mean()
                loss = policy_loss - args.ent_coef * entropy.mean() + args.vf_coef * value_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
                optimizer.step()

        recent = curve["hidden_test"][-20:]
        print(f"iteration {iteration}/{num_iterations}: {global_step} steps, {len(curve['episode'])} episodes, "
              f"hidden test (last 20) {np.mean(recent) if recent else float('nan'):.3f}, "
              f"{global_step / (time.monotonic() - start):.0f} steps/s", flush=True)

    grid = envs.get_attr("grid")[0]
    envs.close()
    save(policy, out / "policy.pt", args, grid.to_dict())
    plot_curve(curve, out / "curve.png", f"PPO on {args.env_id} (tabular)")
    (out / "curve.json").write_text(json.dumps(curve))
    return curve


def save(policy: Policy, path: Path, args: Args, grid: dict[str, Any]) -> None:
    """The policy's weights and what it needs to play again: its grid, observation and episode settings."""
    torch.save({"algo": "ppo", "state_dict": policy.state_dict(), "obs_dim": policy.actor[0].in_features,
                "nvec": policy.nvec, "hidden": args.hidden, "grid": grid, "max_experiments": args.max_experiments,
                "history": 4, "env_id": args.env_id, "args": dataclasses.asdict(args)}, path)


def load(path: str | Path) -> tuple[Policy, dict[str, Any]]:
    """A saved policy (in eval mode) and its metadata."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    policy = Policy(saved["obs_dim"], saved["nvec"], saved["hidden"])
    policy.load_state_dict(saved["state_dict"])
    return policy.eval(), saved


def plot_curve(curve: dict[str, list], path: Path, title: str, window: int = 20) -> None:
    """Best validation score and submitted hidden-test score per episode (moving averages)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("validation", "best validation (reward)"), ("hidden_test", "submitted hidden test")):
        y = np.asarray(curve[key], dtype=float)
        if len(y):
            w = min(window, len(y))
            ax.plot(curve["episode"][w - 1:], np.convolve(y, np.ones(w) / w, mode="valid"), label=label)
    ax.set_xlabel("episode")
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(Args):
        kind = {"int": int, "float": float, "bool": lambda s: s.lower() in ("1", "true", "yes")}.get(
            str(f.type).split(" ")[0], str)
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    return Args(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    train(parse_args())

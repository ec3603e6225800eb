"""FT-Agent, as in the FT-Dojo paper: plan, execute fail-fast, evaluate, judge, remember.

One iteration of the loop (``FTAgent._episode``, read top to bottom):

1. **Planner** (LLM, ``prompts/ft_planner.md``): from the source catalogue and
   the experiment tree (the best run so far, its siblings, recent attempts,
   also from earlier episodes) it proposes one hypothesis as a recipe: data
   steps (fetch/filter/transform/mix), a training config and the dataset.
2. **Executor**: runs the data steps, sets the config, and *always* makes a
   ``debug`` run (about 100 samples, a few steps) before the full run. A debug
   run fails when the env reports an error *or* when its loss explodes
   (:func:`loss_explosion`): a too-high learning rate often keeps the loss
   finite, so the run "succeeds" with a useless model, and only its first
   steps show it cheaply. When a step, the debug run or the full run fails,
   the **repair** prompt
   (``prompts/ft_repair.md``) gets the error class and traceback and returns a
   fix; at most ``max_repairs`` repairs per experiment, each followed by a new
   debug run.
3. **Evaluator** (LLM, ``prompts/ft_evaluator.md``): reads the validation
   metrics and the wrong answers and writes a diagnosis.
4. **Judge** (LLM, ``prompts/ft_judge.md``): accepts or rejects the run
   against the best one. The LLM may reject an improvement it finds spurious;
   it can never make a worse run the best (a numeric guard).
5. Every experiment becomes a node of the :class:`ExperimentTree`, written as
   JSON after each change (atomically), and read by the next plan, within the
   episode and across episodes.

The loop stops when ``max_iterations`` is reached, the token or step budget
cannot pay for another experiment, or the planner fails twice; then it
submits the best accepted run. Without a working LLM the agent replays the
best recipe of earlier episodes if there is one, and otherwise submits.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftdojo_agents.episode import SUBMIT, budget_dict, clip_middle, result_text, status_line
from ftdojo_agents.llm_client import LLMClient, LLMError, parse_json_object
from ftdojo_agents.prompts import load_prompt
from ftdojo_gym.actions import ActionError, parse_action, tools_of_kind, usage
from ftdojo_gym.data.workspace import atomic_write_text
from ftdojo_gym.rules import MAX_TRAIN_SAMPLES

DATA_TOOLS = (*tools_of_kind("data"), "inspect")  # inspect: a plan may look at rows between steps
StepIO = Generator[dict[str, Any], tuple[dict[str, Any], dict[str, Any]], Any]


# --------------------------------------------------------------------------- the experiment tree
@dataclass
class ExperimentNode:
    """One experiment: a hypothesis, its recipe and what came of it.

    ``status`` is ``"running"``, ``"failed"`` (no run survived the repairs),
    ``"accepted"`` (became the best run) or ``"rejected"``.
    """

    id: str
    parent: str | None
    task: str
    episode: int
    hypothesis: str
    recipe: dict[str, Any]
    status: str = "running"
    run_id: str | None = None
    val_score: float | None = None
    subsets: dict[str, float] = field(default_factory=dict)
    debug_runs: int = 0
    full_runs: int = 0
    repairs: int = 0
    failures: list[str] = field(default_factory=list)
    train_tokens: int = 0
    final_loss: float | None = None
    analysis: str = ""
    judge: str = ""
    created: float = field(default_factory=time.time)


class ExperimentTree:
    """The experiment tree: nodes with parents, saved to ``path`` as JSON after every change.

    Nodes of every task live in one file; readers filter by ``task``. With
    ``path=None`` the tree is kept in memory (it still spans the episodes of
    one agent object).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.nodes: dict[str, ExperimentNode] = {}
        if self.path is not None and self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for raw in data.get("nodes", []):
                known = {k: v for k, v in raw.items() if k in ExperimentNode.__dataclass_fields__}
                node = ExperimentNode(**known)
                self.nodes[node.id] = node

    def save(self) -> None:
        if self.path is not None:
            payload = {"format": "ftdojo-experiment-tree/1", "nodes": [asdict(n) for n in self.nodes.values()]}
            atomic_write_text(self.path, json.dumps(payload, indent=1, ensure_ascii=False, default=str))

    def add(self, node: ExperimentNode) -> ExperimentNode:
        self.nodes[node.id] = node
        self.save()
        return node

    def new_id(self) -> str:
        return f"n{len(self.nodes) + 1}"

    def for_task(self, task: str) -> list[ExperimentNode]:
        return [n for n in self.nodes.values() if n.task == task]

    def best(self, task: str) -> ExperimentNode | None:
        """The accepted node with the highest validation score (any episode)."""
        scored = [n for n in self.for_task(task) if n.status == "accepted" and n.val_score is not None]
        return max(scored, key=lambda n: (n.val_score, -n.created)) if scored else None

    def siblings(self, node: ExperimentNode) -> list[ExperimentNode]:
        return [n for n in self.for_task(node.task) if n.parent == node.parent and n.id != node.id]

    def children(self, node_id: str | None, task: str) -> list[ExperimentNode]:
        return [n for n in self.for_task(task) if n.parent == node_id]

    def describe(self, task: str, episode: int, max_chars: int) -> str:
        """The tree as the planner reads it: best node, its siblings and children, then recent nodes.

        Older nodes are dropped first when ``max_chars`` is exceeded.
        """
        nodes = self.for_task(task)
        if not nodes:
            return "No experiments yet."
        best = self.best(task)
        blocks: list[str] = []
        shown: set[str] = set()
        if best is not None:
            blocks.append("BEST RUN SO FAR:\n" + _node_text(best, episode, full=True))
            shown.add(best.id)
            for title, group in (("SIBLINGS OF THE BEST (same parent)", self.siblings(best)),
                                 ("CHILDREN OF THE BEST (refinements tried)", self.children(best.id, task))):
                if group:
                    blocks.append(title + ":\n" + "\n".join(_node_text(n, episode) for n in group))
                    shown.update(n.id for n in group)
        recent = [n for n in sorted(nodes, key=lambda n: n.created, reverse=True) if n.id not in shown]
        if recent:
            blocks.append("OTHER EXPERIMENTS (newest first):\n" + "\n".join(_node_text(n, episode) for n in recent))
        text = "\n\n".join(blocks)
        counts = {s: sum(n.status == s for n in nodes) for s in ("accepted", "rejected", "failed")}
        head = f"{len(nodes)} experiments so far ({', '.join(f'{v} {k}' for k, v in counts.items())}).\n"
        return head + (text if len(text) <= max_chars else text[:max_chars] + "\n[... older experiments cut ...]")


def _node_text(n: ExperimentNode, episode: int, full: bool = False) -> str:
    when = "this episode" if n.episode == episode else f"episode {n.episode}"
    score = "n/a" if n.val_score is None else f"{100 * n.val_score:.1f}"
    line = (f"- [{n.id}] parent {n.parent or '-'}, {when}, {n.status}, val {score}"
            + (f" {json.dumps({k: round(100 * v, 1) for k, v in n.subsets.items()})}" if n.subsets else "")
            + f", debug runs {n.debug_runs}, repairs {n.repairs}: {n.hypothesis[:300]}")
    if n.failures:
        line += f"\n    failures: {' | '.join(f[:160] for f in n.failures[-2:])}"
    if n.analysis:
        line += f"\n    analysis: {n.analysis[: 600 if full else 240]}"
    if full:
        line += f"\n    recipe: {json.dumps(n.recipe, ensure_ascii=False)[:2500]}"
    return line


# --------------------------------------------------------------------------- run health
def run_losses(result: dict[str, Any]) -> list[float]:
    """The losses of a run result's ``loss_head`` and ``loss_tail`` (``[step, loss]`` pairs), in step order."""
    by_step: dict[int, float] = {}
    for point in [*(result.get("loss_head") or []), *(result.get("loss_tail") or [])]:
        if isinstance(point, (list, tuple)) and len(point) == 2:
            try:
                by_step[int(point[0])] = float(point[1])
            except (TypeError, ValueError):
                continue
    return [by_step[k] for k in sorted(by_step)]


def loss_explosion(result: dict[str, Any], factor: float = 2.0) -> str | None:
    """Why a finished run's losses show divergence, or None when they look healthy.

    Divergent: a non-finite loss, or a later loss above ``factor * first + 1``
    (noise on a few steps stays well below that; a learning rate 100x too high
    took SmolLM2 from 0.8 to 14 in three steps).
    """
    losses = run_losses(result)
    if len(losses) < 2:
        return None
    if not all(math.isfinite(x) for x in losses):
        return f"the loss became non-finite ({losses})"
    first, peak = losses[0], max(losses[1:])
    if peak > factor * first + 1.0:
        return (f"the loss rose from {first:.3f} to {peak:.3f} within {len(losses)} logged steps: training is "
                "diverging (the learning rate is probably too high)")
    return None


# --------------------------------------------------------------------------- plans
@dataclass
class Plan:
    """A validated recipe: data steps, the training dataset, a config and the sample cap."""

    hypothesis: str
    parent: str | None
    data_steps: list[dict[str, Any]]
    dataset: str
    config: dict[str, Any]
    max_samples: int = MAX_TRAIN_SAMPLES

    def recipe(self) -> dict[str, Any]:
        return {"data_steps": self.data_steps, "dataset": self.dataset, "config": self.config,
                "max_samples": self.max_samples}


class PlanError(ValueError):
    """A plan from the LLM that cannot be executed; the message says why (it is sent back)."""


def validate_steps(steps: Any) -> list[dict[str, Any]]:
    """Data steps as env actions, each validated against the tool schema."""
    if steps is None:
        return []
    if not isinstance(steps, list):
        raise PlanError("data_steps must be a list of tool calls")
    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise PlanError(f"data_steps[{i}] is not an object")
        if "name" in step and "tool" not in step:  # {"name", "arguments"} is fine too
            step = {"tool": step["name"], "args": step.get("arguments", {})}
        tool = step.get("tool")
        if tool not in DATA_TOOLS:
            raise PlanError(f"data_steps[{i}]: tool {tool!r} is not allowed here; use one of {list(DATA_TOOLS)}")
        action = {"tool": tool, "args": step.get("args") or {}}
        try:
            out.append(parse_action(action).to_dict())
        except ActionError as exc:
            raise PlanError(f"data_steps[{i}]: {exc}\n{usage(tool)}") from None
    return out


def validate_config(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise PlanError("config must be an object of set_config fields")
    try:
        return parse_action({"tool": "set_config", "args": config}).to_dict()["args"]
    except ActionError as exc:
        raise PlanError(f"config: {exc}\n{usage('set_config')}") from None


def plan_from_json(obj: dict[str, Any] | None, *, default_parent: str | None) -> Plan:
    """A :class:`Plan` from the planner's JSON; raises :class:`PlanError` with a precise message."""
    if not isinstance(obj, dict):
        raise PlanError("no JSON object found in the reply")
    steps = validate_steps(obj.get("data_steps", obj.get("steps")))
    dataset = obj.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        outputs = [s["args"].get("output") or s["args"].get("dataset") for s in steps if s["tool"] != "inspect"]
        dataset = next((o for o in reversed(outputs) if isinstance(o, str)), None)
    if not dataset:
        raise PlanError("'dataset' (the training dataset) is missing")
    max_samples = obj.get("max_samples", MAX_TRAIN_SAMPLES)
    if not isinstance(max_samples, int) or isinstance(max_samples, bool) or not 1 <= max_samples <= MAX_TRAIN_SAMPLES:
        max_samples = MAX_TRAIN_SAMPLES
    parent = obj.get("parent")
    return Plan(
        hypothesis=str(obj.get("hypothesis") or "(no hypothesis given)")[:2000],
        parent=parent if isinstance(parent, str) and parent else default_parent,
        data_steps=steps, dataset=dataset, config=validate_config(obj.get("config")), max_samples=max_samples,
    )


# --------------------------------------------------------------------------- the agent
class FTAgent:
    """FT-Agent over any OpenAI-compatible endpoint; see the module docstring.

    ``llm`` is an :class:`LLMClient` (or built from ``llm_kwargs``).
    ``tree_path`` keeps the experiment tree across agent objects (JSON).
    ``config_overrides`` are applied on top of every planned config (e.g. a
    step cap on a CPU). ``evaluate_base`` scores the base model first, the
    reference for the first judgement. ``loss_explosion_factor`` sets when a
    debug run whose loss rises counts as failed (None turns the check off).
    """

    name = "ft-agent"

    def __init__(self, llm: LLMClient | None = None, *, tree_path: str | Path | None = None,
                 max_iterations: int = 8, max_repairs: int = 3, max_plan_attempts: int = 2,
                 evaluate_base: bool = True, config_overrides: dict[str, Any] | None = None,
                 min_tokens_per_run: int = 1, prompt_chars: int | None = None,
                 loss_explosion_factor: float | None = 2.0, **llm_kwargs: Any):
        self.llm = llm or LLMClient(**llm_kwargs)
        self.tree = ExperimentTree(tree_path)
        self.max_iterations = max_iterations
        self.max_repairs = max_repairs
        self.max_plan_attempts = max_plan_attempts
        self.evaluate_base = evaluate_base
        self.config_overrides = validate_config(config_overrides or {})
        self.min_tokens_per_run = min_tokens_per_run
        self.loss_explosion_factor = loss_explosion_factor  # None: a debug run only fails on an env error
        # Characters of prompt sections: derived from the context window unless given.
        cfg = self.llm.config
        self.prompt_chars = prompt_chars or int((cfg.context_window - cfg.max_tokens) * cfg.chars_per_token * 0.8)
        self.episode = max((n.episode for n in self.tree.nodes.values()), default=0)
        self.stats: dict[str, int] = {}
        self._gen: StepIO | None = None

    # -- protocol
    def reset(self, task_info: dict[str, Any]) -> None:
        self.llm.reset_usage()
        self.episode += 1
        self.task_key = f"{task_info.get('task')}@{task_info.get('task_version', '')}"
        self.description = str(task_info.get("description", ""))
        self.catalogue = ""
        self.base_score: float | None = None
        self.best: ExperimentNode | None = None  # best accepted node of *this* episode (its run exists)
        self.node: ExperimentNode | None = None
        self.phase = "start"
        self.iteration = 0
        self.datasets: dict[str, int] = {}
        self.run_tokens: list[int] = []
        self.stats = {"llm_calls": 0, "llm_errors": 0, "plans": 0, "plan_errors": 0, "debug_runs": 0,
                      "full_runs": 0, "failed_runs": 0, "diverging_debug_runs": 0, "repairs": 0}
        self._obs: dict[str, Any] = {}
        self._info: dict[str, Any] = {}
        self._gen = self._episode()
        self._started = False
        self._llm_failed = False

    def act(self, observation: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        if self._gen is None:
            raise RuntimeError("call reset(task_info) before act()")
        self._obs, self._info = observation, info
        try:
            if not self._started:
                self._started = True
                return next(self._gen)
            return self._gen.send((observation, info))
        except StopIteration:
            return dict(SUBMIT)

    def state(self) -> dict[str, Any]:
        """Where the loop is, recorded with each trajectory step."""
        return {"phase": self.phase, "iteration": self.iteration, "node": self.node.id if self.node else None,
                "best": self.best.id if self.best else None,
                "best_val": self.best.val_score if self.best else None, **self.stats}

    # -- the loop
    def _do(self, action: dict[str, Any]) -> StepIO:
        """Take one env step; returns (observation, info). Also tracks workspace datasets."""
        obs, info = yield action
        self._obs, self._info = obs, info
        result = info.get("result") or {}
        if info.get("ok") and isinstance(result.get("dataset"), str):
            self.datasets[result["dataset"]] = int(result.get("rows", 0) or 0)
        return obs, info

    def _episode(self) -> StepIO:
        self.phase = "explore"
        obs, info = yield from self._do({"tool": "list_sources", "args": {}})
        self.catalogue = result_text(info) if info.get("ok") else ""
        if self.evaluate_base:
            obs, info = yield from self._do({"tool": "evaluate", "args": {"run": "base"}})
            if info.get("ok"):
                self.base_score = float(info["result"].get("score", 0.0))
        plan_failures = 0
        replayed = False
        while self.iteration < self.max_iterations:
            self.phase = "plan"
            plan = self._plan()
            if plan is None and not replayed:
                plan, replayed = self._replay_best(), True
            if plan is None:
                plan_failures += 1
                if plan_failures >= 2:
                    break
                continue
            if not self._can_afford(plan):
                break
            self.iteration += 1
            node = self.tree.add(ExperimentNode(self.tree.new_id(), plan.parent, self.task_key, self.episode,
                                                plan.hypothesis, plan.recipe()))
            self.node = node
            run_id = yield from self._execute(node, plan)
            if run_id is None:
                node.status = "failed"
                self.tree.save()
                continue
            self.phase = "evaluate"
            obs, info = yield from self._do({"tool": "evaluate", "args": {"run": run_id}})
            if not info.get("ok"):
                node.status = "failed"
                node.failures.append(f"evaluate: {info.get('error_class')}: {str(info['result'].get('error'))[:300]}")
                self.tree.save()
                continue
            ev = info["result"]
            node.val_score = float(ev.get("score", 0.0))
            node.subsets = {k: float(v) for k, v in (ev.get("subsets") or {}).items()}
            node.analysis = self._analyse(node, ev)
            self.phase = "judge"
            accepted, reason = self._judge(node)
            node.status, node.judge = ("accepted" if accepted else "rejected"), reason
            if accepted:
                self.best = node
            self.tree.save()
        self.phase = "submit"
        yield from self._do({"tool": "submit", "args": {"run": self.best.run_id} if self.best else {}})

    def _can_afford(self, plan: Plan) -> bool:
        """Whether the budget left pays for this experiment (steps and, once known, tokens of a run)."""
        budget = budget_dict(self._obs)
        steps_needed = len(plan.data_steps) + 5  # set_config, debug, train, evaluate, submit
        if budget.get("steps_left", math.inf) < steps_needed:
            return False
        per_run = max([self.min_tokens_per_run, *self.run_tokens[-3:]])
        return budget.get("tokens_left", math.inf) >= per_run

    def _execute(self, node: ExperimentNode, plan: Plan) -> StepIO:
        """Data steps, config, debug run, full run; repairs on failure. Returns the full run's id or None."""
        steps = deque(plan.data_steps)
        config = {**plan.config, **self.config_overrides}
        dataset = plan.dataset
        done: list[dict[str, Any]] = []  # data steps that succeeded: the recipe a replay can trust
        while True:
            failure: tuple[str, str] | None = None
            self.phase = "data"
            while steps and failure is None:
                action = steps.popleft()
                obs, info = yield from self._do(action)
                if info.get("ok"):
                    done.append(action)
                else:
                    failure = ("data", self._error_text(obs, info))
                    steps.appendleft(action)
            if failure is None:
                self.phase = "config"
                obs, info = yield from self._do({"tool": "set_config", "args": config})
                if not info.get("ok"):
                    failure = ("config", self._error_text(obs, info))
            if failure is None:
                self.phase = "debug"  # fail fast: a few steps on ~100 samples before paying for a full run
                obs, info = yield from self._do({"tool": "train", "args": {"dataset": dataset, "debug": True}})
                node.debug_runs += 1
                self.stats["debug_runs"] += 1
                if not info.get("ok"):
                    self.stats["failed_runs"] += 1
                    failure = ("debug run", self._error_text(obs, info))
                elif self.loss_explosion_factor is not None:
                    why = loss_explosion(info.get("result") or {}, self.loss_explosion_factor)
                    if why:
                        self.stats["diverging_debug_runs"] += 1
                        failure = ("debug run", f"error class CONFIG (the debug run finished but {why})\n"
                                   + clip_middle(result_text(info), 3000))
            if failure is None:
                self.phase = "train"
                obs, info = yield from self._do({"tool": "train", "args": {"dataset": dataset,
                                                                           "max_samples": plan.max_samples}})
                node.full_runs += 1
                self.stats["full_runs"] += 1
                res = info.get("result") or {}
                if info.get("ok"):
                    node.run_id = res.get("run_id")
                    node.train_tokens = int(res.get("train_tokens", 0) or 0)
                    node.final_loss = res.get("final_loss")
                    node.recipe = {**plan.recipe(), "data_steps": done, "dataset": dataset, "config": config}
                    self.run_tokens.append(node.train_tokens)
                    self.tree.save()
                    return node.run_id
                self.stats["failed_runs"] += 1
                failure = ("full run", self._error_text(obs, info))
            stage, error = failure
            node.failures.append(f"{stage}: {error[:400]}")
            if node.repairs >= self.max_repairs:
                return None
            node.repairs += 1
            self.stats["repairs"] += 1
            self.phase = "repair"
            fix = self._repair(node, plan, stage, error, list(steps), config, dataset)
            self.tree.save()
            if fix is None:
                return None
            new_steps, config_update, dataset = fix
            steps = deque(new_steps)
            config = {**config, **config_update, **self.config_overrides}
            node.recipe = {**node.recipe, "data_steps": done + new_steps, "dataset": dataset, "config": config}

    @staticmethod
    def _error_text(obs: dict[str, Any], info: dict[str, Any]) -> str:
        return f"error class {info.get('error_class') or 'INVALID_ACTION'}\n" + clip_middle(
            result_text(info), 5000)

    # -- LLM phases
    def _ask(self, prompt: str) -> dict[str, Any] | None:
        """One structured LLM call (system = FT-Agent + task); the reply's JSON object or None."""
        system = load_prompt("ft_system", description=self.description)  # pinned: never trimmed
        self.stats["llm_calls"] += 1
        self._llm_failed = False
        try:
            reply = self.llm.chat([{"role": "system", "content": system}, {"role": "user", "content": prompt}])
        except LLMError:
            self.stats["llm_errors"] += 1
            self._llm_failed = True
            return None
        return parse_json_object(reply.content)

    def _state_text(self) -> str:
        datasets = ", ".join(f"{k} ({v} rows)" for k, v in self.datasets.items()) or "none"
        base = "not evaluated" if self.base_score is None else f"{100 * self.base_score:.1f}"
        best = "none yet" if self.best is None else f"{self.best.id} (run {self.best.run_id}, val {100 * (self.best.val_score or 0):.1f})"
        tokens = f"; tokens per full run so far: {self.run_tokens}" if self.run_tokens else ""
        return (f"{status_line(self._obs)}\nBase model validation score: {base}. Best run this episode: {best}.\n"
                f"Workspace datasets: {datasets}{tokens}.\nExperiment {self.iteration + 1} of at most "
                f"{self.max_iterations} this episode.")

    def _plan(self) -> Plan | None:
        best = self.tree.best(self.task_key)
        default_parent = best.id if best else None
        budget = self.prompt_chars
        prompt = load_prompt(
            "ft_planner", state=self._state_text(),
            catalogue=clip_middle(self.catalogue, budget // 4) or "(not available)",
            tree=self.tree.describe(self.task_key, self.episode, budget // 3),
            usage="\n".join(usage(t) for t in ("fetch", "filter", "transform", "mix", "set_config")),
        )
        for _ in range(self.max_plan_attempts):
            self.stats["plans"] += 1
            obj = self._ask(prompt)
            try:
                return plan_from_json(obj, default_parent=default_parent)
            except PlanError as exc:
                self.stats["plan_errors"] += 1
                if self._llm_failed:  # the endpoint is down (after its retries): asking again cannot help now
                    break
                prompt = f"{prompt}\n\n## Your previous answer was not usable\n{exc}\nAnswer again in the format above."
        return None

    def _replay_best(self) -> Plan | None:
        """Without a plan from the LLM: the best recipe of an earlier episode, if any (run once)."""
        best = self.tree.best(self.task_key)
        if best is None or best.episode == self.episode:
            return None
        r = best.recipe
        try:
            return Plan(f"replay of {best.id} (no plan from the LLM)", best.id, validate_steps(r.get("data_steps")),
                        str(r["dataset"]), validate_config(r.get("config")), int(r.get("max_samples", MAX_TRAIN_SAMPLES)))
        except (PlanError, KeyError, TypeError, ValueError):
            return None

    def _repair(self, node: ExperimentNode, plan: Plan, stage: str, error: str, remaining: list[dict[str, Any]],
                config: dict[str, Any], dataset: str) -> tuple[list[dict[str, Any]], dict[str, Any], str] | None:
        prompt = load_prompt(
            "ft_repair", stage=stage, attempt=node.repairs, max_repairs=self.max_repairs, hypothesis=node.hypothesis,
            recipe=json.dumps({"data_steps": plan.data_steps, "dataset": dataset, "config": config}, ensure_ascii=False)[:6000],
            remaining=json.dumps(remaining, ensure_ascii=False)[:4000] or "[]", error=error,
            usage="\n".join(usage(t) for t in ("fetch", "filter", "transform", "mix", "set_config", "train")),
        )
        obj = self._ask(prompt)
        if isinstance(obj, dict):
            try:
                steps = validate_steps(obj.get("data_steps"))
                update = validate_config(obj.get("config"))
                new_dataset = obj.get("dataset") if isinstance(obj.get("dataset"), str) and obj.get("dataset") else dataset
                return steps, update, new_dataset
            except PlanError as exc:
                node.failures.append(f"repair not usable: {str(exc)[:200]}")
        # Without a usable answer, one mechanical fix is still sound: halve memory use on OOM.
        if "OOM" in error.split("\n", 1)[0]:
            return remaining, {"batch_size": max(1, int(config.get("batch_size", 8)) // 2),
                               "max_len": max(64, int(config.get("max_len", 512)) // 2)}, dataset
        return None

    def _analyse(self, node: ExperimentNode, ev: dict[str, Any]) -> str:
        wrong = ev.get("wrong_answers") or []
        evaluation = json.dumps({"score": ev.get("score"), "subsets": ev.get("subsets"), "n": ev.get("n"),
                                 "wrong_answers": wrong[:10]}, ensure_ascii=False)
        training = json.dumps({"run": node.run_id, "train_tokens": node.train_tokens, "final_loss": node.final_loss,
                               "debug_runs": node.debug_runs, "repairs": node.repairs}, default=str)
        obj = self._ask(load_prompt("ft_evaluator", hypothesis=node.hypothesis,
                                    recipe=json.dumps(node.recipe, ensure_ascii=False)[:4000], training=training,
                                    evaluation=clip_middle(evaluation, self.prompt_chars // 2)))
        if isinstance(obj, dict) and obj.get("diagnosis"):
            parts = [str(obj["diagnosis"])]
            for key in ("error_patterns", "next_ideas"):
                if isinstance(obj.get(key), list) and obj[key]:
                    parts.append(f"{key.replace('_', ' ')}: " + "; ".join(str(x) for x in obj[key][:5]))
            return " ".join(parts)[:1500]
        # Mechanical summary when the evaluator is unavailable: the numbers and a few wrong answers.
        subsets = ", ".join(f"{k} {100 * v:.0f}" for k, v in (ev.get("subsets") or {}).items())
        examples = "; ".join(f"expected {w.get('reference', '')[:60]!r} got {w.get('output', '')[:60]!r}" for w in wrong[:3])
        return f"val {100 * float(ev.get('score', 0)):.1f} ({subsets}). Wrong: {examples}"[:1500]

    def _judge(self, node: ExperimentNode) -> tuple[bool, str]:
        score = node.val_score or 0.0
        if self.best is not None:
            ref, ref_name = self.best.val_score or 0.0, f"best run {self.best.id}"
        else:
            ref, ref_name = self.base_score, "base model"
        # The numeric guard: a run that does not beat the reference never becomes the best.
        improves = ref is None or score > ref or (self.best is None and score >= ref)
        best_text = ("none yet; the reference is the base model, validation "
                     + ("n/a" if self.base_score is None else f"{100 * self.base_score:.1f}")) if self.best is None else \
            _node_text(self.best, self.episode, full=False)
        obj = self._ask(load_prompt("ft_judge", candidate=_node_text(node, self.episode, full=False), best=best_text))
        verdict = obj.get("accept") if isinstance(obj, dict) else None
        reason = str(obj.get("reason", ""))[:500] if isinstance(obj, dict) else ""
        if not isinstance(verdict, bool):
            return improves, f"numeric rule: {100 * score:.1f} vs {ref_name} " + ("n/a" if ref is None else f"{100 * ref:.1f}")
        if verdict and not improves:
            return False, f"rejected by the numeric guard ({100 * score:.1f} does not beat {ref_name}); judge said: {reason}"
        return verdict, reason or ("accepted" if verdict else "rejected")

"""RL meta-policies over recipe experiments: training scripts (:mod:`~ftdojo_agents.rl.ppo`, CleanRL style;
:mod:`~ftdojo_agents.rl.sb3_example`, stable-baselines3) and the agent that plays a trained policy
(:class:`~ftdojo_agents.rl.policy_agent.RLPolicyAgent`, ``ftdojo_agents.make("rl-policy", path=...)``)."""

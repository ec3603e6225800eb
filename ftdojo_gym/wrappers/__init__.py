"""Gymnasium wrappers of FT-Dojo envs."""

from ftdojo_gym.wrappers.faults import FAULTS, FaultInjection

__all__ = ["FAULTS", "FaultInjection"]

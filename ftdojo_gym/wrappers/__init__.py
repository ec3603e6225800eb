"""Gymnasium wrappers of FT-Dojo envs."""

from ftdojo_gym.wrappers.faults import FAULTS, FaultInjection
from ftdojo_gym.wrappers.numeric_observation import NumericObservation, ObservationEncoder
from ftdojo_gym.wrappers.recipe_actions import Experiment, RecipeActions

__all__ = ["FAULTS", "Experiment", "FaultInjection", "NumericObservation", "ObservationEncoder", "RecipeActions"]

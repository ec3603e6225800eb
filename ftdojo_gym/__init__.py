"""FT-Dojo Gym: autonomous LLM fine-tuning as a Gymnasium benchmark.

``import ftdojo_gym`` registers every task, e.g. ``gym.make("FTDojo/TableBench-v0")``;
``ftdojo_gym.make`` is the same and names the closest ids for a mistyped one.
"""

from ftdojo_gym.actions import tool_schemas, usage
from ftdojo_gym.observations import latest_result, show
from ftdojo_gym.registration import make, register_envs
from ftdojo_gym.tasks import list_tasks

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__", "latest_result", "list_tasks", "make", "register_envs", "show", "tool_schemas", "usage"]

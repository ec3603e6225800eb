"""Tools for task authors: :func:`check_task` tests any task against the FT-Dojo contract."""

from ftdojo_gym.utils.task_checker import TaskCheckError, TaskCheckReport, check_task

__all__ = ["TaskCheckError", "TaskCheckReport", "check_task"]

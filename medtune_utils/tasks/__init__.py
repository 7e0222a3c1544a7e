"""Task registry: one entry per source dataset with its reader, instructions, formatter and parser."""

from .base import Parsed, Task, clean_generation
from .registry import TASKS, get_task, match_source, registered, task_names

__all__ = ["TASKS", "Parsed", "Task", "clean_generation", "get_task", "match_source", "registered", "task_names"]

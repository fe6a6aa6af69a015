"""A project folder and the workflows that run on it (ingest, status).

This layer sits above ``sources`` and ``catalog``: it knows the folder layout, the config
file and how the pieces combine into a command.
"""

from lensloop.project.config import TASKS, ProjectConfig, Task, load_config
from lensloop.project.project import PROJECT_DIRS, Project
from lensloop.project.status import STATUS_SCHEMA, project_status

__all__ = [
    "PROJECT_DIRS",
    "STATUS_SCHEMA",
    "TASKS",
    "Project",
    "ProjectConfig",
    "Task",
    "load_config",
    "project_status",
]

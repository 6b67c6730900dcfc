"""Where and when stages run: schedules (op orders) and executors (threads, processes)."""

from scpl.parallel import dist, local, sequential  # noqa: F401  (registers the executors)
from scpl.parallel.base import (
    EXECUTORS,
    Executor,
    ExecutorOptions,
    OptimConfig,
    build_stage_optimizer,
)
from scpl.parallel.schedules import SCHEDULES, Schedule, resolve_schedule

__all__ = [
    "EXECUTORS",
    "SCHEDULES",
    "Executor",
    "ExecutorOptions",
    "OptimConfig",
    "Schedule",
    "build_stage_optimizer",
    "resolve_schedule",
]

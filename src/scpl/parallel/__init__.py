"""Where and when stages run: schedules (op orders) and executors (threads, processes)."""

from scpl.parallel import dist, local, sequential  # noqa: F401  (registers the executors)
from scpl.parallel.base import (
    EXECUTORS,
    Executor,
    ExecutorOptions,
    OptimConfig,
    StageOptim,
    build_stage_optimizer,
)
from scpl.parallel.schedules import (
    SCHEDULES,
    Schedule,
    auto_schedule,
    resolve_schedule,
    schedules_for,
)

__all__ = [
    "EXECUTORS",
    "SCHEDULES",
    "Executor",
    "ExecutorOptions",
    "OptimConfig",
    "Schedule",
    "StageOptim",
    "auto_schedule",
    "build_stage_optimizer",
    "resolve_schedule",
    "schedules_for",
]

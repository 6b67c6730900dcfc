"""Where and when stages run: executors (and, with the pipeline engine, schedules)."""

from scpl.parallel import sequential  # noqa: F401  (registers the executor)
from scpl.parallel.base import EXECUTORS, Executor, OptimConfig, build_stage_optimizer

__all__ = ["EXECUTORS", "Executor", "OptimConfig", "build_stage_optimizer"]

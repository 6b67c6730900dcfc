"""Registered learning methods. Importing this package registers every method."""

from scpl.methods import al, local  # noqa: F401  (registers methods)
from scpl.methods.base import (
    METHODS,
    Method,
    MethodConfig,
    StageUnit,
    build_method,
    count_parameters,
)
from scpl.methods.supcon import supcon_loss

__all__ = [
    "METHODS",
    "Method",
    "MethodConfig",
    "StageUnit",
    "build_method",
    "count_parameters",
    "supcon_loss",
]

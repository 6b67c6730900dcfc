"""Registered staged models. Importing this package registers every model."""

from scpl.models import paper_nets, text, vision  # noqa: F401  (registers models)
from scpl.models.base import MODELS, StagedModel, build_model, estimate_parameters

__all__ = ["MODELS", "StagedModel", "build_model", "estimate_parameters"]

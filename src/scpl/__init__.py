"""scpl: train deep networks with decoupled local losses and pipeline model parallelism.

The public API (everything a library user needs is importable from here)::

    import scpl
    model = scpl.StagedModel([stage1, stage2], classifier)     # or scpl.split(net, 2)
    with scpl.pipeline(model, method="scpl", devices=["cuda:0", "cuda:1"]) as pipe:
        for x, y in loader:
            pipe.step(x, y)
        print(pipe.metrics(), pipe.evaluate(val_loader))

Names are resolved lazily, so ``import scpl`` (and the CLI's ``--help``) does not pay for torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scpl")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# public name -> module that defines it
_EXPORTS = {
    "pipeline": "scpl.api",
    "Pipeline": "scpl.api",
    "split": "scpl.api",
    "StagedModel": "scpl.models",
    "build_model": "scpl.models",
    "MODELS": "scpl.models",
    "Method": "scpl.methods",
    "MethodConfig": "scpl.methods",
    "METHODS": "scpl.methods",
    "build_method": "scpl.methods",
    "supcon_loss": "scpl.methods",
    "OptimConfig": "scpl.parallel",
    "SCHEDULES": "scpl.parallel",
    "EXECUTORS": "scpl.parallel",
    "DATASETS": "scpl.data",
    "load_dataset": "scpl.data",
    "TrainConfig": "scpl.training.config",
    "make_config": "scpl.training.recipes",
    "RECIPES": "scpl.training.recipes",
    "train": "scpl.training.loop",
    "ScplError": "scpl.errors",
    "ConfigError": "scpl.errors",
    "DataError": "scpl.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scpl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

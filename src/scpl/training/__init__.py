"""How a run is described and driven: typed config and recipes, the training loop, checkpoints."""

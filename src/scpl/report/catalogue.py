"""`scpl list`: what is registered (models, methods, datasets, executors, schedules),
the named experiments and the recipes."""

from __future__ import annotations


def catalogue(experiments: dict | None = None, all_recipes: bool = False) -> str:
    """Every registry's names with their one-line descriptions, the named ``experiments``
    (name -> Experiment) and the recipes; paper recipes summarised unless ``all_recipes``."""
    from scpl.data import DATASETS
    from scpl.methods import METHODS
    from scpl.models import MODELS
    from scpl.parallel import EXECUTORS, SCHEDULES
    from scpl.training.recipes import RECIPES

    lines: list[str] = []
    for title, reg in (
        ("models", MODELS),
        ("methods", METHODS),
        ("datasets", DATASETS),
        ("executors", EXECUTORS),
        ("schedules", SCHEDULES),
    ):
        lines.append(f"{title}:")
        for name in reg.names():
            lines.append(f"  {name:16s} {reg.describe(name)}")
            if reg is DATASETS:
                lines += _augment_line(DATASETS.get(name))
            if reg is METHODS:
                for preset, opts in getattr(METHODS.get(name), "presets", {}).items():
                    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in opts.items())
                    lines.append(f"    --preset {preset}: {flags}")
    lines.append("experiments:")
    for name, e in (experiments or {}).items():
        lines.append(f"  {name:20s} {'/'.join(e.models)} x {'/'.join(e.rows)} (recipe {e.recipe})")
    lines.append("recipes:")
    paper = [r for r in RECIPES if r.startswith("paper-")]
    lines += [f"  {r}" for r in sorted(set(RECIPES) - set(paper))]
    if all_recipes:
        lines += [f"  {r}" for r in sorted(paper)]
    else:
        lines.append(
            f"  paper-<dataset>-<model>-<method>  ({len(paper)} recipes, e.g. {paper[0]}; "
            "--recipes lists all)"
        )
    return "\n".join(lines)


def _augment_line(spec) -> list[str]:
    """What a default run's augmentation does to an image dataset (flips, crop size)."""
    from scpl.data.augment import describe_augment, use_flips
    from scpl.training.config import TrainConfig

    if spec.kind != "image" or len(spec.input_shape) != 3:
        return []
    flip = use_flips(TrainConfig.flip, spec.orientation_sensitive)
    what = describe_augment(TrainConfig.augment, spec.input_shape, flip)
    why = " [orientation-sensitive: no flips unless --flip on]" if spec.orientation_sensitive else ""
    return [f"  {'':16s}   default augment {what}{why}"]

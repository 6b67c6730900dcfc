"""`scpl params`: training vs inference parameter counts per model and method (Delog-SCL Table 5).

Training parameters include what only training needs (projection heads, local classifiers:
"affiliated"); inference keeps the stages and the final classifier ("effective").
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("model", "method", "training", "effective", "affiliated")


@dataclass
class ParamsOptions:
    """What `scpl params` counts."""

    model: str | None = None
    """One registered model (default: every model that takes the dataset's kind of input)."""
    dataset: str = "cifar10"
    """Dataset whose input shape and class count size the models."""
    stages: int = 4
    """Number of stages K."""
    width: float = 1.0
    """Channel-width multiplier."""
    head: str = "mlp"
    """Projection head of hidden stages: identity, linear or mlp."""
    methods: str | None = None
    """Comma-separated methods (default: every registered method)."""
    out: str | None = None
    """Also write params.md and params.csv into this directory."""


def parameter_rows(opts: ParamsOptions) -> tuple[str, list[dict]]:
    """(title, rows): one row of counts per (model, method)."""
    from scpl.data import dataset_spec
    from scpl.methods import METHODS, MethodConfig, build_method, count_parameters
    from scpl.models import build_model
    from scpl.models.base import models_of_kind

    spec = dataset_spec(opts.dataset)
    models = [opts.model] if opts.model else list(models_of_kind(spec.kind))
    if opts.methods:
        methods = [m.strip() for m in opts.methods.split(",") if m.strip()]
    else:
        methods = METHODS.names()
    title = (
        f"parameters on {opts.dataset} {spec.input_shape}, {spec.num_classes} classes, "
        f"K={opts.stages}, width={opts.width}, head={opts.head}"
    )
    rows = []
    for name in models:
        for meth in methods:
            model = build_model(name, spec.input_shape, spec.num_classes, opts.stages, opts.width)
            units = build_method(meth, MethodConfig(head=opts.head)).attach(model)
            rows.append({"model": name, "method": meth, **count_parameters(units)})
    return title, rows


def params_markdown(title: str, rows: list[dict]) -> str:
    """The counts as a Markdown table under a ``# title`` line."""
    lines = [
        f"# {title}",
        "",
        "| model | method | training | inference (effective) | affiliated (training-only) |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['method']} | {r['training']:,} | {r['effective']:,} | "
        f"{r['affiliated']:,} |"
        for r in rows
    ]
    return "\n".join(lines)


def write_params(out: str | Path, title: str, rows: list[dict]) -> Path:
    """Write params.md and params.csv into ``out``; returns the directory."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.md").write_text(params_markdown(title, rows) + "\n")
    with open(out / "params.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return out

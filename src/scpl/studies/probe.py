"""Linear probes per stage: ``scpl probe RUN_DIR [RUN_DIR ...]``.

Where does a locally trained network lose what BP keeps? For each stage of a finished run, a
linear classifier is trained on that stage's (frozen) output and scored on the test split: the
accuracy a stage's features support on their own. Greedy local learning is known to discard
information early that later stages would have needed (Wang et al. 2021, "Revisiting Locally
Supervised Learning", InfoPro), which shows as early stages probing *higher* than BP's and the
last stage lower. Maps are average-pooled to ``pool x pool`` before the probe (the full map of
an early stage has more inputs than a cheap probe can fit without overfitting); text features
are the model's pooled features.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from scpl.errors import ConfigError


def load_run(run_dir: Path):
    """(config, data, units in eval mode) of a finished run folder."""
    from scpl.data import load_dataset
    from scpl.methods import build_method
    from scpl.models import MODELS, build_model
    from scpl.training.build import method_config, text_model_kwargs
    from scpl.training.config import TrainConfig

    summary = run_dir / "summary.json"
    final = run_dir / "final.rank0.pt"
    if not summary.exists() or not final.exists():
        raise ConfigError(f"{run_dir} has no finished run (summary.json and final.rank0.pt)")
    saved = json.loads(summary.read_text())["config"]
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in names})
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.download, cfg.val_fraction, cfg.seed)
    kwargs = text_model_kwargs(cfg, data, lambda *a, **k: None)
    model = build_model(
        cfg.model,
        data.input_shape,
        data.num_classes,
        cfg.stages,
        cfg.width,
        cfg.partition_list(),
        init=cfg.resolved_init(getattr(MODELS.get(cfg.model), "kind", "image")),
        **kwargs,
    )
    units = build_method(cfg.method, method_config(cfg)).attach(model)
    for unit, state in zip(units, torch.load(final, weights_only=False), strict=True):
        unit.load_state_dict(state)
    units.eval()
    return cfg, data, units


@torch.no_grad()
def stage_features(cfg, data, units, split, limit: int, pool: int) -> list[torch.Tensor]:
    """Each stage's output on the first ``limit`` samples of ``split``, pooled and flattened."""
    from scpl.data.augment import Augment

    image = data.kind == "image"
    norm = Augment("none", data.input_shape, data.mean, data.std) if image else None
    n = min(limit, len(split)) if limit else len(split)
    feats: list[list[torch.Tensor]] = [[] for _ in units]
    for i in range(0, n, 512):
        if image:
            x = norm.normalise(split.x[i : min(n, i + 512)])
        else:
            x = (split.x[i : min(n, i + 512)], split.lengths[i : min(n, i + 512)])
        for s, unit in enumerate(units):
            x = unit(x)
            h = x[0] if isinstance(x, tuple) else x
            if h.dim() == 4:
                h = F.adaptive_avg_pool2d(h, (min(pool, h.shape[2]), min(pool, h.shape[3])))
                feats[s].append(h.flatten(1))
            else:
                feats[s].append(unit.features(x).flatten(1))
    return [torch.cat(f) for f in feats]


def fit_probe(xtr, ytr, xte, yte, classes: int, epochs: int = 60, seed: int = 0) -> float:
    """Test accuracy of a linear classifier trained (Adam, full-batch standardised features)
    on the training features."""
    g = torch.Generator().manual_seed(seed)
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    lin = torch.nn.Linear(xtr.shape[1], classes)
    with torch.no_grad():
        lin.weight.normal_(0, 0.01, generator=g)
        lin.bias.zero_()
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-4)
    n = xtr.shape[0]
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(1024):
            opt.zero_grad()
            F.cross_entropy(lin(xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((lin(xte).argmax(1) == yte).float().mean())


def probe_run(run_dir: Path, train_samples: int = 10000, pool: int = 4) -> dict:
    """Per-stage probe accuracies of one run (fractions), with what the run was."""
    torch.manual_seed(0)
    cfg, data, units = load_run(Path(run_dir))
    tr = stage_features(cfg, data, units, data.train, train_samples, pool)
    te = stage_features(cfg, data, units, data.test, 0, pool)
    ytr = data.train.y[: tr[0].shape[0]]
    accs = [
        fit_probe(a, ytr, b, data.test.y, data.num_classes) for a, b in zip(tr, te, strict=True)
    ]
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    return {
        "run": str(run_dir),
        "model": cfg.model,
        "method": cfg.method,
        "width": cfg.width,
        "head": cfg.head,
        "steps": cfg.train_steps,
        "test_acc": summary.get("test_acc"),
        "probe_acc": accs,
    }


def probe_table(results: list[dict]) -> str:
    """Markdown: one row per run, one column per stage."""
    k = max(len(r["probe_acc"]) for r in results)
    lines = [
        "| run | method | test acc | " + " | ".join(f"stage {s + 1}" for s in range(k)) + " |",
        "|---|---|---|" + "---|" * k,
    ]
    for r in results:
        cells = [f"{100 * a:.2f}" for a in r["probe_acc"]]
        acc = f"{100 * r['test_acc']:.2f}" if r.get("test_acc") is not None else "–"
        lines.append(f"| {r['run']} | {r['method']} | {acc} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["fit_probe", "load_run", "probe_run", "probe_table", "stage_features"]

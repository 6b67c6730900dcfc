"""Checks a run makes before, during and after training (resume settings, data that cannot
train, a batch of one under BatchNorm, runs that learned nothing, non-finite losses): each
stops the run with one line naming the problem and the fix."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import torch
from torch import nn

from scpl.api import Pipeline
from scpl.data import DataBundle
from scpl.errors import ConfigError, DataError, ScplError
from scpl.training.checkpoint import latest_checkpoint, load_checkpoint
from scpl.training.config import TrainConfig, resume_safe
from scpl.training.feed import DatasetFeed


def check_resume_config(saved: dict, cfg: TrainConfig) -> None:
    """Refuse to resume with settings that would change the computation (every field whose
    class in :data:`~scpl.training.config.FIELD_CLASS` is not resume-safe must match)."""
    now = dataclasses.asdict(cfg)
    default = dataclasses.asdict(TrainConfig())
    diff = [
        f"--{k.replace('_', '-')} {saved.get(k, default.get(k))!r} -> {now[k]!r}"
        for k in now
        if not resume_safe(k) and saved.get(k, default.get(k)) != now[k]
    ]
    if "epochs" in saved and saved["epochs"] != now["epochs"] and now["lr_schedule"] == "cosine" and not now.get("train_steps"):
        # The cosine schedule's length is fixed by the epochs it was planned for.
        diff.append(f"--epochs {saved.get('epochs')!r} -> {now['epochs']!r} (cosine schedule)")
    if diff:
        raise ConfigError(
            f"--resume with settings that change the result ({'; '.join(diff)}); drop those "
            "flags to continue the run (resume-safe: epochs under a constant LR, log and "
            "checkpoint intervals, progress, devices)"
        )


def check_schedule_resume(saved: dict, cfg: TrainConfig, steps_per_epoch: int, step: int) -> None:
    """Refuse a resume whose new run length changes the LR of updates already made or of the
    next one. A cosine schedule is tied to its length; a WSD schedule may change length while
    the checkpoint is still in the constant phase of both lengths (how budgets branch)."""
    from scpl.parallel.base import wsd_decay_start

    old_cfg = dataclasses.replace(
        cfg, epochs=saved.get("epochs", cfg.epochs), train_steps=saved.get("train_steps", 0)
    )
    old, new = old_cfg.total_steps(steps_per_epoch), cfg.total_steps(steps_per_epoch)
    if old == new or cfg.lr_schedule == "constant":
        return
    if cfg.lr_schedule == "wsd":
        start = min(wsd_decay_start(old, cfg.decay_fraction), wsd_decay_start(new, cfg.decay_fraction))
        if step < start:
            return
        why = f"step {step} is past the constant phase (it ends at step {start})"
    else:
        why = f"the {cfg.lr_schedule} LR schedule is tied to the run's length"
    raise ConfigError(
        f"--resume at step {step} cannot change the run's length from {old} to {new} steps: "
        f"{why}; keep --epochs/--train-steps as they were"
    )


def resume_config(
    run_dir: str, overrides: dict, cls: type = TrainConfig
) -> tuple[TrainConfig, str]:
    """The config and recipe a run saved in its newest checkpoint, with ``overrides`` (flags
    given with --resume: None means not given) applied. Flags that would change the result
    stop the run with one line listing them."""
    run = Path(run_dir)
    if run.is_file():
        raise ScplError(f"--resume {run} is a file; pass the run's output folder")
    newest = latest_checkpoint(run, 0, None)
    saved = load_checkpoint(newest)
    values = dict(saved.get("config", {}))
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if k in names}  # fields since removed
    if values:
        values.setdefault("flip", "on")  # runs saved before --flip flipped every dataset
    given = {k: v for k, v in overrides.items() if k in names and v is not None}
    changed = {k: v for k, v in given.items() if values.get(k, v) != v}
    bad = sorted(k for k in changed if not resume_safe(k))
    if values.get("lr_schedule", "cosine") == "cosine" and "epochs" in changed:
        bad.append("epochs")
    if bad:
        listed = ", ".join(f"--{k.replace('_', '-')}" for k in bad)
        why = (
            f" (its cosine LR schedule was planned for {values['epochs']} epochs)"
            if "epochs" in bad
            else ""
        )
        raise ConfigError(
            f"--resume {run}: {listed} would change the result of the run{why}; drop "
            f"{'it' if len(bad) == 1 else 'them'} to continue it (its settings come from its "
            "checkpoint), or start a new run with another --out"
        )
    values.update(given)
    values["resume"] = str(run)
    values["overwrite"] = False
    cfg = cls(**values)
    cfg.validate()
    return cfg, str(saved.get("recipe", "custom"))


def check_splits(data: DataBundle) -> None:
    """Validation and test samples must have the training samples' shape (the model is built
    for that one)."""
    shape = tuple(data.train.x.shape[1:])
    for name in ("val", "test"):
        split = getattr(data, name)
        if len(split) and data.kind == "image" and tuple(split.x.shape[1:]) != shape:
            raise DataError(
                f"{data.name}: {name} samples have shape {tuple(split.x.shape[1:])} but training "
                f"samples {shape}; use {name} files of the same size as the training files"
            )


def check_classes(feed) -> None:
    """Refuse training labels of a single class before training (every accuracy would be 100%
    and nothing would have been learned)."""
    labels = None
    if isinstance(feed, DatasetFeed):
        labels = feed.data.train.y
    else:
        ds = getattr(feed.train, "dataset", None)
        labels = getattr(ds, "targets", None)
        if labels is None and hasattr(ds, "tensors"):
            labels = ds.tensors[-1]
        if labels is None and isinstance(feed.train, list | tuple):
            # A list of (x, y) batches: reading its labels costs nothing and may be repeated.
            labels = torch.cat([torch.as_tensor(b[1]).reshape(-1) for b in feed.train])
    if labels is None:
        return
    classes = torch.unique(torch.as_tensor(labels))
    if classes.numel() < 2:
        raise DataError(
            f"the training labels hold a single class ({int(classes[0]) if classes.numel() else 'none'}); "
            "a classifier needs at least two: check the label file or column"
        )


def check_batch_norm(pipe: Pipeline, cfg: TrainConfig, feed) -> None:
    """BatchNorm cannot normalise one sample per channel: refuse (micro-)batches of one up
    front instead of failing inside a stage."""
    if not isinstance(feed, DatasetFeed):
        return
    views = feed.augment.num_views if feed.augment is not None else 1
    per_micro = cfg.batch_size * views // max(1, cfg.micro_batches)
    if per_micro >= 2:
        return
    bn = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    if any(isinstance(m, bn) for m in (pipe.units or pipe.model).modules()):
        inputs = cfg.batch_size * views
        if cfg.micro_batches > 1 and inputs >= 2:
            # The batch is big enough: the micro-batches are too many (the fix is not a batch
            # of 2, which would be smaller than the one given).
            fit = max(d for d in range(1, inputs // 2 + 1) if inputs % d == 0)
            raise ConfigError(
                f"--micro-batches {cfg.micro_batches} splits the batch of {inputs} inputs into "
                "micro-batches of one, which the BatchNorm layers cannot normalise; use "
                f"--micro-batches {fit} or fewer (a divisor of {inputs}), or a larger --batch-size"
            )
        raise ConfigError(
            f"--batch-size {cfg.batch_size} with --micro-batches {cfg.micro_batches} gives the "
            "BatchNorm layers one sample per training (micro-)batch, which they cannot normalise; "
            "use --batch-size 2 or more (or fewer --micro-batches)"
        )


def note_skipped(means: dict[str, float], applied: dict[str, bool]) -> None:
    """Record, per stage, whether any update was applied (``stageL/skipped`` is the share of
    skipped updates under --nan-guard skip)."""
    for k, v in means.items():
        stage, _, term = k.partition("/")
        if term == "skipped":
            applied[stage] = applied.get(stage, False) or v < 1.0


def check_learned(steps: int, applied: dict[str, bool], cfg: TrainConfig) -> None:
    """A run that trained nothing must not end like one that did."""
    if steps == 0:
        raise ScplError(
            "the run trained zero steps; check --max-steps and that the training data yields batches"
        )
    never = sorted(k for k, v in applied.items() if not v)
    if cfg.executor == "dist":
        import torch.distributed as tdist

        if tdist.is_initialized():
            every: list = [None] * tdist.get_world_size()
            tdist.all_gather_object(every, never)
            never = sorted({k for part in every for k in part})
    if never:
        raise ScplError(
            f"every update of {', '.join(s.replace('stage', 'stage ') for s in never)} was skipped "
            f"by --nan-guard skip ({steps} steps): the run learned nothing; lower --lr or check the "
            "data"
        )


def check_finite(means: dict[str, float], step: int) -> None:
    """Stop with a clear message on a NaN/inf loss, naming the stage and term."""
    for k, v in means.items():
        if not math.isfinite(v):
            stage, term = k.split("/")
            raise ScplError(
                f"non-finite {term} loss ({v}) at {stage}, step {step}; lower --lr or check the data"
            )


def check_state_finite(state, step: int) -> None:
    """Refuse to checkpoint a state holding NaN/inf (weights, BatchNorm statistics, optimizer
    moments): the NaN guard's flags see losses and gradients, not a finite gradient times a
    huge LR. One host read per device."""
    found: list[tuple[str, torch.Tensor]] = []

    def walk(obj, name: str) -> None:
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point():
                found.append((name, obj))
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(obj, list | tuple):
            for i, v in enumerate(obj):
                walk(v, f"{name}[{i}]")

    walk(state, "")
    by_dev: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, t in found:
        by_dev.setdefault(t.device, []).append((name, t))
    for items in by_dev.values():
        ok = torch.stack([torch.isfinite(t).all() for _, t in items]).tolist()
        bad = [name for (name, _), fine in zip(items, ok, strict=True) if not fine]
        if bad:
            from scpl.parallel.base import NonFiniteError

            raise NonFiniteError(
                f"non-finite values in the training state at step {step} ({bad[0]}"
                f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); lower --lr (or "
                "--lr-min) or check the data"
            )


def check_weights_finite(states: list[dict], first_stage: int = 0) -> None:
    """The trained weights and BatchNorm statistics must be finite: --nan-guard skip drops a
    bad batch's update, but its forward pass still moves BatchNorm's running statistics (and
    an update can overflow without a non-finite gradient), so a run could otherwise end with
    NaN weights and report a chance-level accuracy as a result."""
    for i, state in enumerate(states):
        bad = [
            k
            for k, v in state.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
        ]
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise ScplError(
                f"stage {first_stage + i} ended with non-finite values in {bad[0]}{more}: the "
                "model is broken (NaN/inf weights or BatchNorm statistics); lower --lr or check "
                "the data (its final weights are in final.rank*.pt for inspection)"
            )


# Bytes per parameter while training: the fp32 weight, its gradient and Adam's two moments.
TRAIN_BYTES_PER_PARAM = 16


def device_memory(devices: list[torch.device]) -> int:
    """Total memory of the distinct ``devices`` (stages on one device share it): RAM for the
    CPU, each GPU's own memory."""
    total = 0
    for dev in dict.fromkeys(devices):
        if dev.type == "cuda":
            total += torch.cuda.get_device_properties(dev).total_memory
        else:
            total += os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total


def check_model_fits(cfg: TrainConfig, params: float | None, devices: list[torch.device]) -> None:
    """Refuse a model whose weights, gradients and Adam state alone exceed the devices' memory
    (a huge --width), before it is built: building it would end in an allocation traceback
    or in the kernel killing the process."""
    if params is None:
        return
    need, have = params * TRAIN_BYTES_PER_PARAM, device_memory(devices)
    if need > have:
        where = ", ".join(str(d) for d in dict.fromkeys(devices))
        count = "more than 2^63" if math.isinf(params) else f"{params:.3g}"
        raise ConfigError(
            f"--width {cfg.width:g} gives {cfg.model} {count} parameters, which need "
            f"{need / 2**30:.3g} GiB to train (weights, gradients, Adam state) but {where} "
            f"{'has' if len(set(devices)) == 1 else 'have'} {have / 2**30:.3g} GiB; use a "
            "smaller --width (1 is the paper's size)"
        )

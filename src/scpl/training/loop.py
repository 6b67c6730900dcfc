"""The training loop: data -> model -> method -> executor -> epochs -> best-on-validation -> test.

Reads top to bottom; everything it calls is selected by name from a registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from scpl.atomic import atomic_write
from scpl.common import (
    dist_env,
    init_distributed,
    resolve_devices,
    seed_everything,
    shutdown_distributed,
)
from scpl.data import DataBundle, Split, load_dataset
from scpl.data.augment import Augment
from scpl.errors import ConfigError, ScplError
from scpl.methods import MethodConfig, build_method, count_parameters
from scpl.models import MODELS, build_model
from scpl.parallel import EXECUTORS, ExecutorOptions, OptimConfig
from scpl.provenance import git_commit, hardware
from scpl.training.checkpoint import (
    atomic_save,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from scpl.training.config import TrainConfig


def train(cfg: TrainConfig, recipe: str = "custom", echo=print) -> dict:
    """Train per ``cfg``; writes metrics.jsonl and summary.json to the output dir; returns the summary."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = dist_env()
    if cfg.executor == "dist":
        if env.world_size != cfg.stages:
            raise ConfigError(
                f"--executor dist needs one process per stage ({cfg.stages}), found {env.world_size}; "
                f"pass --nproc {cfg.stages} or launch with torchrun --nproc-per-node {cfg.stages}"
            )
        devices = resolve_devices(cfg.devices, cfg.stages, cfg.device)
        if not cfg.devices and devices[0].type == "cuda":
            devices = [torch.device("cuda", env.local_rank)] * cfg.stages  # one GPU per rank
        init_distributed(devices[env.rank], cfg.dist_timeout)
        if env.rank != 0:
            echo = _silent  # rank 0 reports; every rank logs its own stage's metrics
    else:
        devices = resolve_devices(cfg.devices, cfg.stages, cfg.device)
    out_dir = Path(cfg.resume) if cfg.resume else prepare_out_dir(cfg, recipe)
    seed_everything(cfg.seed)
    device = devices[env.rank] if cfg.executor == "dist" else devices[0]  # batches are built here

    # Data: in memory (uint8 images / int64 token ids); batches are sampled by index and, for
    # images, augmented on the device.
    text_settings(cfg)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.download, cfg.val_fraction, cfg.seed)
    model_kind = getattr(MODELS.get(cfg.model), "kind", "image")
    if data.kind != model_kind:
        raise ConfigError(
            f"model {cfg.model!r} takes {model_kind} data but {cfg.dataset!r} is a {data.kind} "
            f"dataset; pick a {data.kind} model ({', '.join(models_of_kind(data.kind))})"
        )
    if data.kind == "image":
        augment = Augment(cfg.augment, data.input_shape, data.mean, data.std).to(device)
    else:
        augment = None  # the paper uses no augmentation for text (batch of N, not 2N)
    steps_per_epoch = len(data.train) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} exceeds the {len(data.train)} training samples; lower it"
        )
    if cfg.max_steps:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps)

    # Model -> method (heads, local losses) -> executor (where/when stages run).
    model = build_model(
        cfg.model,
        data.input_shape,
        data.num_classes,
        cfg.stages,
        cfg.width,
        cfg.partition_list(),
        **text_model_kwargs(cfg, data, echo),
    )
    method = build_method(
        cfg.method,
        MethodConfig(cfg.head, cfg.temperature, cfg.proj_dim, cfg.supcon_norm, cfg.last_supcon),
    )
    units = method.attach(model)
    params = count_parameters(units)
    optim = OptimConfig(
        cfg.lr, cfg.lr_min, cfg.weight_decay, steps_per_epoch * cfg.epochs, cfg.lr_schedule
    )
    schedule = cfg.resolved_schedule(method.local)
    options = ExecutorOptions(
        schedule,
        cfg.micro_batches,
        cfg.queue_depth,
        nan_guard="off" if cfg.nan_guard == "interval" else cfg.nan_guard,
    )
    executor = EXECUTORS.get(cfg.executor)(units, method.local, optim, devices, options, cfg.method)
    echo(
        f"scpl: {cfg.model} ({model.num_stages} stages, partition {model.partition}) "
        f"{cfg.method} on {cfg.dataset} [{len(data.train)}/{len(data.val)}/{len(data.test)}] "
        f"executor={cfg.executor} schedule={schedule} devices={','.join(map(str, devices))} "
        f"params effective={params['effective']:,} affiliated={params['affiliated']:,}"
    )

    if cfg.executor == "dist":
        # Start-up (data loading, model building) may take long; align ranks before the
        # steady state, whose waits are bounded by --dist-timeout.
        executor.barrier(max(600.0, cfg.dist_timeout))
    needs_input = getattr(executor, "needs_input", True)  # dist: only rank 0 reads data
    log = MetricsLog(
        out_dir,
        cfg.tensorboard,
        "metrics.jsonl" if env.rank == 0 else f"metrics.rank{env.rank}.jsonl",
    )
    g = torch.Generator().manual_seed(cfg.seed)  # data order
    best = {"epoch": -1, "val_acc": -1.0, "state": None}
    train_seconds, samples_seen, step = 0.0, 0, 0
    start_epoch, start_i = 0, 0

    def checkpoint(epoch: int, next_i: int, g_state: torch.Tensor) -> None:
        save_checkpoint(
            out_dir,
            step,
            env.rank,
            {
                "executor": executor.state_dict(),
                "rng": rng_state(),
                "data_g": g_state,
                "epoch": epoch,
                "next_i": next_i,
                "step": step,
                "best": best,
                "train_seconds": train_seconds,
                "samples_seen": samples_seen,
                "config": dataclasses.asdict(cfg),
            },
        )

    if cfg.resume:
        ck = load_checkpoint(
            latest_checkpoint(out_dir, env.rank, env.world_size if cfg.executor == "dist" else 1)
        )
        check_resume_config(ck["config"], cfg)
        executor.load_state_dict(ck["executor"])
        set_rng_state(ck["rng"])
        g.set_state(ck["data_g"])
        start_epoch, start_i, step = ck["epoch"], ck["next_i"], ck["step"]
        best, train_seconds, samples_seen = ck["best"], ck["train_seconds"], ck["samples_seen"]
        echo(f"scpl: resumed {out_dir} at epoch {start_epoch + 1}, step {step}")

    try:
        for epoch in range(start_epoch, cfg.epochs):
            executor.train(True)
            g_epoch_start = g.get_state()
            perm = torch.randperm(len(data.train), generator=g)
            first = start_i if epoch == start_epoch else 0
            bar = progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress)
            bar.update(first)
            t0 = time.perf_counter()
            for i in range(first, steps_per_epoch):
                idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                # Pipelined executors return before the batch is done.
                if needs_input:
                    x, y = batch_to(data.train, idx, device)
                    executor.submit(*(augment(x, y) if augment is not None else (x, y)))
                else:
                    executor.submit(None, None)  # dist ranks > 0 receive from their neighbour
                step += 1
                samples_seen += len(idx)
                if step % cfg.log_every == 0 or i == steps_per_epoch - 1:
                    if i == steps_per_epoch - 1:
                        executor.flush()
                    means = executor.collect()  # metrics of finished batches: one sync per interval
                    if cfg.nan_guard != "skip":
                        check_finite(means, step)
                    bar.set_postfix_str(
                        " ".join(f"{k.replace('stage', 's')}={v:.3f}" for k, v in means.items())
                    )
                    log.write({"kind": "train", "epoch": epoch, "step": step, **means})
                if (
                    cfg.checkpoint_every
                    and step % cfg.checkpoint_every == 0
                    and i < steps_per_epoch - 1
                ):
                    checkpoint(epoch, i + 1, g_epoch_start)
                bar.update(1)
            executor.flush()
            for d in set(devices):
                if d.type == "cuda":
                    torch.cuda.synchronize(d)
            epoch_seconds = time.perf_counter() - t0
            train_seconds += epoch_seconds
            bar.close()

            val_acc, val_seconds = (
                timed_evaluate(executor, data.val, augment, cfg.eval_batch_size, device)
                if len(data.val)
                else (float("nan"), 0.0)
            )
            record = {
                "kind": "epoch",
                "epoch": epoch,
                "step": step,
                "val_acc": val_acc,
                "train_seconds": train_seconds,
                "epoch_train_seconds": epoch_seconds,
                "val_seconds": val_seconds,
                "lr": executor.current_lr(),
            }
            if cfg.test_every_epoch:
                # For learning curves only; model selection below looks at validation alone.
                record["test_acc"], record["test_seconds"] = timed_evaluate(
                    executor, data.test, augment, cfg.eval_batch_size, device
                )
            log.write(record)
            echo(f"epoch {epoch + 1}: val_acc={val_acc:.4f} ({train_seconds:.1f}s training)")
            if not len(data.val) or val_acc > best["val_acc"]:
                best = {
                    "epoch": epoch,
                    "val_acc": val_acc,
                    "state": [cpu_copy(u) for u in executor.unit_states()],
                }
            checkpoint(epoch + 1, 0, g.get_state())
    except BaseException:
        # Stop worker threads before the error propagates; a close that fails too (e.g. the
        # peer that caused the error is gone) must not hide the original error.
        with contextlib.suppress(Exception):
            executor.close()
        raise

    # The last weights (for inspection and resume checks), then the final number on the test
    # split from the epoch chosen on validation.
    atomic_save([cpu_copy(u) for u in executor.unit_states()], out_dir / f"final.rank{env.rank}.pt")
    if best["state"] is not None:
        executor.load_unit_states(best["state"])
    test_acc, test_seconds = timed_evaluate(
        executor, data.test, augment, cfg.eval_batch_size, device
    )
    executor.close()
    summary = {
        "test_acc": test_acc,
        "best_epoch": best["epoch"] + 1,
        "best_val_acc": best["val_acc"],
        "samples_per_s": samples_seen / train_seconds if train_seconds else 0.0,
        "train_seconds": train_seconds,
        # One pass over the test split (inference path only): Delog-SCL Table 7's test time.
        "test_seconds": test_seconds,
        "num_test": len(data.test),
        "steps_per_epoch": steps_per_epoch,
        "steps": step,
        "params": params,
        "recipe": recipe,
        "config": dataclasses.asdict(cfg),
        "versions": versions(),
        "out_dir": str(out_dir),
    }
    if env.rank == 0:
        atomic_write_json(out_dir / "summary.json", summary)
    log.close()
    if cfg.executor == "dist":
        shutdown_distributed()
    return summary


def _silent(*args, **kwargs) -> None:
    pass


# Fields that must match for a resumed run to continue the same computation.
RESUME_FIELDS = (
    "model",
    "method",
    "dataset",
    "stages",
    "partition",
    "width",
    "epochs",
    "batch_size",
    "lr",
    "lr_min",
    "lr_schedule",
    "head",
    "proj_dim",
    "temperature",
    "supcon_norm",
    "augment",
    "seed",
    "max_steps",
    "micro_batches",
    "executor",
)


def check_resume_config(saved: dict, cfg: TrainConfig) -> None:
    """Refuse to resume with settings that would change the computation."""
    now = dataclasses.asdict(cfg)
    diff = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in RESUME_FIELDS if saved.get(k) != now[k]]
    if diff:
        raise ConfigError(
            f"--resume with different settings ({'; '.join(diff)}); drop those overrides to continue the run"
        )


def batch_to(split: Split, idx: torch.Tensor, device: torch.device):
    """Gather a batch by index and move it to the device (pinned + non-blocking on CUDA).

    Text batches become ((tokens, lengths), y), trimmed to the batch's longest document so
    no stage computes on columns that are padding for every row."""
    x, y = split.x[idx], split.y[idx]
    if split.lengths is not None:
        lengths = split.lengths[idx]
        x = x[:, : int(lengths.max())]
        if device.type == "cuda":
            x, y, lengths = x.pin_memory(), y.pin_memory(), lengths.pin_memory()
        return (x.to(device, non_blocking=True), lengths.to(device, non_blocking=True)), y.to(
            device, non_blocking=True
        )
    if device.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def text_settings(cfg: TrainConfig) -> None:
    """Pass text preprocessing settings to the loaders (they read them from the environment)."""
    os.environ["SCPL_VOCAB_SIZE"] = str(cfg.vocab_size)
    if cfg.max_len:
        os.environ["SCPL_MAX_LEN"] = str(cfg.max_len)
    else:
        os.environ.pop("SCPL_MAX_LEN", None)


def text_model_kwargs(cfg: TrainConfig, data: DataBundle, echo) -> dict:
    """Vocabulary size and (GloVe) embeddings for text models; nothing for image models."""
    if data.kind != "text":
        return {}
    from scpl.data.glove import load_glove_or_random

    vocab = data.extra["vocab"]
    emb, notice = load_glove_or_random(cfg.glove, vocab, cfg.embed_dim, cfg.seed)
    if notice:
        echo(f"scpl: note: {notice}")
    return dict(
        vocab_size=len(vocab),
        embed_dim=cfg.embed_dim,
        embeddings=emb,
        freeze_embeddings=cfg.freeze_embeddings,
    )


def models_of_kind(kind: str) -> list[str]:
    return [m for m in MODELS.names() if getattr(MODELS.get(m), "kind", "image") == kind]


@torch.no_grad()
def evaluate(
    executor, split: Split, augment: Augment, batch_size: int, device: torch.device
) -> float:
    """Top-1 accuracy of the inference path (stages + classifier, no heads) on ``split``."""
    executor.train(False)

    def batches():
        for start in range(0, len(split), batch_size):
            x, y = batch_to(split, torch.arange(start, min(start + batch_size, len(split))), device)
            yield (augment.normalise(x) if augment is not None else x), y

    correct, total = executor.evaluate(batches())
    executor.train(True)
    return correct / max(1, total)


def timed_evaluate(*args) -> tuple[float, float]:
    """:func:`evaluate` and the seconds it took (one pass over the split)."""
    start = time.perf_counter()
    acc = evaluate(*args)
    return acc, time.perf_counter() - start


def check_finite(means: dict[str, float], step: int) -> None:
    """Stop with a clear message on a NaN/inf loss, naming the stage and term."""
    for k, v in means.items():
        if not math.isfinite(v):
            stage, term = k.split("/")
            raise ScplError(
                f"non-finite {term} loss ({v}) at {stage}, step {step}; lower --lr or check the data"
            )


def cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def prepare_out_dir(cfg: TrainConfig, recipe: str) -> Path:
    """Create the output dir and check it is writable before any work is done."""
    fields = dataclasses.asdict(cfg) | {"recipe": recipe}
    try:
        out = Path(cfg.out.format(**fields))
    except KeyError as e:
        raise ConfigError(
            f"--out {cfg.out!r} names unknown field {e}; use config field names"
        ) from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test", delete=True)
        probe.close()
    except OSError as e:
        raise ScplError(
            f"output dir {out} is not writable ({e.strerror}); pass --out DIR you can write"
        ) from None
    return out


def atomic_write_json(path: Path, obj) -> None:
    """Write JSON via temp file + fsync + rename so a crash never leaves a half-written file."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)


class MetricsLog:
    """JSON lines (always) and TensorBoard scalars (when installed)."""

    def __init__(self, out_dir: Path, tensorboard: bool, name: str = "metrics.jsonl") -> None:
        self.f = open(out_dir / name, "a")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb" / name.removesuffix(".jsonl")))
            except Exception:  # tensorboard not installed: JSONL is enough
                self.tb = None

    def write(self, rec: dict) -> None:
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, float) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{rec['kind']}/{k}", v, rec["step"])

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


def progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=None if enabled else True,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def versions() -> dict:
    return {
        "scpl_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware(),
        "cuda": torch.version.cuda,
    }


__all__ = ["train", "evaluate", "DataBundle"]

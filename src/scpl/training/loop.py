"""The training loop: data -> model -> method -> pipeline -> epochs -> best-on-validation -> test.

Reads top to bottom; everything it calls is selected by name from a registry, and the pipeline
is built by :func:`scpl.pipeline` like any library user's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from scpl.api import Pipeline, pipeline
from scpl.common import (
    dist_env,
    init_distributed,
    resolve_devices,
    seed_everything,
    shutdown_distributed,
)
from scpl.data import DataBundle, load_dataset
from scpl.data.augment import Augment
from scpl.errors import ConfigError, ScplError
from scpl.methods import MethodConfig
from scpl.models import MODELS, StagedModel, build_model
from scpl.parallel import OptimConfig
from scpl.training.checkpoint import (
    atomic_save,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from scpl.training.config import TrainConfig
from scpl.training.feed import DatasetFeed, LoaderFeed, infer_num_classes
from scpl.training.outputs import (
    MetricsLog,
    atomic_write_json,
    cpu_copy,
    prepare_out_dir,
    progress,
    versions,
)


def train(
    cfg: TrainConfig,
    recipe: str = "custom",
    echo=print,
    *,
    train_loader: Iterable | None = None,
    val_loader: Iterable | None = None,
    test_loader: Iterable | None = None,
    model: StagedModel | None = None,
) -> dict:
    """Train per ``cfg``; writes metrics.jsonl and summary.json to the output dir; returns the
    summary.

    By default the data is ``cfg.dataset`` (a registered dataset). Pass ``train_loader`` (and
    ``val_loader`` for model selection, ``test_loader`` for the final number) to train on your
    own data: any iterables of ``(x, y)`` batches with a length, e.g. DataLoaders; their
    augmentation is theirs. ``model`` replaces the registered ``cfg.model`` by your own
    :class:`~scpl.StagedModel`.
    """
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
    if train_loader is None and (val_loader is not None or test_loader is not None):
        raise ConfigError("val_loader/test_loader need a train_loader too")
    out_dir = Path(cfg.resume) if cfg.resume else prepare_out_dir(cfg, recipe)
    seed_everything(cfg.seed)
    device = devices[env.rank] if cfg.executor == "dist" else devices[0]  # batches are built here

    # Data: a registered dataset in memory (uint8 images / int64 token ids, sampled by index and
    # augmented on the device), or the caller's own loaders.
    if train_loader is not None:
        feed = LoaderFeed(train_loader, val_loader, test_loader, device)
        data_name = "custom-loader"
    else:
        data = load_dataset(
            cfg.dataset,
            cfg.data_dir,
            cfg.download,
            cfg.val_fraction,
            cfg.seed,
            vocab_size=cfg.vocab_size,
            max_len=cfg.max_len,
            text_column=cfg.text_column,
            label_column=cfg.label_column,
        )
        model_kind = getattr(MODELS.get(cfg.model), "kind", "image")
        if model is None and data.kind != model_kind:
            raise ConfigError(
                f"model {cfg.model!r} takes {model_kind} data but {cfg.dataset!r} is a {data.kind} "
                f"dataset; pick a {data.kind} model ({', '.join(models_of_kind(data.kind))})"
            )
        augment = None  # the paper uses no augmentation for text (batch of N, not 2N)
        if data.kind == "image":
            augment = Augment(cfg.augment, data.input_shape, data.mean, data.std).to(device)
        feed = DatasetFeed(data, augment, cfg.batch_size, cfg.eval_batch_size, device)
        data_name = cfg.dataset
    steps_per_epoch = min(feed.full_steps, cfg.max_steps) if cfg.max_steps else feed.full_steps

    # Model -> method (heads, local losses) -> pipeline (where/when stages run).
    if model is None:
        if train_loader is not None:
            x0, _ = feed.first_batch()
            x0 = x0[0] if isinstance(x0, tuple | list) else x0
            input_shape, num_classes, kwargs = (
                tuple(x0.shape[1:]),
                infer_num_classes(feed.train),
                {},
            )
        else:
            input_shape, num_classes = data.input_shape, data.num_classes
            kwargs = text_model_kwargs(cfg, data, echo)
        partition = cfg.partition_list()
        if (cfg.partition or "").strip() == "auto":
            from scpl.perf.balance import auto_partition

            partition = auto_partition(
                cfg.model,
                cfg.stages,
                cfg.balance_by,
                method=cfg.method,
                head=cfg.head,
                input_shape=input_shape,
                num_classes=num_classes,
                width=cfg.width,
                batch_size=cfg.batch_size,
                proj_dim=cfg.proj_dim,
                model_kwargs=kwargs,
                device=str(device),
            )
            echo(f"scpl: --partition auto (by {cfg.balance_by}): {','.join(map(str, partition))}")
        model = build_model(
            cfg.model,
            input_shape,
            num_classes,
            cfg.stages,
            cfg.width,
            partition,
            **kwargs,
        )
    elif model.num_stages != cfg.stages:
        cfg = dataclasses.replace(cfg, stages=model.num_stages)
    optim = OptimConfig(
        cfg.lr,
        cfg.lr_min,
        cfg.weight_decay,
        steps_per_epoch * cfg.epochs,
        cfg.lr_schedule,
        foreach=cfg.foreach,
    )
    pipe = pipeline(
        model,
        cfg.method,
        devices=devices,
        optimizer=optim,
        schedule=cfg.schedule,
        micro_batches=cfg.micro_batches,
        executor=cfg.executor,
        method_config=method_config(cfg),
        queue_depth=cfg.queue_depth,
        nan_guard=cfg.nan_guard,
        precision=cfg.precision,
    )
    if not model.shapes_known:  # a user model without input_shape: learn it from a batch
        pipe.build(feed.first_batch()[0])
    params = pipe.parameters_count()
    echo(
        f"scpl: {model.name} ({model.num_stages} stages, partition {model.partition}) "
        f"{cfg.method} on {data_name} [{feed.num_train}/{feed.num_val}/{feed.num_test}] "
        f"executor={cfg.executor} schedule={pipe.schedule} devices={','.join(map(str, devices))} "
        f"params effective={params['effective']:,} affiliated={params['affiliated']:,}"
    )
    executor = pipe.executor

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
                "executor": pipe.state_dict(),
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
        pipe.load_state_dict(ck["executor"])
        set_rng_state(ck["rng"])
        g.set_state(ck["data_g"])
        start_epoch, start_i, step = ck["epoch"], ck["next_i"], ck["step"]
        best, train_seconds, samples_seen = ck["best"], ck["train_seconds"], ck["samples_seen"]
        echo(f"scpl: resumed {out_dir} at epoch {start_epoch + 1}, step {step}")

    try:
        for epoch in range(start_epoch, cfg.epochs):
            pipe.train(True)
            g_epoch_start = g.get_state()
            first = start_i if epoch == start_epoch else 0
            bar = progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress)
            bar.update(first)
            t0 = time.perf_counter()
            batches = feed.train_batches(g, first, steps_per_epoch, load=needs_input)
            for i, (x, y) in enumerate(batches, start=first):
                # Pipelined executors return before the batch is done; dist ranks > 0 are
                # handed (None, None) and receive from their neighbour.
                pipe.step(x, y)
                step += 1
                samples_seen += cfg.batch_size if y is None else int(y.shape[0])
                if step % cfg.log_every == 0 or i == steps_per_epoch - 1:
                    if i == steps_per_epoch - 1:
                        pipe.flush()
                    means = pipe.metrics()  # metrics of finished batches: one sync per interval
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
            pipe.flush()
            for d in set(devices):
                if d.type == "cuda":
                    torch.cuda.synchronize(d)
            epoch_seconds = time.perf_counter() - t0
            train_seconds += epoch_seconds
            bar.close()

            val_acc, val_seconds = (
                timed_evaluate(pipe, feed, "val") if feed.num_val else (float("nan"), 0.0)
            )
            record = {
                "kind": "epoch",
                "epoch": epoch,
                "step": step,
                "val_acc": val_acc,
                "train_seconds": train_seconds,
                "epoch_train_seconds": epoch_seconds,
                "val_seconds": val_seconds,
                "lr": pipe.lr(),
            }
            if cfg.test_every_epoch and feed.num_test:
                # For learning curves only; model selection below looks at validation alone.
                record["test_acc"], record["test_seconds"] = timed_evaluate(pipe, feed, "test")
            log.write(record)
            echo(f"epoch {epoch + 1}: val_acc={val_acc:.4f} ({train_seconds:.1f}s training)")
            if not feed.num_val or val_acc > best["val_acc"]:
                best = {
                    "epoch": epoch,
                    "val_acc": val_acc,
                    "state": [cpu_copy(u) for u in pipe.unit_states()],
                }
            checkpoint(epoch + 1, 0, g.get_state())
    except BaseException:
        # Stop worker threads before the error propagates; a close that fails too (e.g. the
        # peer that caused the error is gone) must not hide the original error.
        with contextlib.suppress(Exception):
            pipe.close()
        raise

    # The last weights (for inspection and resume checks), then the final number on the test
    # split from the epoch chosen on validation.
    atomic_save([cpu_copy(u) for u in pipe.unit_states()], out_dir / f"final.rank{env.rank}.pt")
    if best["state"] is not None:
        pipe.load_unit_states(best["state"])
    test_acc, test_seconds = (
        timed_evaluate(pipe, feed, "test") if feed.num_test else (float("nan"), 0.0)
    )
    pipe.close()
    summary = {
        "test_acc": test_acc,
        "best_epoch": best["epoch"] + 1,
        "best_val_acc": best["val_acc"],
        "samples_per_s": samples_seen / train_seconds if train_seconds else 0.0,
        "train_seconds": train_seconds,
        # One pass over the test split (inference path only): Delog-SCL Table 7's test time.
        "test_seconds": test_seconds,
        "num_test": feed.num_test,
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


def method_config(cfg: TrainConfig) -> MethodConfig:
    """The method settings of a run config (fields of the same names)."""
    names = set(MethodConfig.__dataclass_fields__)
    return MethodConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in names})


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


def timed_evaluate(pipe: Pipeline, feed, which: str) -> tuple[float, float]:
    """Accuracy of the inference path on a feed's split and the seconds one pass took."""
    start = time.perf_counter()
    acc = pipe.evaluate(feed.eval_batches(which))
    return acc, time.perf_counter() - start


def check_finite(means: dict[str, float], step: int) -> None:
    """Stop with a clear message on a NaN/inf loss, naming the stage and term."""
    for k, v in means.items():
        if not math.isfinite(v):
            stage, term = k.split("/")
            raise ScplError(
                f"non-finite {term} loss ({v}) at {stage}, step {step}; lower --lr or check the data"
            )


__all__ = ["train"]

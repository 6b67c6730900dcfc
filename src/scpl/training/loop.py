"""The training loop: data -> model -> method -> pipeline -> epochs -> best-on-validation -> test.

Reads top to bottom; everything it calls is selected by name from a registry, and the pipeline
is built by :func:`scpl.pipeline` like any library user's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterable

import torch

from scpl.api import Pipeline
from scpl.common import (
    dist_env,
    init_distributed,
    resolve_devices,
    seed_everything,
    shutdown_distributed,
)
from scpl.data import load_dataset
from scpl.data.augment import Augment, describe_augment, use_flips
from scpl.errors import ConfigError, ScplError
from scpl.launch import bind_to_parent
from scpl.models import MODELS, StagedModel
from scpl.models.base import models_of_kind
from scpl.parallel.base import NonFiniteError
from scpl.training.build import build_pipeline, method_config, text_model_kwargs
from scpl.training.checkpoint import (
    atomic_save,
    checkpoint_path,
    rng_state,
    save_branch_point,
    save_checkpoint,
    set_rng_state,
)
from scpl.training.checks import (
    check_batch_norm,
    check_classes,
    check_finite,
    check_learned,
    check_schedule_resume,
    check_splits,
    check_state_finite,
    check_weights_finite,
    note_skipped,
    resume_config,
)
from scpl.training.config import TrainConfig
from scpl.training.feed import DatasetFeed, LoaderFeed, shard_batch
from scpl.training.heartbeat import Heartbeat
from scpl.training.outputs import (
    MetricsLog,
    ProgressLines,
    atomic_write_json,
    cpu_copy,
    progress,
    unattended,
    versions,
)
from scpl.training.runfolder import claim_folder


def train(
    cfg: TrainConfig,
    recipe: str = "custom",
    echo=print,
    *,
    train_loader: Iterable | None = None,
    val_loader: Iterable | None = None,
    test_loader: Iterable | None = None,
    model: StagedModel | None = None,
    branch_steps: tuple[int, ...] = (),
    stop_step: int | None = None,
) -> dict | None:
    """Train per ``cfg``; writes metrics.jsonl and summary.json to the output dir; returns the
    summary.

    By default the data is ``cfg.dataset`` (a registered dataset). Pass ``train_loader`` (and
    ``val_loader`` for model selection, ``test_loader`` for the final number) to train on your
    own data: any iterables of ``(x, y)`` batches with a length, e.g. DataLoaders; their
    augmentation is theirs. ``model`` replaces the registered ``cfg.model`` by your own
    :class:`~scpl.StagedModel`.

    ``branch_steps``: after each of these steps, also keep a checkpoint in
    ``<out>/branches/`` (a WSD run's branch points: a run of another length resumes from one,
    see :mod:`scpl.studies.budgets`). ``stop_step``: stop after this step with a checkpoint
    and no final test (returns None); a later call continues the run.

    Raises :class:`~scpl.errors.ScplError` (one line) for a run that cannot give an honest
    result: an output dir holding another run, a resume with result-changing settings, training
    labels of one class, a run of zero steps or one whose updates were all skipped.
    """
    cfg.validate()
    env = dist_env()
    dist = cfg.executor == "dist"
    world = cfg.stages * cfg.data_parallel
    if dist and env.world_size != world:
        raise ConfigError(
            f"--executor dist needs one process per stage and replica ({world}), found "
            f"{env.world_size}; pass --nproc {world} or launch with torchrun --nproc-per-node {world}"
        )
    if train_loader is None and (val_loader is not None or test_loader is not None):
        raise ConfigError("val_loader/test_loader need a train_loader too")
    rank = env.rank if dist else 0
    # Data parallelism: rank r*K + l holds stage l of replica r; replica 0's ranks write the
    # checkpoints (one per stage) and every replica resumes from them.
    stage_rank = rank % cfg.stages
    devices = resolve_devices(cfg.devices, cfg.stages, cfg.device)
    # The output folder (or the checkpoint a resumed run continues) is checked before any data
    # is loaded, so a wrong folder fails in a second, not after minutes of loading.
    folder, cfg, ck = claim_folder(cfg, recipe, env, stage_rank)
    try:
        return _run(
            cfg, recipe, echo, env, devices, stage_rank, folder, ck,
            train_loader, val_loader, test_loader, model, branch_steps, stop_step,
        )  # fmt: skip
    except BaseException:
        folder.abort()  # --overwrite: a run that did not start cleanly puts the old run back
        raise
    finally:
        folder.release()


def _run(
    cfg, recipe, echo, env, devices, stage_rank, folder, ck,
    train_loader, val_loader, test_loader, model, branch_steps, stop_step,
) -> dict:  # fmt: skip
    """``train`` in its claimed folder: data, model, pipeline, epochs."""
    dist = cfg.executor == "dist"
    out_dir = folder.out
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    heartbeat = None
    if dist:
        bind_to_parent()  # a rank dies with its launcher, never trains on alone
        if not cfg.devices and devices[0].type == "cuda":
            devices = [torch.device("cuda", env.local_rank)] * cfg.stages  # one GPU per rank
        init_distributed(devices[stage_rank], cfg.dist_timeout)
        heartbeat = Heartbeat(out_dir, env.rank, env.world_size)
        if env.rank != 0:
            echo = _silent  # rank 0 reports; every rank logs its own stage's metrics
    seed_everything(cfg.seed)
    device = devices[stage_rank] if dist else devices[0]  # batches are built here

    # Data: a registered dataset in memory (uint8 images / int64 token ids, sampled by index and
    # augmented on the device), or the caller's own loaders.
    data = None
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
        check_splits(data)
        augment = None  # the paper uses no augmentation for text (batch of N, not 2N)
        if data.kind == "image":
            flip = use_flips(cfg.flip, data.orientation_sensitive)
            augment = Augment(cfg.augment, data.input_shape, data.mean, data.std, flip)
            augment = augment.to(device)
            echo(f"scpl: augment {describe_augment(cfg.augment, data.input_shape, flip)}")
        feed = DatasetFeed(data, augment, cfg.batch_size, cfg.eval_batch_size, device)
        data_name = cfg.dataset
    check_classes(feed)
    steps_per_epoch = min(feed.full_steps, cfg.max_steps) if cfg.max_steps else feed.full_steps

    # Model -> method (heads, local losses) -> pipeline (where/when stages run).
    cfg, model, pipe = build_pipeline(
        cfg, feed, data, model, devices, device, steps_per_epoch, echo
    )
    try:
        summary = _train(
            cfg,
            recipe,
            echo,
            env,
            devices,
            feed,
            data_name,
            model,
            pipe,
            folder,
            ck,
            set(branch_steps),
            stop_step,
        )
    except BaseException as e:
        # Stop worker threads before the error propagates, on every path (a thread left running
        # at exit aborts the interpreter); a close that fails too (e.g. the peer that caused the
        # error is gone) must not hide the original error.
        with contextlib.suppress(Exception):
            pipe.close()
        if heartbeat is not None and isinstance(e, ScplError):
            # A peer that timed out may itself only have been waiting: name the rank that
            # stopped showing signs of life instead.
            blamed = heartbeat.blame(e, cfg)
            if blamed is not None:
                raise blamed from None
        raise
    finally:
        if heartbeat is not None:
            heartbeat.close()
    if dist:
        shutdown_distributed()
    return summary


def _train(
    cfg, recipe, echo, env, devices, feed, data_name, model, pipe, folder, ck, branches, stop_step
) -> dict | None:
    """Epochs, model selection on validation and the final test (``train``'s body; the caller
    closes the pipeline whatever happens here)."""
    out_dir = folder.out
    dist = cfg.executor == "dist"
    steps_per_epoch = min(feed.full_steps, cfg.max_steps) if cfg.max_steps else feed.full_steps
    if not model.shapes_known:  # a user model without input_shape: learn it from a batch
        pipe.build(feed.first_batch()[0])
    check_batch_norm(pipe, cfg, feed)
    params = pipe.parameters_count()
    echo(
        f"scpl: {model.name} ({model.num_stages} stages, partition {model.partition}) "
        f"{cfg.method} on {data_name} [{feed.num_train}/{feed.num_val}/{feed.num_test}] "
        f"executor={cfg.executor} schedule={pipe.schedule} devices={','.join(map(str, devices))} "
        f"params effective={params['effective']:,} affiliated={params['affiliated']:,}"
    )
    executor = pipe.executor

    if dist:
        # Start-up (data loading, model building) may take long; align ranks before the
        # steady state, whose waits are bounded by --dist-timeout.
        executor.barrier(max(600.0, cfg.dist_timeout))
    needs_input = getattr(executor, "needs_input", True)  # dist: only rank 0 reads data
    g = torch.Generator().manual_seed(cfg.seed)  # data order
    best = {"epoch": -1, "val_acc": -1.0, "state": None}
    train_seconds, samples_seen, step = 0.0, 0, 0
    start_epoch, start_i = 0, 0
    # Per stage: has any update been applied (None until --nan-guard skip reports one)?
    applied: dict[str, bool] = {}

    # The newest checkpoint this rank wrote (or resumed from): every one holds finite weights.
    good: list[int] = [ck["step"]] if ck is not None else []

    def checkpoint(epoch: int, next_i: int, g_state: torch.Tensor, keep: bool = False) -> None:
        if env.rank >= cfg.stages and dist:
            pipe.state_dict()  # joins the replicas' buffer average and RNG gather; replica 0 writes
            return
        if cfg.nan_guard == "interval":
            # The device-side NaN flag is read at log intervals only: read it now (one sync per
            # save), so a checkpoint never holds weights updated from a NaN since the last one.
            pipe.flush()
            sink = getattr(pipe.executor, "sink", None)
            if sink is not None:
                sink.check_finite()
        state = pipe.state_dict()
        if cfg.nan_guard != "skip":  # (skip keeps training on through non-finite batches)
            check_state_finite(state, step)
        save = save_branch_point if keep else save_checkpoint
        save(
            out_dir,
            step,
            env.rank,
            {
                "executor": state,
                "rng": rng_state(),
                "data_g": g_state,
                "epoch": epoch,
                "next_i": next_i,
                "step": step,
                "best": best,
                # A save inside an epoch (budgets branch there) counts that epoch's time so far,
                # so a run resumed from it reports its whole training time.
                "train_seconds": train_seconds + (time.perf_counter() - t0 if next_i else 0.0),
                "samples_seen": samples_seen,
                "applied": applied,
                # The thread count resolved: a resume uses the same one (same bits).
                "config": dataclasses.asdict(cfg) | {"threads": torch.get_num_threads()},
                "recipe": recipe,
            },
        )
        if not keep:
            good.append(step)
        folder.started()

    n_epochs, total_steps = cfg.epochs_for(steps_per_epoch), cfg.total_steps(steps_per_epoch)
    if ck is not None:
        check_schedule_resume(ck.get("config", {}), cfg, steps_per_epoch, ck["step"])
        try:
            pipe.load_state_dict(ck["executor"])
            set_rng_state(ck["rng"])
            g.set_state(ck["data_g"])
            start_epoch, start_i, step = ck["epoch"], ck["next_i"], ck["step"]
            best, train_seconds = ck["best"], ck["train_seconds"]
            samples_seen, applied = ck["samples_seen"], dict(ck.get("applied", {}))
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
            # An edited checkpoint (or one of another model) reads fine but does not fit.
            why = str(e).strip().splitlines()[-1 if isinstance(e, RuntimeError) else 0][:160]
            raise ScplError(
                f"--resume {out_dir}: its newest checkpoint does not fit this run "
                f"({type(e).__name__}: {why.strip()}); it was edited or damaged: delete it to "
                "resume from the one before, or start a new run"
            ) from None
        echo(f"scpl: resumed {out_dir} at epoch {start_epoch + 1}, step {step}")
    if ck is None:
        folder.start()  # every input checked, the pipeline built: now the folder is written
    log = MetricsLog(
        out_dir,
        cfg.tensorboard,
        "metrics.jsonl" if env.rank == 0 else f"metrics.rank{env.rank}.jsonl",
        resume_step=step if ck is not None else None,
        echo=echo,
    )
    lines = (
        ProgressLines(echo, total_steps, cfg.log_every)
        if cfg.progress and unattended() and env.rank == 0
        else None
    )
    means: dict[str, float] = {}
    stopped = False  # at stop_step, before the end of the run

    try:
        for epoch in range(start_epoch, n_epochs):
            pipe.train(True)
            g_epoch_start = g.get_state()
            first = start_i if epoch == start_epoch else 0
            # --train-steps: the last epoch stops where the budget ends.
            epoch_steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
            bar = progress(epoch_steps, f"epoch {epoch + 1}/{n_epochs}", cfg.progress)
            bar.update(first)
            t0 = time.perf_counter()
            batches = feed.train_batches(g, first, epoch_steps, load=needs_input)
            for i, (x, y) in enumerate(batches, start=first):
                # Pipelined executors return before the batch is done; dist ranks > 0 are
                # handed (None, None) and receive from their neighbour.
                if y is not None and cfg.data_parallel > 1:
                    x, y = shard_batch(x, y, env.rank // cfg.stages, cfg.data_parallel)
                pipe.step(x, y)
                step += 1
                n = cfg.batch_size if y is None else int(y.shape[0]) * cfg.data_parallel
                samples_seen += n
                if step % cfg.log_every == 0 or i == epoch_steps - 1:
                    if i == epoch_steps - 1:
                        pipe.flush()
                    means = pipe.metrics()  # metrics of finished batches: one sync per interval
                    if cfg.nan_guard != "skip":
                        check_finite(means, step)
                    note_skipped(means, applied)
                    bar.set_postfix_str(
                        " ".join(f"{k.replace('stage', 's')}={v:.3f}" for k, v in means.items())
                    )
                    log.write({"kind": "train", "epoch": epoch, "step": step, **means})
                    folder.started()  # a step trained and logged: the old run may go
                if lines is not None:
                    lines.step(f"epoch {epoch + 1}/{n_epochs}", step, n, means)
                if (
                    cfg.checkpoint_every
                    and step % cfg.checkpoint_every == 0
                    and i < epoch_steps - 1
                ):
                    checkpoint(epoch, i + 1, g_epoch_start)
                if step in branches:
                    checkpoint(epoch, i + 1, g_epoch_start, keep=True)
                bar.update(1)
                if step == stop_step and i < epoch_steps - 1:  # else the epoch's end saves
                    checkpoint(epoch, i + 1, g_epoch_start)
                    stopped = True
                    break
            pipe.flush()
            for d in set(devices):
                if d.type == "cuda":
                    torch.cuda.synchronize(d)
            epoch_seconds = time.perf_counter() - t0
            train_seconds += epoch_seconds
            bar.close()
            if stopped:
                break

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
            if step == stop_step:
                stopped = True
                break
    except NonFiniteError as e:
        if not good or env.rank >= cfg.stages:
            raise NonFiniteError(f"{e}; no checkpoint was written before it") from None
        path = checkpoint_path(out_dir, good[-1], env.rank)
        raise NonFiniteError(
            f"{e}; the last good checkpoint (finite weights) is step {good[-1]}: {path}"
        ) from None
    finally:
        log.close()
    if stopped and step < total_steps:
        pipe.close()
        return None
    check_learned(step, applied, cfg)

    # The last weights (for inspection and resume checks), then the final number on the test
    # split from the epoch chosen on validation.
    final = [cpu_copy(u) for u in pipe.unit_states()]
    if env.rank < cfg.stages:  # replica 0 (data parallelism: the replicas hold the same weights)
        atomic_save(final, out_dir / f"final.rank{env.rank}.pt")
    check_weights_finite(final, env.rank % cfg.stages if dist else 0)
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
    folder.started()
    return summary


def _silent(*args, **kwargs) -> None:
    pass


def timed_evaluate(pipe: Pipeline, feed, which: str) -> tuple[float, float]:
    """Accuracy of the inference path on a feed's split and the seconds one pass took."""
    start = time.perf_counter()
    acc = pipe.evaluate(feed.eval_batches(which))
    return acc, time.perf_counter() - start


__all__ = ["method_config", "resume_config", "text_model_kwargs", "train"]

"""Building a run's model and pipeline from its config: model (registered, or the caller's),
partition (given, the model's default, or ``--partition auto``), optimizer and method settings,
then :func:`scpl.pipeline` (the training loop's set-up, :mod:`scpl.training.loop`)."""

from __future__ import annotations

import dataclasses

import torch

from scpl.api import Pipeline, pipeline
from scpl.data import DataBundle
from scpl.methods import MethodConfig
from scpl.models import MODELS, StagedModel, build_model, estimate_parameters
from scpl.parallel import OptimConfig
from scpl.training.checks import check_model_fits
from scpl.training.config import TrainConfig
from scpl.training.feed import infer_num_classes


def build_pipeline(
    cfg: TrainConfig,
    feed,
    data: DataBundle | None,
    model: StagedModel | None,
    devices: list[torch.device],
    device: torch.device,
    steps_per_epoch: int,
    echo,
) -> tuple[TrainConfig, StagedModel, Pipeline]:
    """Model -> method (heads, local losses) -> pipeline (where/when stages run); returns the
    config (its stage count taken from a caller's model), the model and the pipeline."""
    if model is None:
        if data is None:
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
        shape_args = (cfg.model, input_shape, num_classes, cfg.stages, cfg.width, partition)
        check_model_fits(cfg, estimate_parameters(*shape_args, **kwargs), devices)
        model = build_model(
            *shape_args,
            init=cfg.resolved_init(getattr(MODELS.get(cfg.model), "kind", "image")),
            **kwargs,
        )
    elif model.num_stages != cfg.stages:
        cfg = dataclasses.replace(cfg, stages=model.num_stages)
    optim = OptimConfig(
        cfg.lr,
        cfg.lr_min,
        cfg.weight_decay,
        cfg.total_steps(steps_per_epoch),
        cfg.lr_schedule,
        foreach=cfg.foreach,
        warmup_steps=cfg.warmup_steps,
        decay_fraction=cfg.decay_fraction,
        decay_shape=cfg.decay_shape,
        decoupled_weight_decay=cfg.optimizer == "adamw",
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
        dist_timeout=cfg.dist_timeout,
        data_parallel=cfg.data_parallel,
        supcon_gather=cfg.supcon_gather,
    )
    return cfg, model, pipe


def method_config(cfg: TrainConfig) -> MethodConfig:
    """The method settings of a run config (fields of the same names)."""
    names = set(MethodConfig.__dataclass_fields__)
    return MethodConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in names})


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

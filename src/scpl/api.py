"""The library entry point: ``scpl.pipeline()`` trains any staged model on any data.

It is the one place where a model, a learning method and an executor are put together; the
training loop, the benchmarks, the studies and the tests all build their pipelines here.

    stages = [nn.Sequential(...), nn.Sequential(...)]
    model = scpl.StagedModel(stages, classifier)
    with scpl.pipeline(model, method="scpl", devices=["cuda:0", "cuda:1"],
                       optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3)) as pipe:
        for x, y in loader:
            pipe.step(x, y)            # pipelined: returns before the batch is done
        print(pipe.metrics(), pipe.evaluate(val_loader))
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from scpl.common import resolve_devices
from scpl.errors import ConfigError
from scpl.methods import Method, MethodConfig, build_method, count_parameters
from scpl.methods.base import method_run_defaults
from scpl.models import StagedModel
from scpl.parallel import (
    EXECUTORS,
    Executor,
    ExecutorOptions,
    OptimConfig,
    StageOptim,
    resolve_schedule,
)
from scpl.parallel.base import NAN_GUARDS, OptimizerFactory, SchedulerFactory

DeviceSpec = str | torch.device


def split(
    model: nn.Sequential | Sequence[nn.Module], partition: Sequence[int] | int
) -> list[nn.Module]:
    """Cut a sequential network into contiguous stages.

    ``partition`` is either the number of consecutive layers per stage (e.g. ``[2, 2, 1, 1]``)
    or a stage count K, which splits the layers as evenly as possible (earlier stages get the
    remainder). Returns one module per stage, ready for :class:`StagedModel`.
    """
    from scpl.models.base import check_partition, even_partition

    layers = list(model.children()) if isinstance(model, nn.Module) else list(model)
    if isinstance(partition, int):
        if not 1 <= partition <= len(layers):
            raise ConfigError(
                f"cannot split {len(layers)} layers into {partition} stages; choose 1..{len(layers)}"
            )
        partition = even_partition(len(layers), partition)
    counts = check_partition(partition, len(layers), type(model).__name__)
    stages, start = [], 0
    for c in counts:
        group = layers[start : start + c]
        stages.append(group[0] if c == 1 else nn.Sequential(*group))
        start += c
    return stages


def _stage_optim(
    optimizer: OptimizerFactory | OptimConfig | StageOptim | None,
    lr_scheduler: SchedulerFactory | None,
) -> OptimConfig | StageOptim:
    if optimizer is None:
        optimizer = OptimConfig()
    if isinstance(optimizer, OptimConfig | StageOptim):
        if lr_scheduler is not None:
            if isinstance(optimizer, StageOptim):
                return StageOptim(optimizer.optimizer, lr_scheduler)
            raise ConfigError(
                "lr_scheduler needs optimizer= as a function of the parameters "
                "(e.g. lambda params: torch.optim.Adam(params, lr=1e-3)), not an OptimConfig"
            )
        return optimizer
    if not callable(optimizer):
        raise ConfigError(
            "optimizer must be a function params -> torch.optim.Optimizer, e.g. "
            "optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3)"
        )
    return StageOptim(optimizer, lr_scheduler)


class Pipeline:
    """A staged model under a method, running on devices through an executor.

    Use it as a context manager (or call :meth:`close`) so worker threads and process groups
    are released. ``step`` is asynchronous for pipelined executors; ``metrics``, ``evaluate``,
    ``state_dict`` and friends wait for submitted batches first.
    """

    def __init__(
        self,
        model: StagedModel,
        method: Method,
        executor: str,
        devices: list[torch.device],
        optim: OptimConfig | StageOptim,
        options: ExecutorOptions,
    ) -> None:
        self.model = model
        self.method = method
        self.executor_name = executor
        self.devices = devices
        self.optim = optim
        self.options = options
        self.schedule = resolve_schedule(
            options.schedule, method.local, method.name, options.num_micro
        ).name
        self.options.schedule = self.schedule
        EXECUTORS.get(executor)  # unknown executor: fail here, listing the valid ones
        self._executor: Executor | None = None
        self._closed = False
        self.units: nn.ModuleList | None = None
        self.num_steps = 0
        if model.shapes_known:
            self._build()

    # -- construction ----------------------------------------------------------------------
    def build(self, example) -> Pipeline:
        """Build now from an example batch's inputs (otherwise the first ``step`` does it)."""
        self._build(example)
        return self

    def _build(self, example=None) -> Executor:
        if self._closed:
            # Building again would silently start new workers with fresh optimizer state.
            raise ConfigError(
                "the pipeline is closed; build a new one with scpl.pipeline(...) (or keep it "
                "open: use it as a context manager around all its work)"
            )
        if self._executor is None:
            if not self.model.shapes_known:
                self.model.infer_shapes(example)
            self.units = self.method.attach(self.model)
            # Counted before the executor is built: dist replaces other ranks' stages with
            # placeholders to free their memory.
            self._params = count_parameters(self.units)
            self._executor = EXECUTORS.get(self.executor_name)(
                self.units,
                self.method.local,
                self.optim,
                self.devices,
                self.options,
                self.method.name,
            )
        return self._executor

    @property
    def executor(self) -> Executor:
        """The executor (built on first use when the model's shapes come from the first batch)."""
        if self._executor is None and self._closed:
            self._build()  # raises: the pipeline is closed
        if self._executor is None:
            raise ConfigError(
                "the pipeline is built on the first batch because the model has no input_shape; "
                "call step() first or pass input_shape to StagedModel"
            )
        return self._executor

    @property
    def num_stages(self) -> int:
        return self.model.num_stages

    # -- training --------------------------------------------------------------------------
    def step(self, x, y: torch.Tensor | None) -> None:
        """Train on one mini-batch (``x`` a tensor or a tuple such as (tokens, lengths)).
        Pipelined executors return before the batch is done."""
        first = x[0] if isinstance(x, tuple | list) else x
        n = first.shape[0] if torch.is_tensor(first) and first.dim() else None
        if n == 0 or (torch.is_tensor(y) and y.numel() == 0):
            # An empty batch makes every mean loss 0/0: NaN metrics and no error otherwise.
            raise ConfigError("step() got an empty batch (0 samples); pass batches of 1 or more")
        self._build(x).submit(x, y)
        self.num_steps += 1

    def flush(self) -> None:
        """Wait until every submitted batch has finished (all stages updated)."""
        if self._executor is not None:
            self._executor.flush()

    def metrics(self) -> dict[str, float]:
        """Mean loss terms (``stage{l}/{term}``) of batches finished since the last call."""
        if self._executor is None:
            return {}
        return self._executor.collect()

    def lr(self) -> float:
        """Stage 0's current learning rate."""
        return self.executor.current_lr()

    def train(self, mode: bool = True) -> None:
        self.executor.train(mode)

    # -- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batches: Iterable[tuple[object, torch.Tensor]]) -> float:
        """Top-1 accuracy of the inference path (stages + classifier, no heads) over
        ``(x, y)`` batches, e.g. a DataLoader."""
        it = iter(batches)
        first = next(it, None)
        if first is None:
            return 0.0
        ex = self._build(first[0])
        ex.train(False)

        classes = self.model.num_classes
        out_of_range: list[torch.Tensor] = []  # per batch, on the labels' device: one sync

        def chain():
            for x, y in itertools.chain([first], it):
                if classes is not None and torch.is_tensor(y):
                    out_of_range.append(((y < 0) | (y >= classes)).sum())
                yield x, y

        try:
            correct, total = ex.evaluate(chain())
        finally:
            ex.train(True)
        bad = sum(int(t) for t in out_of_range)
        if bad:
            # Such a label can never match a prediction: the accuracy would be silently low.
            raise ConfigError(
                f"evaluate(): {bad} label(s) outside the classifier's classes [0, {classes}); "
                "check the labels (or the model's num_classes)"
            )
        return correct / max(1, total)

    @torch.no_grad()
    def predict(self, x) -> torch.Tensor:
        """Class logits of the inference path for one batch (on the last stage's device)."""
        ex = self._build(x)
        infer = getattr(ex, "infer", None)
        if infer is None:
            raise ConfigError(f"predict() is not available on the {self.executor_name} executor")
        ex.flush()
        was = [r.unit.training for r in ex.runners]
        for r in ex.runners:
            r.unit.train(False)
        try:
            return infer(x)
        finally:
            for r, w in zip(ex.runners, was, strict=True):
                r.unit.train(w)

    # -- state -----------------------------------------------------------------------------
    def parameters_count(self) -> dict[str, int]:
        """Effective (inference) and affiliated (training-only: heads...) parameter counts."""
        self._require_units()
        return dict(self._params)

    def _require_units(self) -> None:
        if self.units is None:
            raise ConfigError(
                "the pipeline has not seen a batch yet (the model has no input_shape)"
            )

    def state_dict(self) -> dict:
        """Every stage's weights, optimizer and LR scheduler (for checkpoints)."""
        return self.executor.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.executor.load_state_dict(state)

    def unit_states(self) -> list[dict]:
        return self.executor.unit_states()

    def load_unit_states(self, states: list[dict]) -> None:
        self.executor.load_unit_states(states)

    def close(self) -> None:
        """Stop worker threads / release process groups. Safe to call twice."""
        self._closed = True
        if self._executor is not None:
            ex, self._executor = self._executor, None
            ex.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Pipeline({self.model.name}: {self.num_stages} stages, method={self.method.name}, "
            f"schedule={self.schedule}, executor={self.executor_name}, "
            f"devices={','.join(map(str, self.devices))})"
        )


def pipeline(
    model: StagedModel,
    method: str | Method = "scpl",
    *,
    devices: Sequence[DeviceSpec] | DeviceSpec | None = None,
    optimizer: OptimizerFactory | OptimConfig | StageOptim | None = None,
    lr_scheduler: SchedulerFactory | None = None,
    schedule: str = "auto",
    micro_batches: int = 1,
    executor: str = "local",
    method_config: MethodConfig | None = None,
    queue_depth: int = 2,
    nan_guard: str = "off",
    emulate: dict | None = None,
    record: bool = False,
    precision: str = "fp32",
    dist_timeout: float | None = None,
    data_parallel: int = 1,
    supcon_gather: bool = True,
    **method_options,
) -> Pipeline:
    """Put ``model`` under a learning ``method`` on ``devices`` and return a :class:`Pipeline`.

    Args:
        model: a :class:`StagedModel` (your own stages, :func:`split`, or ``build_model``).
        method: ``"scpl"``, ``"bp"``, ``"early-exit"``, ``"al"`` or a Method instance.
        devices: one device per stage (``["cuda:0", "cuda:1"]``), or one for all; default: one
            GPU per stage when there are enough, else ``cuda:0`` or ``cpu``.
        optimizer: ``params -> torch.optim.Optimizer``, called once per stage (each stage updates
            alone); default Adam(lr=1e-3; AL: 3e-3). ``lr_scheduler``: ``optimizer -> LRScheduler``,
            stepped once per training step.
        schedule: ``"auto"`` (scpl for local methods, nmp for BP; the gpipe variants when
            ``micro_batches > 1``), or any registered schedule.
        executor: ``"local"`` (a thread and CUDA stream per stage), ``"sequential"`` (one op at
            a time: the reference) or ``"dist"`` (a process per stage, under torchrun).
        method_config / method_options: method settings, e.g. ``head="linear"``,
            ``temperature=0.1`` (fields of :class:`MethodConfig`).
        nan_guard: ``"off"``; ``"interval"`` (a device-side flag read whenever metrics are, so no
            per-step sync; raises naming stage, step and term); ``"stop"`` (the same check
            before every update: one host sync per stage per step) or ``"skip"`` the update.
        precision: ``"fp32"``, ``"bf16"`` (autocast per stage) or ``"fp16"`` (autocast and a
            GradScaler per stage; local-loss methods only).
        dist_timeout: ``executor="dist"``: seconds any wait for a peer may take before the run
            stops with an error naming it.
        data_parallel: ``executor="dist"``: R replicas of the pipeline on K x R processes
            (rank r*K + l holds stage l of replica r); each replica's stage 0 is given its
            shard of every batch, and each stage's replicas average their gradients before the
            update. ``supcon_gather``: SupCon over the global batch (projections all-gathered
            across a stage's replicas) rather than over each shard.
    """
    if not isinstance(model, StagedModel):
        raise ConfigError(
            f"model must be a scpl.StagedModel (got {type(model).__name__}); wrap your stages: "
            "scpl.StagedModel([stage1, stage2, ...], classifier) or scpl.split(net, K)"
        )
    if isinstance(method, Method):
        if method_config is not None or method_options:
            raise ConfigError("pass method options either to the Method instance or here, not both")
        meth = method
    else:
        # The method's own run defaults (e.g. SCPL's light head) fill the options not given,
        # as they do for `scpl train`; an explicit method_config is taken as it is.
        cfg = method_config or MethodConfig(**method_run_defaults(method))
        if method_options:
            known = set(MethodConfig.__dataclass_fields__)
            bad = sorted(set(method_options) - known)
            if bad:
                raise ConfigError(
                    f"unknown option(s) {', '.join(bad)} for pipeline(); method options are: "
                    f"{', '.join(sorted(known))}"
                )
            cfg = MethodConfig(**{**cfg.__dict__, **method_options})
        meth = build_method(method, cfg)
    if meth.name in ("early-exit", "al") and model.num_classes is None:
        raise ConfigError(
            f"method {meth.name!r} needs the number of classes; pass num_classes= to StagedModel"
        )
    if nan_guard not in NAN_GUARDS:
        raise ConfigError(f"nan_guard={nan_guard!r}: choose one of {', '.join(NAN_GUARDS)}")
    if queue_depth < 1:
        raise ConfigError(f"queue_depth={queue_depth} must be >= 1")
    if data_parallel != 1 and executor != "dist":
        raise ConfigError(
            f"data_parallel={data_parallel} is not supported with executor={executor!r}: "
            "replicas run as processes; use executor='dist' (under torchrun)"
        )
    devs = _devices(devices, model.num_stages)
    options = ExecutorOptions(
        schedule,
        micro_batches,
        queue_depth,
        emulate,
        record,
        nan_guard,
        precision,
        dist_timeout,
        data_parallel,
        supcon_gather,
    )
    if optimizer is None and "lr" in meth.config_defaults:
        optimizer = OptimConfig(lr=meth.config_defaults["lr"])  # e.g. AL's own constant lr
    return Pipeline(model, meth, executor, devs, _stage_optim(optimizer, lr_scheduler), options)


def _devices(devices, num_stages: int) -> list[torch.device]:
    if devices is None:
        return resolve_devices("", num_stages, "auto")
    if isinstance(devices, str | torch.device):
        devices = [devices]
    devices = [str(d) for d in devices]
    if len(devices) not in (1, num_stages):
        raise ConfigError(
            f"{len(devices)} devices for {num_stages} stages; give one device per stage or one "
            "for all"
        )
    return resolve_devices(",".join(devices), num_stages, "auto")

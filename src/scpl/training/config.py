"""The typed run configuration. Its command-line flags (one ``--field`` per field; every
field's docstring is its ``--help`` text) are built in :mod:`scpl.training.flags`; named
recipes live in :mod:`scpl.training.recipes`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from scpl.errors import ConfigError
from scpl.training.ranges import OPEN as OPEN
from scpl.training.ranges import RANGES as RANGES
from scpl.training.ranges import check_ranges


@dataclass
class TrainConfig:
    """Everything a training run needs."""

    model: str = "vgg"
    """Registered model name (see `scpl list`)."""
    method: str = "scpl"
    """Learning method: bp, scpl, early-exit, al."""
    preset: str = ""
    """A named set of the method's options (``scpl list`` shows them, e.g. scpl's ``best``):
    applied over the recipe and the method's defaults; flags given explicitly still win."""
    dataset: str = "fashion-mnist"
    """Registered dataset name."""
    data_dir: str | None = None
    """Directory holding the dataset files (else $SCPL_DATA, system dirs, cache, download).
    Other files are other data: it is part of the run's identity and must match on --resume."""
    download: bool = True
    """Download a missing dataset from its canonical source into the cache."""
    glove: str | None = None
    """Text: GloVe-format embedding file (e.g. glove.6B.300d.txt); none = random init."""
    embed_dim: int = 300
    """Text: embedding size (must match the GloVe file)."""
    freeze_embeddings: bool = False
    """Text: keep the (GloVe) embedding fixed."""
    vocab_size: int = 30000
    """Text: vocabulary size built from the training split (incl. <pad> and <unk>)."""
    max_len: int = 0
    """Text: tokens kept per document (0 = the dataset's default: AG News 60, IMDB 350, ...)."""
    text_column: str = "text"
    """text-csv: header of the column holding the documents."""
    label_column: str = "label"
    """text-csv: header of the column holding the labels."""
    stages: int = 4
    """Number of stages K the model is split into (the paper uses 4)."""
    partition: str | None = None
    """Units per stage, comma-separated (e.g. 2,2,1,1); default is the paper's split; auto:
    the contiguous split whose slowest stage (body, head and loss, update, activation
    transfer) is fastest under the cost model --balance-by."""
    balance_by: str = "flops"
    """--partition auto: price stages by FLOPs on a model device (flops, no timing) or by op
    costs measured on --device (time)."""
    init: str = "auto"
    """Weight init of convolutions and linear layers: he (Kaiming-normal, zero biases), torch
    (PyTorch's defaults, as the authors' code), auto = he for image models, torch for text
    models. paper-* recipes use torch."""
    width: float = 1.0
    """Channel-width multiplier (e.g. 0.25 for quick CPU runs)."""
    epochs: int = 200
    """Training epochs."""
    batch_size: int = 128
    """Mini-batch size N (two-view augmentation feeds 2N inputs)."""
    eval_batch_size: int = 512
    """Batch size for validation and test."""
    lr: float = 1e-3
    """Initial learning rate (Adam). Unless a recipe or flag sets it, a method may use its own
    (al: 3e-3 with --lr-schedule constant)."""
    lr_min: float = 1e-5
    """Final learning rate of the cosine schedule."""
    lr_schedule: str = "cosine"
    """cosine (stepped per iteration), constant, or wsd (warm-up, constant, then a decay to
    --lr-min over the last --decay-fraction of the run; Hägele et al. 2024): a wsd run's
    constant phase is the same for every run length, so `scpl experiment --budgets` branches
    every budget's decay from one run."""
    warmup_steps: int = 0
    """wsd: steps of linear LR warm-up at the start (0 = none)."""
    decay_fraction: float = 0.2
    """wsd: share of the run, at its end, over which the LR decays to --lr-min."""
    decay_shape: str = "linear"
    """wsd: shape of the decay, linear or 1-sqrt (Hägele et al. 2024)."""
    weight_decay: float = 0.0
    """Weight decay: with --optimizer adam added to the gradient (L2), with adamw applied to
    the weights directly."""
    optimizer: str = "adam"
    """adam (the paper's; weight decay as L2 in the gradient) or adamw (decoupled weight decay,
    Loshchilov & Hutter 2019: keeps the weights from growing all along at a constant rate)."""
    head: str = "mlp"
    """Projection head of hidden stages: identity, linear, mlp, mlp-pool (average-pools the
    map to 2x2 before the mlp: a light head for wide early maps); for scpl on conv models, man
    (an EMA of the next stage's first conv + a learnable bias, then mlp-pool; Su et al. 2024)
    or lookahead (a trainable copy of the next stage, then mlp-pool; after DGL / AugLocal).
    scpl and early-exit default to mlp-pool (paper-* recipes: the paper's mlp)."""
    proj_dim: int = 1024
    """Output size of linear/mlp projection heads (the paper's 1024; scpl uses 128 unless a
    recipe or flag sets it)."""
    temperature: float = 0.1
    """SupCon temperature."""
    local_ce: float = 0.0
    """SCPL: weight of an auxiliary cross-entropy on each hidden stage (a pooled linear
    classifier on the stage's output); 0 = SupCon only (the paper)."""
    supcon_norm: str = "paper"
    """SupCon normalisation: paper (1/|P(i)|) or reference (1/(|P(i)|+1))."""
    last_supcon: bool = True
    """SCPL: add a SupCon term on the last stage next to its cross-entropy (false is
    --last-stage ce)."""
    last_stage: str = "ce+supcon"
    """SCPL's last stage: ce+supcon (cross-entropy and SupCon train the stage, the Delog-SCL
    text), ce (cross-entropy only) or detached (SupCon trains the stage, the classifier learns
    on its detached output: the authors' code)."""
    local_loss: str = "supcon"
    """SCPL's local objective per stage: supcon (the paper), sim (MSE between the cosine
    similarity matrices of the stage's projection and of the one-hot labels), supcon+sim (their
    sum) or predsim (0.99 sim + 0.01 cross-entropy of a pooled linear classifier); sim and
    predsim from Nøkland & Eidnes 2019, "Training Neural Networks with Local Error Signals"."""
    local_recon: float = 0.0
    """SCPL: weight of a term making each hidden stage reconstruct its own input (3x3 conv +
    resize decoder, MSE; after InfoPro, Wang et al. 2021); 0 = off (the paper). Conv models."""
    man_momentum: float = 0.995
    """--head man: EMA momentum of each hidden stage's copy of the next stage's first layer."""
    man_every: int = 1
    """--head man: the next stage's first-layer weight travels back every this many steps."""
    head_pool: int = 2
    """mlp-pool heads (scpl, early-exit): side of the pooled map (2 = 2x2); larger keeps more of
    the map's layout, at the cost of a wider first layer (the paper's mlp keeps all of it)."""
    lookahead_units: int = 2
    """--head lookahead: units after the stage (conv layers, blocks) the head copies and trains."""
    al_bridge: str = "flat"
    """AL: each stage's bridge reads the flat map (the papers) or the map pooled to C x 2 x 2
    (pooled: 4x fewer FLOPs on vanilla-convnet w=0.25, -3.5 points on Fashion-MNIST at 400
    steps, docs/LOG.md). Text features are already pooled: no change there."""
    augment: str = "two-view-ref"
    """Vision augmentation: none, basic, strong, two-view (two strong views, Khosla et al., as the
    paper's text and recipes; 2N inputs) or two-view-ref (a weak and a strong view without
    resized crop, the authors' code; measured better for BP and SCPL on Fashion-MNIST)."""
    flip: str = "auto"
    """Horizontal flips: auto (unless the dataset is orientation-sensitive, e.g. digits), on, off."""
    val_fraction: float = 0.1
    """Share of the training set held out for model selection."""
    test_every_epoch: bool = False
    """Also measure test accuracy after every epoch, for learning curves (recorded only: the
    reported epoch is still chosen on the validation split)."""
    seed: int = 0
    """Random seed (data order, init, augmentation)."""
    device: str = "auto"
    """Device when --devices is not given: auto (one GPU per stage if there are enough, else
    cuda:0 or cpu for all), cpu, cuda, cuda:N."""
    devices: str = ""
    """Comma-separated device per stage (e.g. cuda:0,cuda:1,cuda:2,cuda:3 or cpu); one entry
    is used for every stage."""
    executor: str = "local"
    """Who runs the stages: sequential (one op at a time, the reference), local (a thread per
    stage in this process), dist (a process per stage over torch.distributed)."""
    schedule: str = "auto"
    """Op order: sequential, scpl, scpl-gpipe, nmp, gpipe; auto = scpl for local-loss methods
    and nmp for BP (scpl-gpipe / gpipe with --micro-batches > 1)."""
    micro_batches: int = 1
    """Micro-batches per mini-batch for the gpipe and scpl-gpipe schedules."""
    queue_depth: int = 2
    """Activations in flight per link between stages (bounded queues)."""
    dist_timeout: float = 60.0
    """dist: seconds any rank waits for a peer before the run stops with an error naming it
    (so a dead or stalled rank is reported about this long after it stopped: 60 s by default)."""
    nproc: int = 0
    """dist executor on one host: start this many processes (one per stage and replica:
    stages x data_parallel) via torchrun."""
    data_parallel: int = 1
    """dist: replicas of the pipeline (world size = stages x data_parallel; rank r*K + l holds
    stage l of replica r). --batch-size stays the global batch: each replica's stage 0 takes
    rows r::R of it, and each stage's replicas average their gradients before the update."""
    supcon_gather: bool = True
    """With --data-parallel: SupCon over the global batch (each stage's projections and labels
    all-gathered across its replicas, gradients flowing back), which makes the update the
    single-pipeline one; false: SupCon over each replica's shard (no gather, smaller negative
    sets)."""
    max_steps: int = 0
    """Stop each epoch after this many steps (0 = full epoch); for smoke runs."""
    train_steps: int = 0
    """Total training steps, winning over --epochs when > 0: the run takes as many epochs as
    it needs and its last one stops early; the LR schedule spans exactly this many steps (a
    budget that is not a whole number of epochs)."""
    log_every: int = 50
    """Steps between metric syncs / log lines."""
    threads: int = 0
    """torch CPU threads (0 = PyTorch default). The count changes the last bits of CPU
    reductions, so --resume restores the count the run used and refuses another one."""
    out: str = "runs/{recipe}-{model}-{method}-{dataset}-s{seed}-{config_id}"
    """Output directory (config fields in braces are filled in; {config_id} is a short hash of
    every setting that changes the result, so runs that differ get different folders)."""
    nan_guard: str = "interval"
    """NaN/inf guard on losses and gradients. interval: a device-side flag per stage, read
    every --log-every steps (no per-step host sync; the error still names the stage, the first
    bad step and the term); stop: check before every update (one host sync per stage per
    step); skip: drop the batch's update."""
    precision: str = "fp32"
    """fp32, bf16 (autocast per stage) or fp16 (autocast and a loss scaler per stage; local
    methods only)."""
    foreach: bool = True
    """Multi-tensor (foreach) Adam: far fewer kernel launches per step than a per-parameter loop."""
    checkpoint_every: int = 0
    """Also checkpoint every N steps (0 = only at epoch ends)."""
    resume: str | None = None
    """Continue the run whose output dir is given (bitwise the same as not stopping). Its
    settings come from its checkpoint; flags given with it may only change resume-safe
    settings (epochs, log/checkpoint intervals, progress, devices, ...)."""
    overwrite: bool = False
    """Start afresh in an output dir that holds another run's files (without it such a dir is
    refused, so two runs never mix). Only the run's own files are replaced: they are moved
    aside once every input has been checked and deleted once the new run has logged a step
    (a run that fails before that puts them back)."""
    progress: bool = True
    """Show a progress bar."""
    tensorboard: bool = True
    """Also write TensorBoard scalars when tensorboard is installed."""
    smoke: bool = False
    """Shrink the run to seconds for testing: the same model, method, schedule, executor, head,
    augmentation, stages and optimiser on a tiny synthetic stand-in of the dataset (same input
    shape and classes), width 1/16, batch 16, 1 epoch of 2 steps, no progress bar or
    TensorBoard. These sizes win over other flags; --out still applies (default: a temp dir)."""

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work, saying how to fix them."""
        check_ranges(self)
        if self.method == "scpl" and self.batch_size < 2:
            raise ConfigError(
                f"--batch-size {self.batch_size} is too small for a contrastive loss: "
                "SupCon needs at least 2 samples; use --batch-size 2 or more"
            )
        if not self.out.strip():
            raise ConfigError("--out is empty; pass the folder the run should write, e.g. runs/x")
        if self.lr_schedule == "cosine" and self.lr_min > self.lr:
            raise ConfigError(
                f"--lr-min {self.lr_min:g} is above --lr {self.lr:g}: the cosine schedule would "
                "raise the learning rate; pass --lr-min at most --lr (e.g. 0), or "
                "--lr-schedule constant"
            )
        if self.executor == "dist" and self.stages * self.data_parallel == 1:
            raise ConfigError(
                "--executor dist with one stage and no --data-parallel runs a single process, "
                "which needs no torch.distributed; use --executor local (the same result), or "
                "--stages 2 or more"
            )
        if self.data_parallel > 1:
            if self.executor != "dist":
                raise ConfigError(
                    f"--data-parallel is not supported with --executor {self.executor}: "
                    "replicas are processes; use --executor dist"
                )
            if self.batch_size % self.data_parallel:
                raise ConfigError(
                    f"--batch-size {self.batch_size} does not split into {self.data_parallel} "
                    "equal shards; use a multiple of --data-parallel"
                )
        world = self.stages * self.data_parallel
        if self.nproc and self.nproc != world:
            dp = f" x --data-parallel {self.data_parallel}" if self.data_parallel > 1 else ""
            raise ConfigError(
                f"--nproc {self.nproc} does not match --stages {self.stages}{dp}: the dist "
                f"executor runs one process per stage{' and replica' if dp else ''}; "
                f"pass --nproc {world}"
            )
        if self.resume and self.overwrite:
            raise ConfigError(
                "--resume continues a run and --overwrite deletes one; pass only one of them"
            )
        if self.nan_guard not in ("stop", "skip", "interval"):
            raise ConfigError(f"--nan-guard {self.nan_guard!r}: choose stop, skip or interval")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision {self.precision!r}: choose fp32, bf16 or fp16")
        if self.lr_schedule not in ("cosine", "constant", "wsd"):
            raise ConfigError(f"--lr-schedule {self.lr_schedule!r}: choose cosine, constant or wsd")
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"--optimizer {self.optimizer!r}: choose adam or adamw")
        if self.optimizer == "adamw" and self.lr * self.weight_decay >= 1:
            raise ConfigError(
                f"--optimizer adamw multiplies the weights by 1 - lr x weight decay each step; "
                f"--lr {self.lr:g} x --weight-decay {self.weight_decay:g} >= 1 would zero or "
                "flip them: use a decay well below 1 / lr, e.g. 0.05"
            )
        if self.decay_shape not in ("linear", "1-sqrt"):
            raise ConfigError(f"--decay-shape {self.decay_shape!r}: choose linear or 1-sqrt")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ConfigError(
                f"--decay-fraction must be in [0, 1] (got {self.decay_fraction}), e.g. 0.2"
            )
        for name in ("warmup_steps", "train_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be >= 0 (got {getattr(self, name)})"
                )
        if self.init not in ("auto", "he", "torch"):
            raise ConfigError(f"--init {self.init!r}: choose auto, he or torch")

    def epochs_for(self, steps_per_epoch: int) -> int:
        """Epochs the run takes: --epochs, or as many as --train-steps needs."""
        if self.train_steps:
            return -(-self.train_steps // steps_per_epoch)
        return self.epochs

    def total_steps(self, steps_per_epoch: int) -> int:
        """Training steps of the whole run (the LR schedule's length)."""
        return self.train_steps or steps_per_epoch * self.epochs

    def resolved_init(self, model_kind: str) -> str:
        """The weight init after resolving 'auto' for a model taking ``model_kind`` data."""
        if self.init != "auto":
            return self.init
        return "he" if model_kind == "image" else "torch"

    def resolved_schedule(self, local: bool) -> str:
        """The schedule name after resolving 'auto' (the schedule registry's policy)."""
        if self.schedule != "auto":
            return self.schedule
        from scpl.parallel.schedules import auto_schedule

        return auto_schedule(local, self.micro_batches)

    def partition_list(self) -> list[int] | None:
        """Units per stage, or None for the model's default (and for auto, resolved once the
        model's input is known)."""
        if not self.partition or self.partition.strip() == "auto":
            return None
        try:
            return [int(p) for p in self.partition.split(",")]
        except ValueError:
            raise ConfigError(
                f"--partition {self.partition!r} must be comma-separated integers, e.g. 2,2,1,1"
            ) from None


# How each setting relates to a run's result, classified once here. A field not listed
# changes the result: a new field is safe by default (it names a different run folder and
# must match on --resume) until it is classified here. data_dir (other files are other data)
# and threads (the intra-op thread count changes the bits of CPU reductions) are result fields.
#   "cosmetic": where and how a run reports or runs, never what it computes (bitwise the same
#     result; executors are bitwise equal, so queue depth or device count do not matter).
#   "extends":  changes the result but may change on --resume (a longer or shorter run of the
#     same training).
FIELD_CLASS: dict[str, str] = {
    "download": "cosmetic",
    "preset": "cosmetic",  # expanded into the fields it sets, which are what a run computes
    "eval_batch_size": "cosmetic",
    "test_every_epoch": "cosmetic",
    "device": "cosmetic",
    "devices": "cosmetic",
    "queue_depth": "cosmetic",
    "dist_timeout": "cosmetic",
    "nproc": "cosmetic",
    "log_every": "cosmetic",
    "out": "cosmetic",
    "checkpoint_every": "cosmetic",
    "resume": "cosmetic",
    "overwrite": "cosmetic",
    "progress": "cosmetic",
    "tensorboard": "cosmetic",
    "epochs": "extends",
    "train_steps": "extends",
}


def field_class(name: str) -> str:
    """'cosmetic', 'extends' or 'result' (the default) for a TrainConfig field."""
    return FIELD_CLASS.get(name, "result")


def result_fields(cls: type = TrainConfig) -> list[str]:
    """Fields whose value changes what a run computes (everything not 'cosmetic')."""
    return [f.name for f in fields(cls) if field_class(f.name) != "cosmetic"]


def resume_safe(name: str) -> bool:
    """May ``--name`` be given with --resume (it does not change the training so far)?"""
    return field_class(name) != "result"

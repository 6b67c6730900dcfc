"""The catalogue of named experiments (``scpl experiment NAME``): each a grid of (model, row)
runs over seeds on one base recipe, where a row is a method or an ablation setting. Running
them, their tables and curves: :mod:`scpl.studies.experiment`."""

from __future__ import annotations

from dataclasses import dataclass, field

from scpl.errors import ConfigError
from scpl.training.recipes import RECIPES


@dataclass
class Experiment:
    """A grid of runs sharing one base recipe: rows × models × seeds."""

    recipe: str
    """Base recipe of every run."""
    models: tuple[str, ...]
    """Table columns."""
    rows: dict[str, dict]
    """Table rows: label -> config overrides (a method, a head, a batch size, ...)."""
    overrides: dict = field(default_factory=dict)
    """Overrides shared by every run."""
    per_model: dict = field(default_factory=dict)
    """Model -> overrides (e.g. a narrower VGG on CPU)."""
    baseline: str | None = "bp"
    """Row whose mean the † marks compare against (None: no marks)."""
    title: str = ""
    """What the experiment reproduces (paper table / figure)."""


def method_rows(methods, per_method: dict | None = None) -> dict[str, dict]:
    """Rows that differ by method (the paper's accuracy tables)."""
    per_method = per_method or {}
    return {m: {"method": m, **per_method.get(m, {})} for m in methods}


METHODS_ALL = ("bp", "early-exit", "al", "scpl")
# CPU scale (our committed results): Fashion-MNIST, reduced widths, a few short "epochs"
# (--max-steps mini-batches each, reshuffled every epoch) so model selection and learning curves
# have several points. Same batch, augmentation and schedule for every method.
_FMNIST = dict(
    dataset="fashion-mnist",
    augment="two-view",  # what the committed results were measured with
    epochs=4,
    max_steps=60,
    batch_size=128,
    test_every_epoch=True,
    threads=1,
)
# SCPL in the paper's form (MLP head, 1024-d, SupCon only) and the light head.
_SCPL_PAPER_FORM = {"method": "scpl", "head": "mlp", "proj_dim": 1024, "local_ce": 0.0}
_LIGHT = {"head": "mlp-pool", "proj_dim": 128}
# The methods with their run defaults, and SCPL with a local cross-entropy beside SupCon on
# its hidden stages (an ablation: within the noise over 3 seeds, so not a default).
_TARGET_ROWS = {
    **method_rows(METHODS_ALL),
    "scpl-local-ce": {"method": "scpl", "local_ce": 0.3},
}
_FMNIST_WIDTH = {"convnet": dict(width=0.25), "vgg": dict(width=0.125)}
_FMNIST_PAPER_WIDTH = {"vanilla-convnet": dict(width=0.25), "vgg": dict(width=0.125)}

EXPERIMENTS: dict[str, Experiment] = {
    "fmnist": Experiment(
        "default",
        ("convnet", "vgg"),
        method_rows(METHODS_ALL),
        _FMNIST,
        _FMNIST_WIDTH,
        title="Fashion-MNIST, reduced width: BP / Early Exit / AL / SCPL (CPU scale of Tables 6-8)",
    ),
    "fmnist-ablate-flow": Experiment(
        "default",
        ("convnet", "vgg"),
        {
            "multiple short gradient flows (scpl)": {"method": "scpl"},
            "single gradient flow (bp)": {"method": "bp"},
        },
        _FMNIST,
        _FMNIST_WIDTH,
        baseline="single gradient flow (bp)",
        title="Multiple short vs one long gradient flow, identical settings (Delog-SCL Fig. 4)",
    ),
    "fmnist-ablate-head": Experiment(
        "default",
        ("convnet",),
        {h: {"method": "scpl", "head": h} for h in ("identity", "linear", "mlp")},
        _FMNIST,
        _FMNIST_WIDTH,
        baseline=None,
        title="SCPL projection head: identity / linear / MLP (Delog-SCL Table 9)",
    ),
    "fmnist-ablate-batch": Experiment(
        "default",
        ("convnet",),
        # Same number of training samples per epoch for every batch size.
        {
            f"batch {b}": {"method": "scpl", "batch_size": b, "max_steps": 60 * 128 // b}
            for b in (32, 64, 128, 256)
        },
        _FMNIST,
        _FMNIST_WIDTH,
        baseline=None,
        title="SCPL batch size at a fixed sample budget (Delog-SCL Table 8)",
    ),
    # Longer budget (whole epochs) for the BP vs SCPL curve: does SCPL close the gap?
    "fmnist-long": Experiment(
        "default",
        ("convnet",),
        method_rows(("bp", "scpl")),
        {**_FMNIST, "epochs": 4, "max_steps": 0},
        _FMNIST_WIDTH,
        title="Fashion-MNIST convnet, 4 full epochs: BP vs SCPL test accuracy per epoch",
    ),
    # Issue 14: the paper's networks, the authors' augmentation, the last stage, AL's defaults.
    "fmnist-paper-nets": Experiment(
        "default",
        ("vanilla-convnet", "vgg"),
        method_rows(METHODS_ALL),
        _FMNIST,
        _FMNIST_PAPER_WIDTH,
        title="Fashion-MNIST, the paper's vanilla ConvNet and VGG (reduced width): all methods",
    ),
    "fmnist-ablate-augment": Experiment(
        "default",
        ("vanilla-convnet",),
        {
            f"{m} {a}": {"method": m, "augment": a}
            for m in ("bp", "scpl")
            for a in ("two-view", "two-view-ref")
        },
        {**_FMNIST, "epochs": 5, "lr": 3e-3},  # the settings of fmnist-targets
        _FMNIST_PAPER_WIDTH,
        baseline=None,
        title="Two strong views (Khosla) vs the authors' weak + strong views",
    ),
    "fmnist-ablate-last": Experiment(
        "default",
        ("vanilla-convnet",),
        {ls: {"method": "scpl", "last_stage": ls} for ls in ("ce+supcon", "ce", "detached")},
        _FMNIST,
        _FMNIST_PAPER_WIDTH,
        baseline=None,
        title="SCPL's last stage: CE + SupCon (Delog-SCL text) / CE / detached (authors' code)",
    ),
    # What closes SCPL's early gap (LOG.md 2026-12-02): one seed, 4 x 60 steps, each row
    # changes one thing from the row above it (the paper's form first).
    "fmnist-ablate-gap": Experiment(
        "default",
        ("vanilla-convnet",),
        {
            "bp, torch init": {"method": "bp", "init": "torch"},
            "bp": {"method": "bp"},
            "bp, lr 2e-3": {"method": "bp", "lr": 2e-3},
            "bp, lr 3e-3": {"method": "bp", "lr": 3e-3},
            "early-exit": {"method": "early-exit", "head": "mlp"},
            "early-exit, mlp-pool, lr 3e-3": {"method": "early-exit", "lr": 3e-3},
            "scpl, torch init": {**_SCPL_PAPER_FORM, "init": "torch"},
            "scpl": _SCPL_PAPER_FORM,
            "scpl, last ce": {**_SCPL_PAPER_FORM, "last_stage": "ce"},
            "scpl, last detached": {**_SCPL_PAPER_FORM, "last_stage": "detached"},
            "scpl, lr 2e-3": {**_SCPL_PAPER_FORM, "lr": 2e-3},
            "scpl, mlp-pool": {**_SCPL_PAPER_FORM, "head": "mlp-pool"},
            "scpl, mlp-pool 128": {**_SCPL_PAPER_FORM, **_LIGHT},
            "scpl, mlp-pool 128, lr 3e-3": {**_SCPL_PAPER_FORM, **_LIGHT, "lr": 3e-3},
            "scpl, mlp-pool 128, lr 5e-3": {**_SCPL_PAPER_FORM, **_LIGHT, "lr": 5e-3},
            "scpl, mlp-pool 128, lr 3e-3, tau 0.2": {
                **_SCPL_PAPER_FORM,
                **_LIGHT,
                "lr": 3e-3,
                "temperature": 0.2,
            },
            **{
                f"scpl, mlp-pool 128, lr 3e-3, local ce {w}": {
                    **_SCPL_PAPER_FORM,
                    **_LIGHT,
                    "lr": 3e-3,
                    "local_ce": w,
                }
                for w in (0.1, 0.3, 1.0)
            },
        },
        {**_FMNIST, "augment": "two-view-ref"},
        _FMNIST_PAPER_WIDTH,
        baseline="bp",
        title="Closing SCPL's early gap: init, lr, head, temperature, last stage, local CE",
    ),
    # Issue 14's targets: equal steps (this table) and equal simulated wall time on 4 devices
    # (`--time-to-accuracy --out docs/results/fmnist-targets-tta`, which reuses the BP runs).
    # Every method: He init, light heads, lr 3e-3 (BP and SCPL both gain from it, LOG.md).
    "fmnist-targets": Experiment(
        "default",
        ("vanilla-convnet", "vgg"),
        _TARGET_ROWS,
        {**_FMNIST, "augment": "two-view-ref", "epochs": 5, "lr": 3e-3},
        _FMNIST_PAPER_WIDTH,
        title="Fashion-MNIST targets: BP / Early Exit / AL / SCPL at equal steps (5 x 60 steps)",
    ),
    "bbc-targets": Experiment(
        "bbc-news",
        ("lstm",),
        _TARGET_ROWS,
        dict(test_every_epoch=True, threads=1),
        title="BBC News LSTM targets: BP / Early Exit / AL / SCPL at equal steps",
    ),
    # Issue 21's converged study: `--budgets` (BP epochs; WSD runs branched from one trunk per
    # row and seed) at the targets' settings over real epochs; `--rows` picks the paper's batch
    # regime (SCPL at batch 1024 against BP at 128, equal epochs).
    "fmnist-converged": Experiment(
        "default",
        ("vanilla-convnet", "vgg"),
        {
            **method_rows(("bp", "early-exit", "scpl")),
            "scpl batch 1024": {"method": "scpl", "batch_size": 1024},
            # The same with the learning rate scaled by sqrt(1024 / 128) (about 3e-3 x 2.8): at
            # equal epochs the large batch takes 8x fewer steps.
            "scpl batch 1024 lr 8.5e-3": {"method": "scpl", "batch_size": 1024, "lr": 8.5e-3},
            # Issue 23's levers on the same curves (the momentum head; the light head pooling
            # to 4 x 4 instead of 2 x 2).
            "scpl man": {"method": "scpl", "head": "man"},
            "scpl head pool 4": {"method": "scpl", "head_pool": 4},
            # The paper's head (issue 21's target is SCPL in the paper's form); the same row
            # as fmnist-levers', so its equal-epoch runs carry over.
            "scpl paper head": {"method": "scpl", "head": "mlp", "proj_dim": 1024},
        },
        {**_FMNIST, "augment": "two-view-ref", "lr": 3e-3, "max_steps": 0,
         "test_every_epoch": False, "checkpoint_every": 100},
        {"vanilla-convnet": dict(width=0.25), "vgg": dict(width=0.25)},
        title="Fashion-MNIST at converged budgets: BP / Early Exit / SCPL (WSD budgets)",
    ),
    # Issue 23's levers on the same budgets: SCPL's local objective (Nøkland & Eidnes 2019
    # similarity matching, predsim), its local cross-entropy, and width (for BP and SCPL).
    "fmnist-levers": Experiment(
        "default",
        ("vanilla-convnet",),
        {
            **method_rows(("bp", "early-exit", "scpl")),
            **{f"scpl {ll}": {"method": "scpl", "local_loss": ll}
               for ll in ("sim", "supcon+sim", "predsim")},
            "scpl local ce 0.3": {"method": "scpl", "local_ce": 0.3},
            # The paper's head (MLP on the flattened map, 1024-d) against the light default.
            "scpl paper head": {"method": "scpl", "head": "mlp", "proj_dim": 1024},
            # Which half of the paper's head matters: the flattened map, or the 1024-d output.
            "scpl head mlp 128": {"method": "scpl", "head": "mlp", "proj_dim": 128},
            "scpl head mlp-pool 1024": {"method": "scpl", "head": "mlp-pool", "proj_dim": 1024},
            # The light head with more of the map's layout (--head-pool): 4 x 4 and 7 x 7.
            **{f"scpl head pool {p}": {"method": "scpl", "head_pool": p} for p in (4, 7)},
            # The momentum head (MAN, Su et al. 2024): an EMA of the next stage's first conv.
            "scpl man": {"method": "scpl", "head": "man"},
            # A trainable copy of the next two units in each hidden stage's head (DGL/AugLocal).
            "scpl lookahead": {"method": "scpl", "head": "lookahead"},
            # Each hidden stage also reconstructs its input (after InfoPro; scpl probe showed
            # the local stages' information collapse).
            **{f"scpl recon {w}": {"method": "scpl", "local_recon": w} for w in (0.1, 1.0)},
            **{f"{m} width {w}": {"method": m, "width": w}
               for m in ("bp", "scpl") for w in (0.5, 1.0)},
            # The width sweep for the best variant (--preset best), not only the plain default.
            **{f"scpl head pool 4 width {w}": {"method": "scpl", "head_pool": 4, "width": w}
               for w in (0.5, 1.0)},
        },
        {**_FMNIST, "augment": "two-view-ref", "lr": 3e-3, "max_steps": 0,
         "test_every_epoch": False, "checkpoint_every": 100},
        {"vanilla-convnet": dict(width=0.25)},
        title="Fashion-MNIST vanilla ConvNet: SCPL's local-learning levers at WSD budgets",
    ),
    "bbc-levers": Experiment(
        "bbc-news",
        ("lstm",),
        {
            **method_rows(("bp", "early-exit", "scpl")),
            **{f"scpl {ll}": {"method": "scpl", "local_loss": ll}
               for ll in ("sim", "supcon+sim", "predsim")},
        },
        dict(threads=1, checkpoint_every=100),
        title="BBC News LSTM: SCPL's local-learning levers at WSD budgets",
    ),
    "bbc-converged": Experiment(
        "bbc-news",
        ("lstm",),
        method_rows(("bp", "early-exit", "al", "scpl")),
        dict(threads=1, checkpoint_every=100),
        title="BBC News LSTM at converged budgets (the paper's text budget is 50 epochs)",
    ),
    # Seconds-long version executed by the tests.
    "smoke": Experiment(
        "smoke", ("convnet",), method_rows(("bp", "scpl")), dict(epochs=2, max_steps=6)
    ),
}

# The paper's experiments at paper settings (GPU scale; `--smoke` runs each for a few steps).
for _ds in ("cifar10", "cifar100", "tiny-imagenet"):
    EXPERIMENTS[f"paper-{_ds}"] = Experiment(
        f"paper-{_ds}-vgg-scpl",
        ("vanilla-convnet", "vgg", "resnet18"),
        method_rows(METHODS_ALL, {"bp": {"batch_size": 128}}),
        title=f"{_ds}: BP / Early Exit / AL / SCPL (SCPL appendix Tables 7-8, Delog-SCL Tables 2-4)",
    )
for _ds in ("ag-news", "imdb"):
    EXPERIMENTS[f"paper-{_ds}"] = Experiment(
        f"paper-{_ds}-lstm-scpl",
        ("lstm", "transformer"),
        method_rows(METHODS_ALL),
        title=f"{_ds}: BP / Early Exit / AL / SCPL (SCPL appendix Table 6)",
    )
EXPERIMENTS.update(
    {
        "paper-ablate-head": Experiment(
            "paper-cifar10-vgg-scpl",
            ("vgg", "resnet18"),
            {h: {"head": h} for h in ("identity", "linear", "mlp")},
            baseline=None,
            title="CIFAR-10 projection heads (Delog-SCL Table 9)",
        ),
        "paper-ablate-batch": Experiment(
            "paper-cifar10-vgg-scpl",
            ("vanilla-convnet", "vgg", "resnet18"),
            {f"batch {b}": {"batch_size": b} for b in (128, 256, 512, 1024)},
            baseline=None,
            title="CIFAR-10 SCPL batch size (Delog-SCL Table 8)",
        ),
        "paper-ablate-flow": Experiment(
            "paper-cifar10-vgg-scpl",
            ("vgg",),
            {
                "multiple short gradient flows (scpl)": {"method": "scpl"},
                "single gradient flow (bp)": {"method": "bp"},
            },
            dict(test_every_epoch=True),
            baseline="single gradient flow (bp)",
            title="CIFAR-10 multiple short vs one long gradient flow (Delog-SCL Fig. 4)",
        ),
        "paper-curves": Experiment(
            "paper-cifar100-vanilla-convnet-scpl",
            ("vanilla-convnet",),
            method_rows(("bp", "scpl"), {"bp": {"batch_size": 128}}),
            dict(test_every_epoch=True),
            title="CIFAR-100 vanilla ConvNet test accuracy vs epoch, BP vs SCPL (Delog-SCL Fig. 5)",
        ),
    }
)


def resolve_experiment(name: str) -> Experiment:
    """A named experiment, or a recipe turned into a one-cell experiment."""
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    if name in RECIPES:
        r = RECIPES[name]
        model, method = r.get("model", "vgg"), r.get("method", "scpl")
        return Experiment(name, (model,), {method: {}}, baseline=None, title=f"recipe {name}")
    raise ConfigError(
        f"unknown experiment {name!r}; choose one of: {', '.join(sorted(EXPERIMENTS))}, "
        "or a recipe name (`scpl list --recipes`)"
    )

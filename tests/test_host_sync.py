"""No host syncs in the steady state by default.

On CPU a sync cannot be observed, so the step path is traced instead: every call that reads a
tensor's value back to Python (``.item()``, ``bool()``, ``float()``, ``int()``, ``.tolist()``,
``.cpu()``, ``.numpy()``) is counted while pipelines train, from every thread. Host-side
tensors by design are not syncs and are left out: the optimizers' step counters (Adam keeps
them on the CPU unless ``capturable``) and a text batch's lengths. On CUDA the steady state runs
under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
import torch

from parity_utils import make_batches, make_pipeline, text_kwargs

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextmanager
def count_reads(exempt):
    """Count value reads of tensors that are not in ``exempt`` (a set of ids), any thread."""
    calls: list[str] = []
    lock = threading.Lock()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name, fn):
        def counted(self, *args, **kwargs):
            if id(self) not in exempt:
                with lock:
                    calls.append(f"{name} {tuple(self.shape)} {self.dtype}")
            return fn(self, *args, **kwargs)

        return counted

    for name, fn in originals.items():
        setattr(torch.Tensor, name, wrap(name, fn))
    try:
        yield calls
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


def _host_side(pipe, batches) -> set[int]:
    ids = set()
    for r in getattr(pipe.executor, "runners", []):
        for st in r.optimizer.state.values():
            if torch.is_tensor(st.get("step")):
                ids.add(id(st["step"]))
    for x, _ in batches:
        if isinstance(x, tuple):
            ids.update(id(t) for t in x[1:])  # lengths
    return ids


CASES = [
    ("sequential", "sequential", "scpl", "convnet"),
    ("local", "scpl", "scpl", "convnet"),
    ("local", "nmp", "bp", "convnet"),
    ("local", "scpl-gpipe", "scpl", "convnet"),
    ("local", "scpl", "scpl", "lstm"),
    ("local", "scpl", "al", "convnet"),
]


@pytest.mark.parametrize("executor,schedule,method,model", CASES)
def test_no_host_sync_in_the_step_path_cpu(executor, schedule, method, model):
    text = model == "lstm"
    shape = (12,) if text else (1, 8, 8)
    kw = text_kwargs(model, {}) if text else {}
    num_micro = 2 if schedule == "scpl-gpipe" else 1
    batches = make_batches(6, 16, shape, text=text)
    with make_pipeline(
        executor, schedule, model, method, 3, num_micro, shape, **kw
    ) as pipe:  # nan_guard="interval", the training default
        pipe.step(*batches[0])  # first step: optimizer state is created
        pipe.flush()
        pipe.metrics()
        exempt = _host_side(pipe, batches)
        with count_reads(exempt) as calls:
            for x, y in batches[1:]:
                pipe.step(x, y)
            pipe.flush()
        assert calls == [], f"{len(calls)} value reads in the step path: {calls[:8]}"
        pipe.metrics()  # the interval read, outside the step path


def test_no_host_sync_counter_sees_the_per_step_guard():
    """The tracer is not blind: nan_guard="stop" reads a flag per stage per step."""
    batches = make_batches(3)
    with make_pipeline("sequential", "sequential", stages=3, nan_guard="stop") as pipe:
        pipe.step(*batches[0])
        exempt = _host_side(pipe, batches)
        with count_reads(exempt) as calls:
            pipe.step(*batches[1])
        assert len(calls) >= 3


def test_interval_guard_names_stage_step_and_term():
    from scpl.parallel.base import NonFiniteError

    batches = make_batches(4)
    with make_pipeline("local", "scpl", stages=3) as pipe:
        for t, (x, y) in enumerate(batches):
            pipe.step(x if t < 2 else x * float("nan"), y)
        pipe.flush()
        with pytest.raises(NonFiniteError, match=r"at stage 0, step 3"):
            pipe.metrics()


def test_adam_impl_is_fused_on_cuda_and_foreach_on_cpu():
    """The selection needs no CUDA device: it reads only the device type.

    Mutants caught: FUSED_ADAM_DEVICES emptied (CUDA back on foreach, so fp16 syncs every step);
    ``adam_impl`` ignoring the device (fused on CPU, whose rounding breaks the foreach reference);
    ``foreach`` ignored off CUDA; an explicit ``fused=False`` ignored.
    """
    from scpl.parallel.base import OptimConfig, adam_impl

    auto = OptimConfig()
    assert adam_impl(torch.device("cuda", 0), auto) == "fused"
    assert adam_impl("cuda", auto) == "fused"
    assert adam_impl(torch.device("cpu"), auto) == "foreach"
    assert adam_impl("cpu", OptimConfig(foreach=False)) == "for-loop"
    assert adam_impl("cuda", OptimConfig(fused=False)) == "foreach"
    assert adam_impl("cpu", OptimConfig(fused=True)) == "fused"


def test_build_stage_optimizer_picks_adam_by_the_stage_device(monkeypatch):
    """A CPU stage gets foreach Adam (the bitwise reference); the choice follows the device of
    the stage's parameters. Without CUDA, the CPU is declared a fused device to see the switch.

    Mutant caught: build_stage_optimizer not consulting ``adam_impl`` (always foreach).
    """
    from scpl.parallel import base

    unit = torch.nn.Linear(3, 2)
    opt, _ = base.build_stage_optimizer(unit, base.OptimConfig())
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]
    monkeypatch.setattr(base, "FUSED_ADAM_DEVICES", ("cpu",))
    opt, _ = base.build_stage_optimizer(unit, base.OptimConfig())
    assert opt.defaults["fused"] is True


def _fp16_reads(fused: bool) -> list[str]:
    from scpl.parallel import OptimConfig

    batches = make_batches(4, 16)
    optim = OptimConfig(lr=1e-3, fused=fused)
    with make_pipeline("local", "scpl", stages=3, precision="fp16", optim=optim) as pipe:
        pipe.step(*batches[0])
        pipe.flush()
        pipe.metrics()
        assert all(r.scaler is not None for r in pipe.executor.runners)
        exempt = _host_side(pipe, batches)
        with count_reads(exempt) as calls:
            for x, y in batches[1:]:
                pipe.step(x, y)
            pipe.flush()
        pipe.metrics()
    return calls


def test_fp16_scaler_step_is_sync_free_with_fused_adam_cpu():
    """GradScaler.step reads found_inf back (``.item()``) for foreach Adam, once per stage per
    step; fused Adam takes it as a tensor. CPU has a fused kernel, so the mechanism the CUDA
    default relies on is checked here (forced on; the CPU default stays foreach).

    Mutant caught: dropping fused Adam (the tracer then sees the scaler's reads, as the foreach
    half of this test shows it does).
    """
    assert _fp16_reads(fused=True) == []
    foreach = _fp16_reads(fused=False)
    assert len(foreach) >= 3 * 3 and all(c.startswith("item") for c in foreach), foreach[:4]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "executor,schedule,method,model,precision",
    [
        ("sequential", "sequential", "scpl", "convnet", "fp32"),
        ("local", "scpl", "scpl", "convnet", "fp32"),
        ("local", "nmp", "bp", "convnet", "fp32"),
        ("local", "scpl", "scpl", "lstm", "fp32"),
        ("local", "scpl", "scpl", "convnet", "bf16"),
        # fp16: a GradScaler per stage; sync-free only with fused Adam (the CUDA default).
        ("local", "scpl", "scpl", "convnet", "fp16"),
        ("sequential", "sequential", "scpl", "convnet", "fp16"),
    ],
)
def test_no_host_sync_cuda_steady_state(executor, schedule, method, model, precision):
    text = model == "lstm"
    shape = (12,) if text else (1, 8, 8)
    kw = text_kwargs(model, {}) if text else {}
    dev = torch.device("cuda", 0)

    def on_device(batch):
        x, y = batch
        if isinstance(x, tuple):  # lengths stay on the host
            return (x[0].to(dev), *x[1:]), y.to(dev)
        return x.to(dev), y.to(dev)

    batches = [on_device(b) for b in make_batches(6, 16, shape, text=text)]
    with make_pipeline(
        executor, schedule, model, method, 4, 1, shape, devices="cuda:0", precision=precision,
        **kw,
    ) as pipe:
        if precision == "fp16":
            assert all(r.optimizer.defaults["fused"] for r in pipe.executor.runners)
        pipe.step(*batches[0])
        pipe.flush()
        pipe.metrics()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for x, y in batches[1:]:
                pipe.step(x, y)
        finally:
            pipe.flush()
            torch.cuda.set_sync_debug_mode(0)
        pipe.metrics()

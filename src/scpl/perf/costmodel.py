"""Cost model of a staged model on a compute-bound device: per-unit FLOPs, parameters and bytes,
turned into per-stage op times for any contiguous partition.

A *profile* counts, for every unit of a model (the smallest pieces it may be cut between, see
:mod:`scpl.models.base`), at the real mini-batch size:

* ``fwd``: forward FLOPs of the unit's body;
* ``bwd_in`` / ``bwd_noin``: backward FLOPs with / without the gradient of the unit's input
  (a local-loss stage detaches its input, so its first unit skips that gradient; under BP every
  unit but the model's first computes it);
* ``loss_fwd`` / ``loss_bwd``: the local loss attached at a cut after the unit (SCPL: projection
  head + SupCon; the last unit: classifier + cross-entropy, plus SupCon when the last stage has
  it) and its backward down to the unit's output; ``bp_loss_*`` the same for BP (classifier and
  cross-entropy on the last unit only);
* ``params`` / ``head_params``: parameters of the body / of what a cut after the unit attaches;
* ``out_bytes``: bytes of the unit's output for the whole mini-batch (what crosses a cut);
* ``saved`` / ``head_saved``: bytes autograd keeps for the backward of the body / of the loss.

FLOPs are those of :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products and
convolutions; elementwise ops, normalisation and pooling are not counted). Counts are taken at
two small batch sizes and extrapolated exactly (every count is a*b + c*b^2; SupCon's similarity
matrix is the b^2 term), so a full-width model is profiled in seconds on a CPU.

A :class:`Device` turns counts into seconds: F, L, B = FLOPs / ``flops_per_s``; U = parameters
x ``update_bytes_per_param`` / ``mem_bytes_per_s`` (Adam is memory-bound); a transfer holds the
sender for bytes / ``link_bytes_per_s``. :func:`stage_op_costs` returns the ``{stage: {op: s}}``
dict that ``--emulate`` and the simulator take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from scpl.errors import ConfigError

Costs = dict[int, dict[str, float]]


@dataclass(frozen=True)
class Device:
    """A compute-bound accelerator (defaults: an A100's fp32 rate, HBM bandwidth and one
    direction of NVLink 3; only the ratios between the three matter for speed-ups)."""

    name: str = "a100-fp32"
    flops_per_s: float = 19.5e12
    mem_bytes_per_s: float = 1.555e12
    link_bytes_per_s: float = 300e9
    update_bytes_per_param: float = 32.0
    """Adam: read parameter, gradient and two moments, write parameter and moments, zero the
    gradient (8 x 4 bytes)."""


DEVICE = Device()


@dataclass
class Profile:
    """Per-unit counts of one model under one method at ``batch_size`` (see the module doc)."""

    model: str
    method: str
    head: str
    batch_size: int
    fwd: list[float]
    bwd_in: list[float]
    bwd_noin: list[float]
    loss_fwd: list[float]
    loss_bwd: list[float]
    bp_loss_fwd: list[float]
    bp_loss_bwd: list[float]
    params: list[float]
    head_params: list[float]
    out_bytes: list[float]
    saved: list[float]
    head_saved: list[float]
    meta: dict = field(default_factory=dict)

    @property
    def num_units(self) -> int:
        return len(self.fwd)

    def as_dict(self) -> dict:
        return asdict(self)


def _batch(input_shape: Sequence[int], b: int, num_classes: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(b) % max(1, min(num_classes, b // 2))  # every class present has positives
    if len(input_shape) == 1:
        t = input_shape[0]
        tokens = torch.randint(2, max(3, vocab), (b, t), generator=g)
        return (tokens, torch.full((b,), t, dtype=torch.int64)), y
    return torch.randn(b, *input_shape, generator=g), y


def _main(x):
    # The activation's tensor: AL's named output holds a text model's (h, lengths) tuple.
    while isinstance(x, tuple):
        x = x[0]
    return x


def _detach(x, grad: bool = False):
    if hasattr(x, "_fields"):  # a method's named training output (AL's ALOut): keep its type
        return type(x)(
            *(
                _detach(v, grad and i == 0) if torch.is_tensor(v) or isinstance(v, tuple) else v
                for i, v in enumerate(x)
            )
        )
    if isinstance(x, tuple):
        out = tuple(t.detach() if torch.is_tensor(t) else t for t in x)
        if grad and out[0].is_floating_point():
            out[0].requires_grad_(True)
        return out
    out = x.detach()
    if grad and out.is_floating_point():
        out.requires_grad_(True)
    return out


class _Saved:
    """Bytes autograd saves for backward (activations; parameters are not counted)."""

    def __init__(self, params) -> None:
        self.skip = {p.data_ptr() for p in params}
        self.seen: set[tuple[int, int]] = set()
        self.bytes = 0

    def pack(self, t: torch.Tensor):
        if t.data_ptr() not in self.skip:
            key = (t.data_ptr(), t.untyped_storage().nbytes())
            if key not in self.seen:
                self.seen.add(key)
                self.bytes += t.untyped_storage().nbytes()
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)


class _RNNFlops:
    """FLOPs of ``nn.LSTM`` calls, which the flop counter does not see on the CPU (a fused
    kernel): per token, direction and layer 4H(in + H) multiply-adds forward; backward the
    weight gradients (as many), the recurrent gradient 4H*H and, unless skipped, the input
    gradient 4H*in."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.fwd = self.bwd_in = self.bwd_noin = 0.0
        self.handles = [
            m.register_forward_hook(self.hook)
            for m in module.modules()
            if isinstance(m, torch.nn.LSTM)
        ]

    def hook(self, mod, inp, out) -> None:
        x = inp[0]
        if isinstance(x, torch.nn.utils.rnn.PackedSequence):
            tokens = x.data.shape[0]
        else:
            tokens = x.shape[0] * x.shape[1]
        d = 2 if mod.bidirectional else 1
        h = mod.hidden_size
        for layer in range(mod.num_layers):
            i = mod.input_size if layer == 0 else h * d
            gates = 2.0 * tokens * d * 4 * h  # FLOPs per unit of fan-in
            self.fwd += gates * (i + h)
            self.bwd_noin += gates * (i + h) + gates * h
            self.bwd_in += gates * (i + h) + gates * h + gates * i

    def close(self) -> None:
        for hd in self.handles:
            hd.remove()


def _flops(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        out = fn()
    return out, float(fc.get_total_flops())


def _count(
    model: str,
    method: str,
    n: int,
    input_shape,
    num_classes: int,
    width: float,
    b: int,
    head: str,
    proj_dim: int,
    model_kwargs: dict,
    seed: int,
    method_options: dict | None = None,
) -> dict[str, list[float]]:
    import torch.nn.functional as F

    from scpl.methods import MethodConfig, build_method
    from scpl.models import build_model

    torch.manual_seed(seed)
    m = build_model(model, input_shape, num_classes, n, width, [1] * n, **model_kwargs)
    meth = build_method(method, MethodConfig(head=head, proj_dim=proj_dim, **(method_options or {})))
    units = meth.attach(m)
    x, y = _batch(input_shape, b, num_classes, model_kwargs.get("vocab_size", 1000), seed)
    keys = (
        "fwd bwd_in bwd_noin loss_fwd loss_bwd bp_loss_fwd bp_loss_bwd params head_params "
        "out_bytes saved head_saved"
    ).split()
    c: dict[str, list[float]] = {k: [] for k in keys}
    for i, unit in enumerate(units):
        unit.train()
        body_params = list(unit.body.parameters())
        x_in = _detach(x, grad=i > 0)
        saved = _Saved(unit.parameters())
        rnn = _RNNFlops(unit.body)
        with saved.hooks():
            out, f = _flops(lambda u=unit, xi=x_in: u.forward_train(xi, y))
        rnn.close()
        t = _main(out)
        grad = torch.ones_like(t)
        trainable = [p for p in body_params if p.requires_grad]
        if trainable:
            _, bn = _flops(
                lambda t=t, g=grad, ps=trainable: torch.autograd.backward(
                    t, g, retain_graph=True, inputs=ps
                )
            )
        else:
            bn = 0.0
        if i > 0 and _main(x_in).requires_grad:
            _, bi = _flops(lambda t=t, g=grad: torch.autograd.backward(t, g))
        else:
            bi = bn
        # Loss attached at a cut after this unit (the method's), on a detached output.
        out_d = _detach(out, grad=True)
        hs = _Saved(unit.parameters())
        with hs.hooks():
            (loss, _), lf = _flops(lambda u=unit, o=out_d, xi=x_in: u.stage_loss(o, y, xi))
        lb = _flops(loss.backward)[1] if loss is not None else 0.0
        if unit.is_last:
            # A named training output (AL's) leads with the activation the classifier reads.
            out_d2 = _detach(out[0] if hasattr(out, "_fields") else out, grad=True)
            ce, bf = _flops(lambda u=unit, o=out_d2: F.cross_entropy(u.predict(o), y))
            bb = _flops(ce.backward)[1]
        else:
            bf = bb = 0.0
        c["fwd"].append(f + rnn.fwd)
        c["bwd_in"].append(bi + (rnn.bwd_in if i > 0 else rnn.bwd_noin))
        c["bwd_noin"].append(bn + rnn.bwd_noin)
        c["loss_fwd"].append(lf)
        c["loss_bwd"].append(lb)
        c["bp_loss_fwd"].append(bf)
        c["bp_loss_bwd"].append(bb)
        c["params"].append(float(sum(p.numel() for p in body_params if p.requires_grad)))
        c["head_params"].append(float(sum(p.numel() for p in unit.affiliated_parameters())))
        c["out_bytes"].append(float(t.numel() * t.element_size()))
        c["saved"].append(float(saved.bytes))
        c["head_saved"].append(float(hs.bytes))
        x = _detach(unit.to_next(out))
    # The classifier's parameters: counted with the last unit's head (BP updates them too).
    cls = units[-1].classifier
    c["cls_params"] = (
        [float(sum(p.numel() for p in cls.parameters()))] if cls is not None else [0.0]
    )
    return c


def num_units(
    model: str,
    input_shape: Sequence[int],
    num_stages: int = 4,
    num_classes: int = 10,
    model_kwargs: dict | None = None,
) -> int:
    """How many units the model has when built for ``num_stages`` stages."""
    from scpl.models import build_model

    kw = dict(model_kwargs or {})
    return sum(
        build_model(model, tuple(input_shape), num_classes, num_stages, 0.125, **kw).partition
    )


def profile_model(
    model: str = "vgg",
    method: str = "scpl",
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    width: float = 1.0,
    batch_size: int = 32,
    head: str = "mlp",
    proj_dim: int = 1024,
    num_stages: int = 4,
    model_kwargs: dict | None = None,
    seed: int = 0,
    small: tuple[int, int] = (2, 4),
    method_options: dict | None = None,
) -> Profile:
    """Count every unit's FLOPs, parameters and bytes at ``batch_size`` (extrapolated from two
    small batches, see the module docstring). The unit list is the model's at ``num_stages``
    (text models have one layer per stage after the embedding unless ``num_layers`` is given).
    ``method_options``: further MethodConfig fields (e.g. local_loss, local_ce) of the method."""
    kw = dict(model_kwargs or {})
    shape = tuple(input_shape)
    n = num_units(model, shape, num_stages, num_classes, kw)
    b1, b2 = small
    if not 2 <= b1 < b2:
        raise ConfigError(f"profile batch sizes {small} must satisfy 2 <= b1 < b2")
    with torch.random.fork_rng():
        args = (model, method, n, shape, num_classes, width)
        opts = (head, proj_dim, kw, seed, method_options)
        c1 = _count(*args, b1, *opts)
        c2 = _count(*args, b2, *opts)

    def at(key: str) -> list[float]:
        out = []
        for q1, q2 in zip(c1[key], c2[key], strict=True):
            # q(b) = a*b + c*b^2 through (b1, q1) and (b2, q2).
            cc = (q2 / b2 - q1 / b1) / (b2 - b1)
            a = q1 / b1 - cc * b1
            out.append(max(0.0, a * batch_size + cc * batch_size**2))
        return out

    counts = {k: at(k) for k in c1 if k not in ("params", "head_params", "cls_params")}
    head_params = list(c1["head_params"])
    return Profile(
        model=model,
        method=method,
        head=head,
        batch_size=batch_size,
        params=list(c1["params"]),
        head_params=head_params,
        meta={
            "width": width,
            "input_shape": list(shape),
            "num_classes": num_classes,
            "proj_dim": proj_dim,
            "classifier_params": c1["cls_params"][0],
            "flop_counter": "torch.utils.flop_counter (matmul/conv)",
        },
        **counts,
    )


def stage_ops(
    prof: Profile,
    start: int,
    stop: int,
    local: bool,
    device: Device = DEVICE,
    transfers: bool = True,
) -> dict[str, float]:
    """Seconds per op of a stage holding units ``start .. stop-1`` for one mini-batch: F, L, B
    from FLOPs, U from the parameters it updates, ``send_act``/``send_grad`` from the bytes
    crossing its cuts (none with ``transfers=False``). ``local``: the profile's method (local
    losses, detached stage inputs) or BP over the same units. A stage ending at the last unit
    is the last stage, one starting at unit 0 the first."""
    fps = device.flops_per_s
    n = prof.num_units
    last, idx = stop - 1, range(start, stop)
    is_last = stop == n
    fwd = sum(prof.fwd[i] for i in idx)
    if local:
        bwd = prof.bwd_noin[start] + sum(prof.bwd_in[i] for i in idx if i != start)
        lf, lb = prof.loss_fwd[last], prof.loss_bwd[last]
        params = sum(prof.params[i] for i in idx) + prof.head_params[last]
    else:
        bwd = sum(prof.bwd_in[i] if i > 0 else prof.bwd_noin[i] for i in idx)
        lf = prof.bp_loss_fwd[last] if is_last else 0.0
        lb = prof.bp_loss_bwd[last] if is_last else 0.0
        params = sum(prof.params[i] for i in idx)
        if is_last:
            params += prof.meta.get("classifier_params", 0.0)
    ops = {"F": fwd / fps, "B": (bwd + lb) / fps}
    if local or is_last:
        ops["L"] = lf / fps
    ops["U"] = params * device.update_bytes_per_param / device.mem_bytes_per_s
    if transfers and not is_last:
        ops["send_act"] = prof.out_bytes[last] / device.link_bytes_per_s
    if transfers and not local and start > 0:
        ops["send_grad"] = prof.out_bytes[start - 1] / device.link_bytes_per_s
    return ops


def stage_op_costs(
    prof: Profile,
    partition: Sequence[int],
    local: bool,
    device: Device = DEVICE,
    transfers: bool = True,
) -> Costs:
    """:func:`stage_ops` of every stage of ``partition`` (``{stage: {op: s}}``, the format of
    ``--emulate`` and of the simulator)."""
    if sum(partition) != prof.num_units:
        raise ConfigError(
            f"partition {list(partition)} does not cover the {prof.num_units} units of {prof.model}"
        )
    out: Costs = {}
    start = 0
    for s, p in enumerate(partition):
        out[s] = stage_ops(prof, start, start + p, local, device, transfers)
        start += p
    return out


def one_device_costs(prof: Profile, local: bool = False, device: Device = DEVICE) -> Costs:
    """The whole model as one stage (one device, no transfers): BP by default."""
    return stage_op_costs(prof, [prof.num_units], local, device, transfers=False)


def stage_time(costs: Costs, stage: int) -> float:
    """Seconds one stage is busy per mini-batch (every op once)."""
    return float(sum(costs.get(stage, {}).values()))


def stage_times(costs: Costs) -> list[float]:
    return [stage_time(costs, s) for s in sorted(costs)]


def saved_bytes(prof: Profile, partition: Sequence[int], local: bool) -> list[float]:
    """Bytes of activations one stage keeps for backward, per mini-batch (body, plus the local
    head's on local methods, plus the classifier's on BP's last stage)."""
    out, start = [], 0
    for s, p in enumerate(partition):
        stop = start + p
        body = sum(prof.saved[i] for i in range(start, stop))
        if local or s == len(partition) - 1:
            body += prof.head_saved[stop - 1]
        out.append(body)
        start = stop
    return out


def in_flight(schedule: str, num_stages: int, num_micro: int, local: bool) -> list[int]:
    """Most micro-batches each stage holds between their forward and their backward (what its
    activation memory scales with), read off the schedule's per-stage programs."""
    from scpl.parallel.schedules import SCHEDULES

    progs = SCHEDULES.get(schedule).programs(num_stages, num_micro, local)
    peaks = []
    for prog in progs:
        held = peak = 0
        for op in prog:
            held += (op.kind == "F") - (op.kind == "B")
            peak = max(peak, held)
        peaks.append(peak)
    return peaks


def peak_activation_bytes(
    prof: Profile, partition: Sequence[int], schedule: str, num_micro: int, local: bool
) -> list[float]:
    """Per stage: micro-batches in flight x the bytes one micro-batch keeps for backward."""
    per_batch = saved_bytes(prof, partition, local)
    held = in_flight(schedule, len(partition), num_micro, local)
    return [h * b / num_micro for h, b in zip(held, per_batch, strict=True)]

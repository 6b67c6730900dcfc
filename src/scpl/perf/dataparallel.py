"""Data parallel x pipeline throughput: K stages x R replicas on emulated devices, and the
simulator's prediction with an all-reduce cost model.

Cost model (what the dist executor does, see :mod:`scpl.parallel.dp`): each stage's replicas
all-reduce the stage's gradients inside its update op U, blocking and not overlapped with the
next mini-batch's work, as a ring all-reduce::

    t_allreduce(R) = 2 (R - 1) / R * grad_bytes / bandwidth + 2 (R - 1) * latency

and, for SCPL with the SupCon all-gather, each local-loss op L also all-gathers the stage's
projections (``(R - 1) / R * R * batch * proj_dim * 4`` bytes, plus ``(R - 1)`` latencies). The
replicas run the same programs in lockstep, so a K x R layout is predicted as one K-stage
pipeline whose U (and L) ops take that much longer, processing R x the batch per step.

The emulated measurement runs K x R gloo processes (one per stage and replica) of the tiny proxy
model, every op holding its stage for its emulated duration (GIL released) and U/L also for the
modelled collective time on top of the real (tiny) gloo collectives; each replica trains on its
own shard of an R x larger global batch (weak scaling: the same per-device work as R = 1).
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from dataclasses import asdict, dataclass

import torch

from scpl.parallel.dp import all_reduce_cost


@dataclass
class CollectiveModel:
    """Bandwidth/latency of the links the "dp" collectives use, and the stage gradient size."""

    grad_mb: float = 25.0
    """fp32 gradient of one stage, MB (25 MB: a ~6.5M-parameter stage, a quarter of VGG)."""
    bandwidth_gbs: float = 50.0
    """Bus bandwidth per replica, GB/s (NVLink-class; ~10 for PCIe, ~12 for 100 Gb/s IB)."""
    latency_us: float = 20.0
    """Per ring step."""

    def allreduce_s(self, replicas: int) -> float:
        return all_reduce_cost(
            self.grad_mb * 1e6, replicas, self.bandwidth_gbs * 1e9, self.latency_us * 1e-6
        )

    def gather_s(self, replicas: int, batch: int, proj_dim: int) -> float:
        if replicas <= 1:
            return 0.0
        nbytes = (replicas - 1) * batch * proj_dim * 4  # each replica receives R-1 shards
        return nbytes / (self.bandwidth_gbs * 1e9) + (replicas - 1) * self.latency_us * 1e-6


def dp_costs(
    costs: dict,
    num_stages: int,
    replicas: int,
    model: CollectiveModel,
    gather: tuple[int, int] | None = None,
) -> dict:
    """Per-stage op costs of one replica under data parallelism: U plus the all-reduce, and L
    plus the SupCon all-gather when ``gather`` = (per-replica batch, proj_dim) is given."""
    out = copy.deepcopy(costs)
    for s in range(num_stages):
        ops = out.setdefault(s, {})
        ops["U"] = ops.get("U", 0.0) + model.allreduce_s(replicas)
        if gather is not None:
            ops["L"] = ops.get("L", 0.0) + model.gather_s(replicas, *gather)
    return out


def predict(
    schedule: str, num_stages: int, replicas: int, costs: dict, steps: int, batch: int, warmup: int
) -> float:
    """Simulated samples/s of K stages x R replicas (``costs`` already include collectives;
    ``batch`` is one replica's)."""
    from scpl.perf.simulate import simulate

    sim = simulate(schedule, num_stages, costs, steps)
    return sim.steady_rate(warmup) * batch * replicas


def _worker(rank: int, world: int, rdzv: str, kw: dict, out_dir: str) -> None:
    import torch.distributed as dist

    from scpl.api import pipeline
    from scpl.methods import MethodConfig
    from scpl.models import build_model
    from scpl.parallel import OptimConfig
    from scpl.perf.harness import Proxy, make_batches

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rdzv, rank=rank, world_size=world)
    try:
        proxy = Proxy(**kw["proxy"])
        K, R = kw["stages"], kw["replicas"]
        torch.manual_seed(0)
        model = build_model(
            proxy.model, tuple(proxy.input_shape), proxy.num_classes, K, proxy.width
        )
        pipe = pipeline(
            model,
            kw["method"],
            devices="cpu",
            optimizer=OptimConfig(lr=1e-3),
            schedule=kw["schedule"],
            executor="dist",
            method_config=MethodConfig(head=proxy.head, proj_dim=proxy.proj_dim),
            emulate={int(k): v for k, v in kw["emulate"].items()},
            record=True,
            data_parallel=R,
        )
        # Weak scaling: a global batch of R x the proxy's, each replica taking rows r::R.
        big = Proxy(**{**kw["proxy"], "batch_size": proxy.batch_size * R})
        replica = rank // K
        batches = [
            (x[replica::R], y[replica::R]) for x, y in make_batches(kw["warmup"] + kw["steps"], big)
        ]
        for x, y in batches[: kw["warmup"]]:
            pipe.step(x, y)
        pipe.flush()
        dist.barrier()
        t0 = time.perf_counter()
        for x, y in batches[kw["warmup"] :]:
            pipe.step(x, y)
        pipe.flush()
        wall = time.perf_counter() - t0
        ex = pipe.executor
        events = [vars(e) for e in ex.recorder.events if e.batch >= 0]
        pipe.close()
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump({"wall_s": wall, "events": events}, f)
    finally:
        dist.destroy_process_group()


def run_dp(
    num_stages: int,
    replicas: int,
    emulate: dict,
    *,
    steps: int = 12,
    warmup: int = 1,
    schedule: str = "scpl",
    method: str = "scpl",
    proxy=None,
):
    """Run K x R gloo processes with emulated op costs; a RunResult over replica 0's events
    (global batch size), as the bench rows expect."""
    import torch.multiprocessing as mp

    from scpl.parallel.runner import Event
    from scpl.perf.harness import Proxy, RunResult, file_rendezvous, rebase

    proxy = proxy or Proxy()
    world = num_stages * replicas
    kw = dict(
        stages=num_stages,
        replicas=replicas,
        emulate={str(k): v for k, v in emulate.items()},
        steps=steps,
        warmup=warmup,
        schedule=schedule,
        method=method,
        proxy=asdict(proxy),
    )
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world, file_rendezvous(tmp), kw, tmp), nprocs=world, join=True)
        res = []
        for r in range(world):
            with open(f"{tmp}/rank{r}.json") as f:
                res.append(json.load(f))
    # Every replica's events: a batch finishes when its last op on any replica has ended.
    events = rebase([Event(**e) for r in res for e in r["events"]], warmup)
    return RunResult(events, max(r["wall_s"] for r in res), 0.0, steps, proxy.batch_size * replicas)

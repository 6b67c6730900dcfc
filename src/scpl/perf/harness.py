"""The run harness of the emulated studies: train a few mini-batches of a tiny proxy model with a
recorder (local or sequential executor in this process, or the dist executor on gloo processes)
and turn the timeline into throughput and simulator-agreement numbers.

Emulated device time: every op of the proxy holds its stage for a chosen duration while
releasing the GIL, as a GPU kernel would (see :mod:`scpl.perf.emulate`), so its own compute is
small next to the emulated time.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from scpl.perf.measure import Workload, model_pipeline, synthetic_batch


@dataclass
class Proxy(Workload):
    """The tiny real model that carries emulated durations (its own compute is small)."""

    model: str = "convnet"
    width: float = 0.125
    input_shape: tuple[int, ...] = (1, 8, 8)
    batch_size: int = 16
    head: str = "linear"
    proj_dim: int = 32


def method_for(schedule: str, method: str = "scpl") -> str:
    """The method a schedule runs in the studies: ``method`` where the schedule accepts it, BP
    on the BP-only schedules (nmp, gpipe), scpl on the local-loss ones for a BP ``method``."""
    from scpl.methods import METHODS
    from scpl.parallel import SCHEDULES

    sched = SCHEDULES.get(schedule)
    if sched.accepts(METHODS.get(method).local):
        return method
    return "bp" if sched.local is False else "scpl"


SCHEDULE_ROWS = ("sequential", "scpl", "scpl-gpipe", "nmp", "gpipe")
"""The schedules a study compares, in table order."""


def schedule_rows(
    K: int, batch_size: int, schedules: Sequence[str] = SCHEDULE_ROWS
) -> Iterator[tuple[str, str, int]]:
    """(schedule, method, micro-batches) of every row at K stages: sequential runs both SCPL
    and BP (the one-op-at-a-time reference of each); the GPipe variants use m = K micro-batches
    (skipped at K = 1, where they equal their m = 1 schedule, and where m does not divide the
    batch)."""
    from scpl.parallel import SCHEDULES

    for schedule in schedules:
        micro = SCHEDULES.get(schedule).micro_batches and schedule != "sequential"
        if micro and K == 1:
            continue
        m = K if micro else 1
        methods = ("scpl", "bp") if schedule == "sequential" else (method_for(schedule),)
        for method in methods:
            if batch_size % m == 0:
                yield schedule, method, m


def proxy_pipeline(
    executor: str,
    schedule: str,
    method: str,
    num_stages: int,
    num_micro: int = 1,
    emulate: dict | None = None,
    record: bool = True,
    proxy: Proxy | None = None,
    queue_depth: int = 2,
    partition: Sequence[int] | None = None,
    seed: int = 0,
):
    """The proxy model under ``method`` on ``schedule``/``executor`` as a :class:`Pipeline`."""
    return model_pipeline(
        proxy or Proxy(),
        method,
        num_stages,
        executor=executor,
        schedule=schedule,
        num_micro=num_micro,
        partition=partition,
        emulate=emulate,
        record=record,
        queue_depth=queue_depth,
        seed=seed,
    )


def make_batches(steps: int, proxy: Proxy, seed: int = 0) -> list:
    """``steps`` random batches for the proxy (images or, for a (T,) input shape, text)."""
    g = torch.Generator().manual_seed(seed)
    vocab = proxy.model_kwargs.get("vocab_size", 1000)
    return [
        synthetic_batch(proxy.input_shape, proxy.batch_size, proxy.num_classes, g, vocab)
        for _ in range(steps)
    ]


@dataclass
class RunResult:
    events: list
    wall_s: float
    cpu_s: float
    steps: int
    batch_size: int


def _profiler(path: str):
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        acts.append(ProfilerActivity.CUDA)
    kw = {}
    try:  # the stage workers are threads: record them all, not only this one
        from torch._C._profiler import _ExperimentalConfig

        kw["experimental_config"] = _ExperimentalConfig(profile_all_threads=True)
    except (ImportError, TypeError):
        pass
    return profile(activities=acts, **kw)


def run_emulated(
    executor: str,
    schedule: str,
    method: str,
    num_stages: int,
    num_micro: int = 1,
    emulate: dict | None = None,
    steps: int = 12,
    proxy: Proxy | None = None,
    queue_depth: int = 2,
    torch_profiler: str | None = None,
    warmup_batches: int = 1,
    record: bool = True,
) -> RunResult:
    """Train ``steps`` mini-batches of the proxy with a recorder; returns their timeline.

    ``warmup_batches`` run first and are flushed (lazy initialisation, the first optimizer step),
    so the recorded batches start on an idle, warm pipeline; they are renumbered from 0 and time
    starts at their first op. ``torch_profiler``: also wrap the timed batches in torch.profiler
    and write its Chrome trace there."""
    proxy = proxy or Proxy()
    pipe = proxy_pipeline(
        executor, schedule, method, num_stages, num_micro, emulate, record, proxy, queue_depth
    )
    ex = pipe.executor
    batches = make_batches(warmup_batches + steps, proxy)
    prof = None
    try:
        for x, y in batches[:warmup_batches]:
            pipe.step(x, y)
        pipe.flush()
        if torch_profiler:
            prof = _profiler(torch_profiler)
            prof.__enter__()
        c0, t0 = time.process_time(), time.perf_counter()
        for x, y in batches[warmup_batches:]:
            pipe.step(x, y)
        pipe.flush()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        pipe.metrics()
    finally:
        pipe.close()
        if prof is not None:
            prof.__exit__(None, None, None)
            Path(torch_profiler).parent.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(torch_profiler))
    events = rebase(ex.recorder.events, warmup_batches) if record else []
    return RunResult(events, wall, cpu, steps, proxy.batch_size)


def rebase(events, skip_batches: int) -> list:
    """Drop eval and the first ``skip_batches`` batches; renumber batches from 0 and shift time
    so the first remaining op starts at 0."""
    from scpl.parallel.runner import Event

    ev = [e for e in events if e.batch >= skip_batches]
    if not ev:
        return []
    t0 = min(e.start for e in ev)
    return [
        Event(e.stage, e.kind, e.batch - skip_batches, e.mb, e.start - t0, e.end - t0, e.device)
        for e in ev
    ]


# -- dist: one process per stage ------------------------------------------------------------


def file_rendezvous(folder: str) -> str:
    """A ``file://`` rendezvous in ``folder`` for spawned processes: unlike a TCP port found
    free a moment before, no other job can take it in between."""
    return "file://" + os.path.join(os.path.abspath(folder), "rendezvous")


def _dist_worker(rank: int, world: int, rdzv: str, kw: dict, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rdzv, rank=rank, world_size=world)
    try:
        proxy = Proxy(**kw["proxy"])
        pipe = proxy_pipeline(
            "dist",
            kw["schedule"],
            kw["method"],
            world,
            kw.get("num_micro", 1),
            kw.get("emulate"),
            True,
            proxy,
            partition=kw.get("partition"),
        )
        ex = pipe.executor
        batches = make_batches(kw["warmup"] + kw["steps"], proxy)
        for x, y in batches[: kw["warmup"]]:
            pipe.step(x, y)
        pipe.flush()
        dist.barrier()
        c0, t0 = time.process_time(), time.perf_counter()
        for x, y in batches[kw["warmup"] :]:
            pipe.step(x, y)
        pipe.flush()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        events = [vars(e) for e in ex.recorder.events if e.batch >= 0]
        pipe.close()
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump({"cpu_s": cpu, "wall_s": wall, "events": events}, f)
    finally:
        dist.destroy_process_group()


def run_dist(world: int, **kw) -> list[dict]:
    """Run the proxy (or ``kw['proxy']``) on ``world`` gloo processes; per-rank results."""
    import torch.multiprocessing as mp

    kw.setdefault("proxy", asdict(Proxy()))
    kw.setdefault("warmup", 1)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_dist_worker, args=(world, file_rendezvous(tmp), kw, tmp), nprocs=world, join=True)
        out = []
        for r in range(world):
            with open(f"{tmp}/rank{r}.json") as f:
                out.append(json.load(f))
    return out


def dist_result(res: list[dict], steps: int, batch_size: int, skip_batches: int = 1) -> RunResult:
    """One RunResult from the per-rank results of :func:`run_dist` (events of all ranks)."""
    from scpl.parallel.runner import Event

    events = rebase([Event(**e) for r in res for e in r["events"]], skip_batches)
    return RunResult(events, max(r["wall_s"] for r in res), 0.0, steps, batch_size)


def cpu_seconds(proxy: Proxy, num_stages: int, steps: int, warmup: int = 1) -> dict:
    """Total CPU seconds (all threads / all processes) and wall seconds of the same scpl training
    work on the sequential, local (threads) and dist (gloo processes) executors."""
    out = {}
    for executor in ("sequential", "local"):
        r = run_emulated(
            executor,
            "scpl",
            "scpl",
            num_stages,
            steps=steps,
            proxy=proxy,
            warmup_batches=warmup,
            record=False,
        )
        out[executor] = (r.cpu_s, r.wall_s)
    res = run_dist(
        num_stages, schedule="scpl", method="scpl", steps=steps, warmup=warmup, proxy=asdict(proxy)
    )
    out["dist"] = (sum(r["cpu_s"] for r in res), max(r["wall_s"] for r in res))
    return out


# -- rows -----------------------------------------------------------------------------------


def row_times(res: RunResult, warmup: int) -> dict:
    """Steady-state and end-to-end samples/s and the first iteration's latency of a run."""
    from scpl.perf.simulate import SimResult

    sr = SimResult(res.events, 0, res.steps)
    rate = sr.steady_rate(warmup) * res.batch_size
    return {
        "samples_per_s": rate,
        "e2e_samples_per_s": res.steps * res.batch_size / res.wall_s,
        "iter_latency_ms": sr.latency() * 1e3,
    }


def sim_columns(
    res: RunResult, schedule: str, K: int, m: int, method: str, emulate, warmup: int
) -> dict:
    """Replay a recorded run in the simulator with the op costs the run recorded (work ops: mean
    span; receives: from the matching send to their end; see costs_from_events) -- the error
    columns -- and with the nominal emulated costs alone (no proxy compute) -- the nominal
    columns."""
    from scpl.methods import METHODS
    from scpl.perf.emulate import costs_from_events
    from scpl.perf.simulate import compare, simulate

    local = METHODS.get(method).local
    costs = costs_from_events(res.events, skip_batches=0, base=emulate)
    sim = simulate(schedule, K, costs, res.steps, m, local)
    nominal = simulate(schedule, K, emulate or {}, res.steps, m, local)
    c = compare(res.events, sim.events, warmup)
    rate = nominal.steady_rate(warmup) * res.batch_size
    return {
        "sim_samples_per_s": sim.steady_rate(warmup) * res.batch_size,
        "sim_err_pct": 100 * c["throughput_rel_err"],
        "sim_makespan_err_pct": 100 * c["makespan_rel_err"],
        "sim_same_order": c["same_order"],
        "nominal_samples_per_s": rate,
        "nominal_latency_ms": nominal.latency() * 1e3,
    }


def real_compute(
    model: str,
    width: float,
    batch_size: int,
    input_shape: tuple[int, ...],
    rounds: int,
    device: str,
    proxy: Proxy,
    steps: int,
    log=print,
) -> dict:
    """Real compute: the one-device SCPL/BP step-time ratio and the augmentation share of a
    two-view step (``model`` at ``width``, ``batch_size``), and the CPU time of the same scpl work
    (``proxy`` at K=2, ``steps`` mini-batches) on the sequential, local and dist executors."""
    from scpl.perf.measure import augment_share, step_ratio

    log(f"bench: real compute ({model} width {width}, batch {batch_size})")
    sr = step_ratio(
        model, ("bp", "scpl"), batch_size, input_shape, 10, width, rounds, device=device
    )
    real = {
        "step_s_bp": sr[0]["median_s"],
        "step_s_scpl": sr[1]["median_s"],
        "scpl_vs_bp": sr[1]["ratio_vs_bp"],
        **augment_share(width, batch_size, input_shape, rounds, device),
    }
    K = 2
    cpu = cpu_seconds(proxy, K, steps)
    log(f"  cpu: {cpu}")
    return {
        **real,
        "model": f"{proxy.model} w={proxy.width} batch {proxy.batch_size}",
        "K": K,
        "steps": steps,
        "cpu_s_sequential": cpu["sequential"][0],
        "cpu_s_local": cpu["local"][0],
        "cpu_s_dist": cpu["dist"][0],
        "dist_vs_local": cpu["dist"][0] / cpu["local"][0],
        "local_vs_sequential": cpu["local"][0] / cpu["sequential"][0],
    }

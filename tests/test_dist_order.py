"""dist messages are matched without tags (NCCL ignores tags).

Two checks for every registered schedule:

* statically, from the programs: between two ranks, the order in which one sends activations
  (gradients, tokens) is the order in which the other receives them;
* on recorded gloo runs: every message each rank sent or posted a receive for, per process
  group and ordered pair, is matched one for one -- the k-th send from a to b carries what the
  k-th receive b posted from a expects (kind, dtype, shape). Under tag-free FIFO matching that
  is exactly the condition for no message to land in the wrong buffer.
"""

from __future__ import annotations

import pytest
import torch

from parity_utils import init_gloo, make_batches, make_pipeline, rendezvous, text_kwargs
from scpl.parallel.dist import check_message_logs, serialised_programs
from scpl.parallel.schedules import SCHEDULES


def _cases():
    for name in SCHEDULES.names():
        sched = SCHEDULES.get(name)
        for local in (True, False):
            if sched.accepts(local):
                yield name, local


def _programs(name, local, K, m):
    sched = SCHEDULES.get(name)
    if sched.concurrent:
        return sched.programs(K, m, local)
    return serialised_programs(sched.order(K, m, local), K)


@pytest.mark.parametrize("name,local", list(_cases()))
def test_dist_message_order_programs_match_for_every_schedule(name, local):
    sched = SCHEDULES.get(name)
    for K in (2, 3, 4):
        for m in (1, 2, 3) if sched.micro_batches else (1,):
            progs = _programs(name, local, K, m)
            for s in range(K - 1):
                sent = [op.mb for op in progs[s] if op.kind == "send_act"]
                got = [op.mb for op in progs[s + 1] if op.kind == "recv_act"]
                assert sent == got, f"{name} K={K} m={m}: activations {s}->{s + 1}"
                sent = [op.mb for op in progs[s + 1] if op.kind == "send_grad"]
                got = [op.mb for op in progs[s] if op.kind == "recv_grad"]
                assert sent == got, f"{name} K={K} m={m}: gradients {s + 1}->{s}"
            # Tokens: per batch, as many sent from a to b as b receives from a (steady state:
            # the first batch's opening token is skipped, the previous batch's closing one
            # stands in for it).
            for a in range(K):
                for b in range(K):
                    sends = sum(op.kind == "token_send" and op.mb == b for op in progs[a])
                    recvs = sum(
                        op.kind in ("token_recv", "token_recv_batch") and op.mb == a
                        for op in progs[b]
                    )
                    assert sends == recvs, f"{name} K={K} m={m}: tokens {a}->{b}"


def test_dist_message_order_checker_catches_a_swap():
    act = ("fwd", "send", 1, "act0", (4, 8), "float32")
    lab = ("fwd", "send", 1, "label", (4,), "int64")
    ok = [[act, lab], [("fwd", "recv", 0, *act[3:]), ("fwd", "recv", 0, *lab[3:])]]
    assert check_message_logs(ok) == []
    swapped = [[lab, act], ok[1]]
    assert check_message_logs(swapped)
    missing = [[act], ok[1]]
    assert check_message_logs(missing)


# -- recorded gloo runs: every schedule, one set of processes ---------------------------
RUNS = [
    dict(schedule="sequential", method="scpl"),
    dict(schedule="sequential", method="bp"),
    dict(schedule="scpl", method="scpl"),
    dict(schedule="scpl-gpipe", method="scpl", num_micro=2),
    dict(schedule="nmp", method="bp"),
    dict(schedule="gpipe", method="bp", num_micro=2),
    dict(schedule="scpl", method="scpl", model="lstm"),  # host-side lengths
    dict(schedule="scpl", method="al"),  # inference exports to the last rank
]
RUNS += [
    dict(schedule=n, method="scpl" if local else "bp", num_micro=2)
    for n, local in _cases()
    if not any(r["schedule"] == n and (r["method"] != "bp") == local for r in RUNS)
]


def _run_id(run):
    return "-".join(str(v) for v in run.values())


def _worker(rank, world, rdzv, out_dir):

    import faulthandler
    import sys

    import torch.distributed as dist

    faulthandler.dump_traceback_later(240, exit=True, file=sys.stderr)
    torch.set_num_threads(1)
    init_gloo(rank, world, rdzv)
    logs = {}
    try:
        for run in RUNS:
            run = dict(run)
            model = run.pop("model", "convnet")
            kw, shape = {}, (1, 8, 8)
            if model == "lstm":
                kw, shape = text_kwargs(model, {}), (12,)
            pipe = make_pipeline("dist", model=model, stages=world, input_shape=shape, **run, **kw)
            ch = pipe.executor.channel
            ch.message_log = []
            pipe.executor.barrier(120.0)
            text = model == "lstm"
            for x, y in make_batches(3, 16, shape, text=text):
                pipe.step(x, y)
            pipe.flush()
            pipe.metrics()
            pipe.evaluate(make_batches(2, 16, shape, seed=7, text=text))
            pipe.close()
            logs[_run_id(dict(run, model=model))] = ch.message_log
        torch.save(logs, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("dist-order")
    world = 3
    mp.spawn(_worker, args=(world, rendezvous(out), str(out)), nprocs=world, join=True)
    return [torch.load(f"{out}/rank{r}.pt") for r in range(world)]


@pytest.mark.parametrize("run", RUNS, ids=_run_id)
def test_dist_message_order_recorded_runs_match_without_tags(recorded, run):
    key = _run_id(dict(run, model=run.get("model", "convnet")))
    logs = [r[key] for r in recorded]
    assert all(logs), "every rank recorded messages"
    problems = check_message_logs(logs)
    assert not problems, "\n".join(problems[:10])
    groups = {e[0] for log in logs for e in log}
    assert "host" in groups and "fwd" in groups
    if run["method"] == "bp":
        assert "bwd" in groups
    if run["schedule"] == "sequential":
        assert "token" in groups

"""BatchNorm and dropout under data parallelism (dist executor, gloo): K=2 stages x R=2 replicas.

A stage's replicas see different rows, so their BatchNorm running statistics drift apart and,
seeded alike, they would draw the same dropout masks. The executor averages every floating
buffer over a stage's replicas before each evaluation and checkpoint (and whenever the stage's
state is read), and gives each replica's stage its own random stream, saved in replica 0's
checkpoint. Checked on a BN ConvNet (and the same with dropout after every stage):

* before the average the replicas' buffers differ (so the checks below can fail);
* at evaluation and at a checkpoint they are bitwise equal, and a checkpoint holds exactly
  the mean of the replicas' buffers;
* evaluation equals one process scoring every batch with replica 0's state;
* replicas of a stage draw different dropout masks, the same in two runs;
* a run stopped at a checkpoint and resumed from replica 0's files (as ``--resume`` does)
  ends bitwise where the uninterrupted run ends, on every replica.

Mutants run against this file (each fails at least one test):
  no average before evaluation; no average in state_dict; sum without the division by R;
  replica 0's buffers broadcast instead of averaged; the replica left out of the seed (all
  replicas draw the same masks); the replicas' random streams not gathered into the
  checkpoint (resume restarts them from the seed).
"""

from __future__ import annotations

import torch
from torch import nn

import scpl
from parity_utils import init_gloo, make_batches, make_model, rendezvous

K, R, BATCH = 2, 2, 16
STEPS, CKPT_AT = 4, 2
EVAL = dict(num_steps=2, batch=BATCH, seed=7)


def _pipe(executor="dist", dropout=0.0, **kw):
    model = make_model("convnet", K, batch_norm=True)
    if dropout:
        for i, stage in enumerate(model.stages):
            model.stages[i] = nn.Sequential(stage, nn.Dropout(dropout))
    return scpl.pipeline(
        model,
        "scpl",
        devices="cpu",
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05),
        schedule="scpl",
        executor=executor,
        head="mlp",
        proj_dim=32,
        **kw,
    )


def _buffers(pipe) -> dict[str, torch.Tensor]:
    """This rank's floating buffers as they are now (reading them is no collective)."""
    unit = pipe.executor.runner.unit
    return {k: b.clone() for k, b in unit.named_buffers() if b.is_floating_point()}


def _floating(state: dict) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in state.items() if "running" in k}


def _step(pipe, batches, replica):
    for x, y in batches:
        pipe.step(x[replica::R], y[replica::R])


def _run_plain(replica):
    """BN without dropout: buffers before and at evaluation, and at a checkpoint."""
    batches = make_batches(STEPS, BATCH)
    with _pipe(data_parallel=R) as pipe:
        pipe.executor.barrier(120.0)
        _step(pipe, batches[:CKPT_AT], replica)
        pipe.flush()
        raw = _buffers(pipe)
        ckpt = _floating(pipe.state_dict()["runner"]["unit"])
        _step(pipe, batches[CKPT_AT:], replica)
        pipe.flush()
        acc = pipe.evaluate(make_batches(**EVAL))
        at_eval = _buffers(pipe)
        final = {k: v.clone() for k, v in pipe.unit_states()[0].items()}
    return {"raw": raw, "ckpt": ckpt, "eval": at_eval, "acc": acc, "final": final}


def _run_dropout(replica, stage, out_dir, resume_from=None):
    """BN + dropout: the first step's dropout mask, a checkpoint at CKPT_AT written by replica 0
    (or, with ``resume_from``, that checkpoint loaded), the final state."""
    batches = make_batches(STEPS, BATCH)
    masks = []

    def hook(module, inp, out):
        if module.training:  # dropped where the output is 0 but the input was not
            masks.append((out == 0, inp[0] != 0))

    with _pipe(dropout=0.3, data_parallel=R) as pipe:
        pipe.executor.runner.unit.body[1].register_forward_hook(hook)
        pipe.executor.barrier(120.0)
        if resume_from is None:
            _step(pipe, batches[:CKPT_AT], replica)
            ck = pipe.state_dict()
            if replica == 0:
                torch.save(ck, f"{out_dir}/ckpt.stage{stage}.pt")
        else:
            pipe.load_state_dict(torch.load(f"{resume_from}/ckpt.stage{stage}.pt"))
        _step(pipe, batches[CKPT_AT:], replica)
        pipe.flush()
        final = {k: v.clone() for k, v in pipe.unit_states()[0].items()}
    return {"mask": masks[0], "final": final}


def _worker(rank, world, rdzv, out_dir):
    import faulthandler
    import sys

    import torch.distributed as dist

    faulthandler.dump_traceback_later(240, exit=True, file=sys.stderr)
    torch.set_num_threads(1)
    init_gloo(rank, world, rdzv)
    replica, stage = divmod(rank, K)
    try:
        out = {"plain": _run_plain(replica)}
        out["dropout"] = [_run_dropout(replica, stage, out_dir) for _ in range(2)]
        dist.barrier()  # replica 0's checkpoint files are written
        out["resumed"] = _run_dropout(replica, stage, out_dir, resume_from=out_dir)
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path):
    import torch.multiprocessing as mp

    world = K * R
    mp.spawn(_worker, args=(world, rendezvous(tmp_path), str(tmp_path)), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]


def _assert_equal(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def test_data_parallel_batchnorm_replicas(tmp_path):
    got = _spawn(tmp_path)
    for stage in range(K):
        r0, r1 = got[stage], got[K + stage]
        # Without the average the replicas' statistics differ: the checks below can fail.
        p0, p1 = r0["plain"], r1["plain"]
        assert any(not torch.equal(p0["raw"][k], p1["raw"][k]) for k in p0["raw"]), stage
        _assert_equal(p0["ckpt"], p1["ckpt"], f"stage {stage} checkpoint buffers")
        mean = {k: (p0["raw"][k] + p1["raw"][k]) / R for k in p0["raw"]}
        _assert_equal(p0["ckpt"], mean, f"stage {stage} checkpoint vs the replicas' mean")
        _assert_equal(p0["eval"], p1["eval"], f"stage {stage} buffers at evaluation")
        _assert_equal(p0["final"], p1["final"], f"stage {stage} state")
        assert p0["acc"] == p1["acc"]

        # Dropout: distinct masks per replica, the same in a second run.
        d0, d1 = r0["dropout"], r1["dropout"]
        for d in (d0, d1):
            same = map(torch.equal, d[0]["mask"], d[1]["mask"])
            assert all(same), f"stage {stage}: dropout masks differ between two runs"
        # The replicas' inputs differ (and ReLU zeros look dropped): compare where both
        # replicas' inputs are non-zero.
        (drop0, nz0), (drop1, nz1) = d0[0]["mask"], d1[0]["mask"]
        both = nz0 & nz1
        assert both.sum() > 100
        assert not torch.equal(drop0[both], drop1[both]), (
            f"stage {stage}: both replicas drew the same dropout mask"
        )
        _assert_equal(d0[0]["final"], d0[1]["final"], f"stage {stage} run vs rerun")
        _assert_equal(d0[0]["final"], d1[0]["final"], f"stage {stage} replicas after dropout")
        # Resumed from replica 0's checkpoint: bitwise the uninterrupted run, on every replica.
        for rank in (stage, K + stage):
            _assert_equal(
                got[rank]["dropout"][0]["final"],
                got[rank]["resumed"]["final"],
                f"rank {rank} resume",
            )

    with _pipe("sequential") as ref_pipe:
        ref_pipe.load_unit_states([got[s]["plain"]["final"] for s in range(K)])
        # One process scoring every batch with replica 0's state counts what the replicas did.
        assert ref_pipe.evaluate(make_batches(**EVAL)) == got[0]["plain"]["acc"]


def test_data_parallel_batchnorm_resume_via_torchrun_is_bitwise_equal(tmp_path):
    """`scpl train --executor dist --nproc 4 --stages 2 --data-parallel 2` (the smoke recipe: a
    BN ConvNet on digits) killed at its 2nd checkpoint save and resumed ends bitwise where an
    uninterrupted run ends: the training loop's checkpoints hold the averaged buffers and every
    replica resumes from them."""
    import os
    import subprocess
    import sys

    args = ["train", "smoke", "--executor", "dist", "--nproc", "4", "--stages", "2",
            "--data-parallel", "2", "--epochs", "1", "--max-steps", "6", "--checkpoint-every",
            "2", "--progress", "false"]  # fmt: skip

    def run(out, *extra, **env):
        e = dict(os.environ, OMP_NUM_THREADS="1")
        e.pop("SCPL_FAULT", None)
        e.update(env)
        cmd = [sys.executable, "-m", "scpl.cli", *args, "--out", str(out), *extra]
        return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=400)

    ref, out = tmp_path / "ref", tmp_path / "run"
    done = run(ref)
    assert done.returncode == 0, done.stderr[-2000:]
    crashed = run(out, SCPL_FAULT="kill-during-save:2")
    assert crashed.returncode != 0 and not (out / "final.rank0.pt").exists()
    done = run(out, "--resume", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "step 2" in done.stdout  # resumed from the first checkpoint
    for stage in range(K):
        a = torch.load(ref / f"final.rank{stage}.pt")[0]
        b = torch.load(out / f"final.rank{stage}.pt")[0]
        _assert_equal(a, b, f"stage {stage} after resume")

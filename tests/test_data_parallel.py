"""Data parallel x pipeline (dist executor, gloo): K=2 stages x R=2 replicas on 4 processes.

R replicas on strided shards (rows r::R) of each global batch must end where one pipeline on
the global batch ends (SupCon over the global batch through the all-gather), within 1e-6
relative, for the scpl, scpl-gpipe, nmp and gpipe schedules; two runs with the same seed are
bitwise equal, and a stage's replicas hold bitwise equal weights.

The optimizer is SGD: its update is linear in the gradient, so the comparison measures the
gradients. Adam's first updates are about g / |g| per element, which turns rounding-level
differences of near-zero gradient entries into lr-sized steps (with Adam, lr 1e-2, 3 steps,
the SCPL stages' heads end 2e-5..9e-5 apart relative; the BP schedules 7e-8).
"""

from __future__ import annotations

import pytest
import torch

import scpl
from parity_utils import init_gloo, make_batches, make_model, rendezvous
from scpl.errors import ConfigError

K, R, STEPS, BATCH = 2, 2, 3, 16
CASES = [("scpl", "scpl", 1), ("scpl", "scpl-gpipe", 2), ("bp", "nmp", 1), ("bp", "gpipe", 2)]


def _pipe(method, schedule, micro, executor, **kw):
    model = make_model("convnet", K, batch_norm=False)
    return scpl.pipeline(
        model,
        method,
        devices="cpu",
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05),
        schedule=schedule,
        micro_batches=micro,
        executor=executor,
        head="mlp",
        proj_dim=32,
        **kw,
    )


def _train(pipe, replica=0, replicas=1):
    for x, y in make_batches(STEPS, BATCH):
        # Strided shards: replica r's micro-batch m holds the rows of the global micro-batch m
        # with index = r (mod R), so the union over replicas is the global micro-batch.
        pipe.step(x[replica::replicas], y[replica::replicas])
    pipe.flush()
    return [{k: v.clone() for k, v in st.items()} for st in pipe.unit_states()]


def _worker(rank, world, rdzv, out_dir):
    import faulthandler
    import sys

    import torch.distributed as dist

    faulthandler.dump_traceback_later(240, exit=True, file=sys.stderr)
    torch.set_num_threads(1)
    init_gloo(rank, world, rdzv)
    replica = rank // K
    out = {}
    try:
        for method, schedule, micro in CASES:
            runs = []
            for _ in range(2):  # the same seed twice: bitwise equal
                pipe = _pipe(method, schedule, micro, "dist", data_parallel=R)
                try:
                    pipe.executor.barrier(120.0)
                    runs.append(_train(pipe, replica, R)[0])
                    acc = pipe.evaluate(make_batches(2, BATCH, seed=7))
                finally:
                    pipe.close()
            out[schedule] = {"runs": runs, "acc": acc}
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


def test_data_parallel_matches_one_pipeline_on_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    world = K * R
    mp.spawn(_worker, args=(world, rendezvous(tmp_path), str(tmp_path)), nprocs=world, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    worst = {schedule: 0.0 for _, schedule, _ in CASES}
    for method, schedule, micro in CASES:
        with _pipe(method, schedule, micro, "sequential") as ref_pipe:
            ref = _train(ref_pipe)
            ref_acc = ref_pipe.evaluate(make_batches(2, BATCH, seed=7))
        for rank in range(world):
            stage = rank % K
            a, b = got[rank][schedule]["runs"]
            for k in a:
                assert torch.equal(a[k], b[k]), f"{schedule} rank {rank} {k}: runs differ"
                # Replicas of a stage apply the same averaged gradient: bitwise equal weights.
                assert torch.equal(a[k], got[stage][schedule]["runs"][0][k]), (
                    f"{schedule} stage {stage}: replicas differ in {k}"
                )
                if a[k].is_floating_point():
                    worst[schedule] = max(worst[schedule], _rel(a[k], ref[stage][k]))
            assert got[rank][schedule]["acc"] == pytest.approx(ref_acc, abs=1e-9)
    print("max relative error per schedule:", worst)
    assert max(worst.values()) <= 1e-6, worst


def test_data_parallel_needs_the_dist_executor():
    with pytest.raises(ConfigError, match="data_parallel=2 is not supported"):
        _pipe("scpl", "scpl", 1, "local", data_parallel=2)


def test_data_parallel_config_checks():
    from scpl.training.config import TrainConfig

    with pytest.raises(ConfigError, match="--data-parallel is not supported with --executor local"):
        TrainConfig(data_parallel=2, executor="local").validate()
    with pytest.raises(ConfigError, match="multiple of --data-parallel"):
        TrainConfig(data_parallel=4, executor="dist", batch_size=6).validate()
    with pytest.raises(ConfigError, match="pass --nproc 4"):
        TrainConfig(data_parallel=2, executor="dist", stages=2, nproc=2).validate()


def test_shard_batch_strided_rows():
    from scpl.training.feed import shard_batch

    x, y = torch.arange(8).view(8, 1), torch.arange(8)
    xs, ys = shard_batch(x, y, 1, 2)
    assert ys.tolist() == [1, 3, 5, 7] and xs.view(-1).tolist() == [1, 3, 5, 7]
    (tok, lengths), _ = shard_batch((x, torch.arange(8)), y, 0, 4)
    assert lengths.tolist() == [0, 4]
    with pytest.raises(ConfigError, match="equal shards"):
        shard_batch(x[:7], y[:7], 0, 2)


def test_train_two_stages_two_replicas_via_torchrun(tmp_path):
    """`scpl train --executor dist --nproc 4 --data-parallel 2`: 2 stages x 2 replicas finish;
    replica 0 writes one checkpoint per stage."""
    import subprocess
    import sys

    out = tmp_path / "dp"
    proc = subprocess.run(
        [sys.executable, "-m", "scpl.cli", "train", "smoke", "--executor", "dist", "--nproc", "4",
         "--stages", "2", "--data-parallel", "2", "--epochs", "1", "--max-steps", "3",
         "--progress", "false", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test_acc=" in proc.stdout
    assert sorted(p.name.split(".")[1] for p in (out / "checkpoints").glob("ckpt-*.pt")) == [
        "rank0",
        "rank1",
    ]
    assert sorted(p.name for p in out.glob("final.rank*.pt")) == [
        "final.rank0.pt",
        "final.rank1.pt",
    ]
    assert (out / "metrics.rank3.jsonl").exists()  # every rank logs its own stage


def test_launcher_names_stage_and_replica_of_the_failed_rank():
    import io

    from scpl.launch import TorchrunReport

    report = TorchrunReport(io.StringIO(), replicas_of=2)
    report.feed(
        "E1202 03:19:56.837000 1 torch/distributed/elastic/x.py:1] failed (exitcode: -9) "
        "local_rank: 3 (pid: 1) of binary: p\n"
    )
    assert report.summary().startswith(
        "scpl: error: rank 3 (stage 1 of replica 1) failed first (killed by SIGKILL)"
    )

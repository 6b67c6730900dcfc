"""Projection heads side by side: training parameters and one-device step cost vs BP.

    .venv/bin/python scripts/head_costs.py [--cpu-width 0.25] [--rounds 2]

Parameters: VGG, K=4 (paper split), CIFAR shape (3x32x32) at width 1 and the Fashion-MNIST
accuracy runs' shape (1x28x28, width 0.125). Step cost: the FLOP cost model (one device, batch
128, width 1: SCPL step / BP step on the model device) and CPU time measured here (width
--cpu-width, batch 128, methods taking turns, thread CPU time, median of --rounds).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scpl.methods import MethodConfig, build_method, count_parameters
from scpl.models import build_model
from scpl.perf.costmodel import one_device_costs, profile_model, stage_op_costs, stage_times
from scpl.perf.measure import Workload, model_pipeline, workload_batch

HEADS = ("mlp", "mlp-pool")


def params(shape, width, head):
    torch.manual_seed(0)
    m = build_model("vgg", shape, 10, 4, width)
    c = count_parameters(build_method("scpl", MethodConfig(head=head)).attach(m))
    return c["training"], c["affiliated"]


def cpu_ratio(width, head, rounds):
    w = Workload("vgg", width, (3, 32, 32), 128, head=head)
    x, y = workload_batch(w)
    pipes = {m: model_pipeline(w, m, 4, record=False) for m in ("bp", "scpl")}
    t = {m: [] for m in pipes}
    try:
        for r in range(1 + rounds):
            for m, p in pipes.items():
                c0 = time.thread_time()
                p.step(x, y)
                p.metrics()
                if r:
                    t[m].append(time.thread_time() - c0)
    finally:
        for p in pipes.values():
            p.close()
    return statistics.median(t["scpl"]) / statistics.median(t["bp"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-width", type=float, default=0.25)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    bp_params = sum(p.numel() for p in build_model("vgg", (3, 32, 32), 10, 4, 1.0).parameters())
    print(f"BP training params, VGG width 1 (3x32x32): {bp_params / 1e6:.2f}M")
    print(
        "| head | train params w=1 3x32x32 (heads) | train params w=0.125 1x28x28 (heads) | "
        "FLOP model step SCPL/BP (w=1, batch 128) | CPU step SCPL/BP "
        f"(w={a.cpu_width}, batch 128) |"
    )
    print("|---|---|---|---|---|")
    for head in HEADS:
        p1, h1 = params((3, 32, 32), 1.0, head)
        p2, h2 = params((1, 28, 28), 0.125, head)
        prof = profile_model("vgg", "scpl", (3, 32, 32), 10, 1.0, 128, head, 1024, 4)
        bp = sum(stage_times(one_device_costs(prof)))
        # One device, paper split: SCPL's four stages in turn vs BP over the same units.
        scpl = sum(stage_times(stage_op_costs(prof, [2, 2, 1, 1], True, transfers=False)))
        r = cpu_ratio(a.cpu_width, head, a.rounds)
        print(
            f"| {head} | {p1 / 1e6:.2f}M ({h1 / 1e6:.2f}M) | {p2 / 1e6:.3f}M ({h2 / 1e6:.3f}M) "
            f"| {scpl / bp:.3f} | {r:.3f} |"
        )


if __name__ == "__main__":
    main()

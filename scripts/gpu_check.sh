#!/usr/bin/env bash
# GPU check (~5 minutes on one GPU). Run from the repository root on a CUDA host:
#
#   bash scripts/gpu_check.sh [OUT_DIR]
#
#  1. the CUDA tests: tests/test_gpu.py (local executor on cuda:0 bitwise equal to the
#     sequential one, 4 stage streams on cuda:0 under torch.cuda.set_sync_debug_mode("error"),
#     bf16) and the CUDA cases of tests/test_host_sync.py (steady state under sync-debug mode);
#  2. bf16 training of the default recipe for 200 steps (its dataset when present, else a
#     synthetic stand-in of the same shape: the host may be offline);
#  3. one throughput line per schedule (local executor, 4 stages on cuda:0, bf16, samples/s of
#     steady-state steps).
# Everything is also written to OUT_DIR (default runs/gpu-check) for docs/LOG.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT=${1:-runs/gpu-check}
mkdir -p "$OUT"
status=0

echo "== device"
"$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" \
    || { echo "no CUDA device: nothing to check"; exit 2; }

echo "== 1. CUDA tests (sync-debug mode included)"
timeout 150 "$PY" -m pytest -q -rs tests/test_gpu.py tests/test_host_sync.py -k "cuda or gpu" \
    2>&1 | tee "$OUT/tests.txt" | tail -15
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 2. default recipe, bf16, 200 steps"
DATASET_ARGS=()
if ! "$PY" - <<'EOF' 2>/dev/null; then
from scpl.data import load_dataset
load_dataset("fashion-mnist", None, False, 0.1, 0)
EOF
    echo "(fashion-mnist not available offline: synthetic stand-in of its shape)"
    DATASET_ARGS=(--dataset synthetic:1x28x28:10:30000:1000)
fi
timeout 150 "$PY" -m scpl.cli train default --precision bf16 --epochs 1 --max-steps 200 \
    --log-every 50 --progress false --tensorboard false --device cuda:0 \
    "${DATASET_ARGS[@]}" --out "$OUT/bf16-default" --overwrite true \
    2>&1 | tee "$OUT/bf16-default.txt" | tail -8
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 3. throughput per schedule (local executor, 4 stages on cuda:0, bf16)"
timeout 120 "$PY" - <<'EOF' 2>&1 | tee "$OUT/throughput.txt"
import time

import torch

import scpl
from scpl.models import build_model
from scpl.parallel import OptimConfig
from scpl.parallel.schedules import SCHEDULES

torch.backends.cudnn.benchmark = True
dev = torch.device("cuda", 0)
batch, steps, warm = 128, 30, 5
x = torch.randn(batch, 1, 28, 28, device=dev)
y = torch.randint(0, 10, (batch,), device=dev)
for name in SCHEDULES.names():
    sched = SCHEDULES.get(name)
    for local in (True, False):
        if not sched.accepts(local):
            continue
        method = "scpl" if local else "bp"
        m = 2 if sched.micro_batches and name != "sequential" else 1
        torch.manual_seed(0)
        model = build_model("vgg", (1, 28, 28), 10, 4, 1.0)
        with scpl.pipeline(model, method, devices="cuda:0", schedule=name, micro_batches=m,
                           executor="local", optimizer=OptimConfig(), precision="bf16",
                           nan_guard="interval") as pipe:
            for _ in range(warm):
                pipe.step(x, y)
            pipe.flush()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                pipe.step(x, y)
            pipe.flush()
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            pipe.metrics()
        print(f"throughput schedule={name:<12} method={method:<5} m={m} "
              f"{steps * batch / dt:10.1f} samples/s  ({dt / steps * 1e3:.1f} ms/step)")
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== gpu_check: $([ $status -eq 0 ] && echo PASS || echo FAIL) (outputs in $OUT)"
exit $status

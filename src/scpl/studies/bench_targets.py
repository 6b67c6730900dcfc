"""The pipeline benchmark's targets (:mod:`scpl.studies.bench`), evaluated on its measured rows:
pipeline speed-ups over sequential, nmp and gpipe, latency and throughput of scpl-gpipe vs scpl,
data-parallel scaling, simulator error and the real-compute shares. Reported in the bench's
table, never asserted. (``scpl bench --targets``, the speed on the paper's networks, is
:mod:`scpl.studies.targets`.)"""

from __future__ import annotations


def check_targets(rows: list[dict], real: dict) -> list[dict]:
    """The issue's targets, evaluated on the measured rows (reported, never asserted)."""

    def get(suite, schedule, K, executor="local", key="samples_per_s"):
        for r in rows:
            if (r["suite"], r["schedule"], r["K"], r["executor"]) == (suite, schedule, K, executor):
                return r[key]
        return None

    out = []

    def add(name, value, ok, detail=""):
        out.append({"target": name, "value": value, "met": ok, "detail": detail})

    for K in sorted({r["K"] for r in rows if r["suite"] == "equal"}):
        x = get("equal", "scpl", K, key="x_seq")
        if x is not None and K > 1:
            add(f"equal K={K}: scpl >= 0.9*K x sequential", x, x >= 0.9 * K, f"need {0.9 * K:.2f}")
    s, n, g = get("equal", "scpl", 4), get("equal", "nmp", 4), get("equal", "gpipe", 4)
    if s and n:
        add("equal K=4: scpl >= 3.3x nmp", s / n, s / n >= 3.3)
    if s and g:
        add("equal K=4: scpl >= 1.5x gpipe(m=K)", s / g, s / g >= 1.5)
    for suite in ("vgg", "vgg-flops"):
        vk = max((r["K"] for r in rows if r["suite"] == suite), default=None)
        if not vk or vk < 2:
            continue
        ls = get(suite, "scpl", vk, key="iter_latency_ms")
        lg = get(suite, "scpl-gpipe", vk, key="iter_latency_ms")
        if ls and lg:
            add(
                f"{suite} K={vk}: one iteration of scpl-gpipe finishes sooner than scpl",
                lg / ls,
                lg < ls,
                f"{lg:.0f} vs {ls:.0f} ms (ratio gpipe/scpl)",
            )
        ts, tg = get(suite, "scpl", vk), get(suite, "scpl-gpipe", vk)
        if ts and tg:
            d = tg / ts - 1
            nom = get(suite, "scpl-gpipe", vk, key="nominal_samples_per_s") / get(
                suite, "scpl", vk, key="nominal_samples_per_s"
            )
            add(
                f"{suite} K={vk}: scpl-gpipe steady throughput within 5% of scpl",
                d,
                abs(d) <= 0.05,
                f"relative difference; with the nominal costs (no proxy overhead) {nom - 1:+.3f}",
            )
    dp = {r["R"]: r for r in rows if r["suite"].startswith("dp-R")}
    if 1 in dp and 2 in dp:
        x = dp[2]["samples_per_s"] / dp[1]["samples_per_s"]
        nom = dp[2]["nominal_samples_per_s"] / dp[1]["nominal_samples_per_s"]
        k = dp[1]["K"]
        add(
            f"dp: K={k} x R=2 >= 1.9x K={k} x R=1 (samples/s)",
            x,
            x >= 1.9,
            f"predicted {nom:.3f} (ring all-reduce {dp[2]['allreduce_ms']:.2f} ms per update)",
        )
        for r in dp.values():
            err = r["samples_per_s"] / r["nominal_samples_per_s"] - 1
            add(
                f"dp: K={k} x R={r['R']} within 10% of the prediction",
                err,
                abs(err) <= 0.10,
                "relative difference, measured vs simulated with the cost model",
            )
    errs = [abs(r["sim_err_pct"]) for r in rows if "sim_err_pct" in r]
    if errs:
        add(
            "simulator within 10% of emulated runs (max |throughput err| %)",
            max(errs),
            max(errs) <= 10,
        )
    if "aug_share" in real:
        add("augmentation share of a step <= 10%", real["aug_share"], real["aug_share"] <= 0.10)
    if "dist_vs_local" in real:
        add("dist vs local CPU time <= 1.15x", real["dist_vs_local"], real["dist_vs_local"] <= 1.15)
    return out

"""`scpl bench --targets`: targets.md, targets.json and targets-detail.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from scpl.perf.costmodel import DEVICE
from scpl.studies.targets_setup import NEEDS


def targets_markdown(
    targets: list[dict], rows: list[dict], detail: dict, breakdowns: Sequence[str]
) -> str:
    """targets.md: the targets, the emulated rows, the per-stage breakdowns."""
    lines = ["# scpl bench --targets", ""]
    lines.append(
        f"{detail['seconds']:.0f} s on this machine; model device for the FLOP rows: "
        f"{DEVICE.name} ({DEVICE.flops_per_s / 1e12:.1f} TFLOP/s, "
        f"{DEVICE.mem_bytes_per_s / 1e9:.0f} GB/s memory, {DEVICE.link_bytes_per_s / 1e9:.0f} "
        "GB/s link); emulated on a proxy, SCPL's slowest stage scaled to "
        f"{detail['options']['stage_ms']:.0f} ms."
    )
    lines += [
        "",
        "`value`: emulated devices (measured); `nominal`: the simulator on the same op times "
        "(ideal devices: no proxy work, no load from other processes).",
        "",
        "| target | value | nominal | need | met |",
        "|---|---|---|---|---|",
    ]
    nom = detail.get("nominal", {})
    for t in targets:
        v = "not run" if t["value"] is None else f"{t['value']:.3f}"
        n = nom.get(t["name"])
        op = NEEDS[t["name"]][0]
        lines.append(
            f"| {t['name']} | {v} | {'' if n is None else f'{n:.3f}'} | {op} {t['need']} | "
            f"{'yes' if t['met'] else 'no'} |"
        )
    lines += ["", "## Rows (emulated devices; checked against the sequential executor)", ""]
    lines.append(
        "| row | partition | head | K | m | samples/s | nominal | stage ms | "
        "peak act. MiB per stage | verified |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        act = r.get("peak_act_bytes")
        act_s = ",".join(f"{b / 2**20:.1f}" for b in act) if act else ""
        v = r.get("verified")
        lines.append(
            f"| {r['row']} | {','.join(map(str, r.get('partition', [])))} | {r.get('head', '')} "
            f"| {r['K']} | {r['m']} | {r['samples_per_s']:.1f} | "
            f"{r['nominal_samples_per_s']:.1f} | {','.join(f'{t:.2f}' for t in r['stage_ms'])} | "
            f"{act_s} | {'-' if v is None else ('yes' if v else 'NO')} |"
        )
    lines += ["", "## Per-stage breakdown (cost model)", "", *breakdowns]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, targets, rows, detail, breakdowns) -> None:
    """targets.json, targets-detail.json and targets.md under ``out``."""
    from scpl.atomic import atomic_write

    texts = {
        "targets.json": json.dumps(targets, indent=2) + "\n",
        "targets-detail.json": json.dumps(detail, indent=1, default=str) + "\n",
        "targets.md": targets_markdown(targets, rows, detail, breakdowns),
    }
    for name, text in texts.items():
        with atomic_write(out / name, "w", durable=False) as f:
            f.write(text)

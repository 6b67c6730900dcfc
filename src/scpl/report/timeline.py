"""Timelines of a pipelined run: Gantt charts (PNG) and Chrome/Perfetto traces (JSON).

Both take the :class:`~scpl.parallel.runner.Event` list that a recorded run (``record=True``)
or the simulator (:mod:`scpl.perf.simulate`) produces. The Gantt chart draws one row per
stage (its device in the label), bars coloured by op kind, with the mini-batch number on the
compute bars, as in Figure 4 of the SCPL paper; time a transfer spent waiting for its peer is
drawn as ``wait``. The trace opens in chrome://tracing or https://ui.perfetto.dev: one process
per device, one thread per stage, one complete ("X") event per op.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from scpl.parallel.runner import Event

COLORS = {
    "F": "#4C72B0",
    "L": "#DD8452",
    "B": "#55A868",
    "U": "#C44E52",
    "send_act": "#8172B3",
    "recv_act": "#B39DDB",
    "send_grad": "#937860",
    "recv_grad": "#C8AD9A",
    "wait": "#E6E6E6",
}
LABELS = {
    "F": "F forward",
    "L": "L local loss",
    "B": "B backward",
    "U": "U update",
    "send_act": "send act",
    "recv_act": "recv act",
    "send_grad": "send grad",
    "recv_grad": "recv grad",
    "wait": "wait",
}
COMM = ("recv_act", "send_act", "recv_grad", "send_grad")


def split_waits(
    events: Sequence[Event], costs: dict[int, dict[str, float]] | None = None
) -> list[Event]:
    """Split each transfer into the time it waited for its peer and the transfer itself.

    A recorded (or simulated) ``recv_*`` spans the wait for the message; ``send_*`` spans the wait
    for queue space. The transfer's own cost is ``costs[stage][kind]`` when given (pass the
    emulated or simulated costs), else the shortest span of that kind on any stage of the run;
    the rest, at the start, becomes ``wait``.
    """
    if costs is None:
        shortest: dict[str, float] = {}
        for e in events:
            if e.kind in COMM:
                shortest[e.kind] = min(shortest.get(e.kind, e.end - e.start), e.end - e.start)
        own = {(e.stage, e.kind): shortest[e.kind] for e in events if e.kind in COMM}
    else:
        own = {(s, k): v for s, d in costs.items() for k, v in d.items()}
    out: list[Event] = []
    for e in events:
        if e.kind not in COMM:
            out.append(e)
            continue
        d = min(e.end - e.start, own.get((e.stage, e.kind), 0.0))
        t = e.end - d
        if t - e.start > 1e-9:
            out.append(Event(e.stage, "wait", e.batch, e.mb, e.start, t, e.device))
        out.append(Event(e.stage, e.kind, e.batch, e.mb, t, e.end, e.device))
    return out


def _stage_devices(events: Sequence[Event]) -> dict[int, str]:
    dev: dict[int, str] = {}
    for e in events:
        dev.setdefault(e.stage, e.device)
    return dev


def plot_gantt(
    ax,
    events: Sequence[Event],
    title: str = "",
    costs: dict[int, dict[str, float]] | None = None,
    t_max: float | None = None,
    label_min_frac: float = 0.012,
    legend: bool = True,
):
    """Draw a Gantt chart of ``events`` on a matplotlib axis (time in ms from the first op)."""
    ev = [e for e in events if e.batch >= 0]
    if not ev:
        raise ValueError("no training events to draw")
    ev = split_waits(ev, costs)
    t0 = min(e.start for e in ev)
    span = max(e.end for e in ev) - t0
    t_max = t_max if t_max is not None else span
    devices = _stage_devices(ev)
    stages = sorted(devices)
    micro = any(e.mb > 0 for e in ev)
    seen: set[str] = set()
    for e in sorted(ev, key=lambda e: e.kind != "wait"):  # waits first, underneath
        x, w = (e.start - t0) * 1e3, (e.end - e.start) * 1e3
        if w <= 0:
            continue
        y = e.stage
        ax.barh(
            y,
            w,
            left=x,
            height=0.8 if e.kind != "wait" else 0.5,
            color=COLORS.get(e.kind, "#999999"),
            edgecolor="white" if e.kind != "wait" else "none",
            linewidth=0.4,
            label=LABELS.get(e.kind, e.kind) if e.kind not in seen else None,
        )
        seen.add(e.kind)
        if e.kind in ("F", "B") and w >= label_min_frac * t_max * 1e3:
            text = f"{e.batch}.{e.mb}" if micro else str(e.batch)
            ax.text(x + w / 2, y, text, ha="center", va="center", fontsize=6, color="white")
    ax.set_yticks(stages)
    ax.set_yticklabels([f"stage {s}\n{devices[s]}" if devices[s] else f"stage {s}" for s in stages])
    ax.set_ylim(max(stages) + 0.6, min(stages) - 0.6)  # stage 0 on top
    ax.set_xlim(0, t_max * 1e3 * 1.01)
    ax.set_xlabel("time (ms)")
    if title:
        ax.set_title(title, fontsize=10)
    if legend:
        order = [LABELS[k] for k in COLORS if k in seen]
        handles, labels = ax.get_legend_handles_labels()
        pairs = sorted(zip(labels, handles, strict=True), key=lambda p: order.index(p[0]))
        ax.legend(
            [h for _, h in pairs],
            [lab for lab, _ in pairs],
            loc="upper left",
            bbox_to_anchor=(1.005, 1.0),
            fontsize=7,
            frameon=False,
        )
    return ax


def write_gantt(
    panels: Sequence[tuple[str, Sequence[Event]]] | Sequence[Event],
    path: str | Path,
    title: str = "",
    costs: dict[int, dict[str, float]] | None = None,
    share_time: bool = True,
) -> Path:
    """Write a Gantt PNG: one panel per (title, events) or (title, events, costs) tuple (a bare
    event list is one panel; ``costs``, per panel or for all, are the transfer costs that
    :func:`split_waits` uses). With ``share_time`` all panels use the same time axis, so they
    compare at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if panels and isinstance(panels[0], Event):
        panels = [(title, panels)]
        title = ""
    panels = [p if len(p) == 3 else (p[0], p[1], costs) for p in panels]
    spans = []
    for _, ev, _ in panels:
        tr = [e for e in ev if e.batch >= 0]
        spans.append(max(e.end for e in tr) - min(e.start for e in tr))
    rows = [len({e.stage for e in ev}) for _, ev, _ in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(12, 1.0 + sum(0.45 * r + 0.7 for r in rows)),
        gridspec_kw={"height_ratios": [r + 1.5 for r in rows]},
        squeeze=False,
    )
    for i, (ax, (name, ev, c)) in enumerate(zip(axes[:, 0], panels, strict=True)):
        plot_gantt(ax, ev, name, c, t_max=max(spans) if share_time else None, legend=i == 0)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def write_suite_gantts(rows: list[dict], out: Path) -> list[Path]:
    """Gantt charts of the K=4 (or largest K) runs of each suite of bench rows (``suite``,
    ``K``, ``schedule``, ``method``, ``m``, ``executor``, ``_events``, ``_emulate``), one panel
    per schedule; dist rows are left out (their clocks are per process)."""
    paths = []
    for suite in sorted({r["suite"] for r in rows}):
        ks = sorted({r["K"] for r in rows if r["suite"] == suite})
        K = 4 if 4 in ks else ks[-1]
        panels = [
            (
                f"{r['schedule']} ({r['method']}, m={r['m']}, {r['executor']})",
                r["_events"],
                r.get("_emulate") or {},
            )
            for r in rows
            if r["suite"] == suite and r["K"] == K and r["executor"] != "dist"
        ]
        if panels:
            paths.append(
                write_gantt(panels, Path(out) / f"gantt-{suite}-K{K}.png", f"{suite} stages, K={K}")
            )
    return paths


def trace_events(events: Sequence[Event], pid_offset: int = 0, name: str = "") -> list[dict]:
    """Chrome trace events: pid = device (one per distinct device name), tid = stage."""
    ev = [e for e in events if e.batch >= 0] or list(events)
    t0 = min(e.start for e in ev) if ev else 0.0
    devices = sorted({e.device for e in ev})
    pid = {d: pid_offset + i for i, d in enumerate(devices)}
    out: list[dict] = []
    for d, p in pid.items():
        label = f"{name} {d}".strip() if d else (name or "device")
        out.append({"ph": "M", "name": "process_name", "pid": p, "args": {"name": label}})
    for s in sorted({e.stage for e in ev}):
        for d in sorted({e.device for e in ev if e.stage == s}):
            meta = {"ph": "M", "name": "thread_name", "pid": pid[d], "tid": s}
            out.append(dict(meta, args={"name": f"stage {s}"}))
    for e in ev:
        op = e.kind if e.mb < 0 else f"{e.kind}{e.mb}"
        out.append(
            {
                "name": f"{op} b{e.batch}",
                "cat": e.kind,
                "ph": "X",
                "ts": round((e.start - t0) * 1e6, 3),
                "dur": round((e.end - e.start) * 1e6, 3),
                "pid": pid[e.device],
                "tid": e.stage,
                "args": {"batch": e.batch, "mb": e.mb, "op": e.kind, "device": e.device},
            }
        )
    return out


def write_trace(
    panels: Sequence[tuple[str, Sequence[Event]]] | Sequence[Event],
    path: str | Path,
    metadata: dict | None = None,
) -> Path:
    """Write a Chrome/Perfetto trace JSON (``{"traceEvents": [...]}``); several named runs go
    into separate process groups of the same file."""
    if panels and isinstance(panels[0], Event):
        panels = [("", panels)]
    out: list[dict] = []
    offset = 0
    for name, ev, *_ in panels:
        te = trace_events(ev, offset, name)
        out += te
        offset = 1 + max((t["pid"] for t in te), default=offset - 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"traceEvents": out, "displayTimeUnit": "ms", "otherData": metadata or {}}
    path.write_text(json.dumps(doc))
    return path

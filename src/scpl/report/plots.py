"""Figures of study results (matplotlib, written as PNG without a display)."""

from __future__ import annotations

from pathlib import Path

COLORS = {
    "sequential": "#4C72B0",
    "nmp": "#DD8452",
    "gpipe": "#C44E52",
    "scpl": "#55A868",
    "scpl-gpipe": "#8172B3",
}
# Lines that coincide (sequential = BP one device; scpl-gpipe = scpl when one stage is the
# bottleneck) stay visible: wide translucent lines under narrow ones, distinct markers.
STYLE = {
    "sequential": ("o", 4.0),
    "nmp": ("s", 2.0),
    "gpipe": ("^", 2.0),
    "scpl": ("D", 4.0),
    "scpl-gpipe": ("v", 1.5),
}


def _label(method: str) -> str:
    return method.upper() if method in ("bp", "scpl") else method


def epoch_time_plot(
    rows: list[dict],
    path: Path,
    *,
    stages: int,
    method: str,
    one_device: str,
    title: str,
    xlabel: str,
) -> Path:
    """Seconds per epoch against batch size (log2 axis): one solid line per schedule (projected
    on ``stages`` devices; ``sequential`` is BP on one device) and one dashed line per method
    on one device (``one_device`` says how its costs were taken). Rows are epoch-time rows
    (``schedule``, ``method``, ``batch_size``, ``micro_batches``, ``projected_K_s``,
    ``measured_one_device_s``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {
        "sequential": "BP, 1 device (sequential)",
        "nmp": f"BP split on {stages} devices (nmp)",
        "gpipe": "GPipe",
        "scpl": _label(method),
        "scpl-gpipe": f"{_label(method)}+GPipe",
    }
    fig, ax = plt.subplots(figsize=(10, 5))
    for s in dict.fromkeys(r["schedule"] for r in rows):
        rs = [r for r in rows if r["schedule"] == s]
        label = names.get(s, s)
        if s in ("gpipe", "scpl-gpipe"):
            label += f" (m={rs[0]['micro_batches']})"
        marker, lw = STYLE.get(s, ("o", 2.0))
        ax.plot(
            [r["batch_size"] for r in rs],
            [r["projected_K_s"] for r in rs],
            "-" + marker,
            color=COLORS.get(s),
            label=label if s == "sequential" else f"{label}, K={stages} projected",
            lw=lw,
            alpha=0.55 if lw > 3 else 1.0,
            ms=6,
        )
    for meth in dict.fromkeys(r["method"] for r in rows):
        seen: dict[int, float] = {}
        for r in rows:
            if r["method"] == meth:
                seen.setdefault(r["batch_size"], r["measured_one_device_s"])
        ax.plot(
            list(seen),
            list(seen.values()),
            "--",
            color="#333333" if meth == "bp" else COLORS["scpl"],
            lw=1.3,
            alpha=0.8,
            label=f"{_label(meth)}, 1 device ({one_device})",
        )
    ax.set_xscale("log", base=2)
    sizes = sorted({r["batch_size"] for r in rows})
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("seconds per epoch")
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)

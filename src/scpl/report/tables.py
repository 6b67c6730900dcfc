"""Tables of result rows (lists of dicts): Markdown for the terminal and reports, CSV and JSON
for files. Keys starting with ``_`` carry data for figures (timelines, costs) and never appear
in a table; a ``samples`` list (raw timings) is left out of Markdown tables."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path


def fmt(v) -> str:
    """One table cell: 3 significant digits (no decimals from 1000 on), yes/no, '-' for
    None/NaN, lists comma-separated."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 100 else f"{v:.3g}"
    if isinstance(v, list | tuple):
        return ",".join(map(str, v))
    return "-" if v is None else str(v)


def format_table(rows: list[dict], title: str = "") -> str:
    """Rows as a Markdown table; columns in order of first appearance."""
    if not rows:
        return f"# {title}\n(no rows)\n"
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and k != "samples" and not k.startswith("_")]
    lines = [f"# {title}"] if title else []
    lines.append("| " + " | ".join(keys) + " |")
    lines.append("|" + "|".join("---" for _ in keys) + "|")
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict], title: str) -> None:
    """Print rows as a Markdown table (floats with 3 significant digits; 'samples' left out)."""
    print(format_table(rows, title))


def grid_table(
    title: str,
    label: str,
    row_keys: Iterable,
    cols: Sequence[str],
    value: Callable[[object, str], str],
) -> list[str]:
    """A right-aligned Markdown grid: one line per row key, ``value(row_key, col)`` per cell."""
    lines = [title, "", f"| {label} | " + " | ".join(cols) + " |"]
    lines.append("|---:|" + "---:|" * len(cols))
    for k in row_keys:
        lines.append(f"| {k} | " + " | ".join(value(k, c) for c in cols) + " |")
    return lines + [""]


def public(rows: list[dict], keys: Sequence[str] | None = None) -> list[dict]:
    """Rows without their ``_`` keys (or only ``keys``, in that order)."""
    if keys is None:
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return [{k: r.get(k) for k in keys if k in r} for r in rows]


def write_csv(rows: list[dict], path: Path, columns: Sequence[str] | None = None) -> None:
    """Rows as CSV: ``columns`` (others ignored) or every public key in order of appearance.
    Lists are written comma-joined; with ``columns``, floats with 6 significant digits."""
    rows = public(rows)
    keys: list[str] = list(columns or [])
    if columns is None:
        for r in rows:
            keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            if columns is None:
                w.writerow({k: fmt(v) if isinstance(v, list | tuple) else v for k, v in r.items()})
            else:
                w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()})


def jsonable(obj):
    """``obj`` for json.dumps: ``_`` keys dropped, tuples as lists, NaN as null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj

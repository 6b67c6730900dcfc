"""`scpl report`: one table of finished training runs, read from their summary.json files.

Each row is a run: test accuracy, the epoch chosen on validation, throughput, training wall
time, and every config field whose value is not the same in all the runs (so the table shows
what the runs were compared on). Markdown for reading, CSV for spreadsheets and scripts.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from scpl.errors import ConfigError, DataError

# (column, summary key, format) of the result columns every row has.
RESULT_COLUMNS = (
    ("test_acc", "test_acc", "{:.4f}"),
    ("best_epoch", "best_epoch", "{}"),
    ("best_val_acc", "best_val_acc", "{:.4f}"),
    ("samples_per_s", "samples_per_s", "{:.1f}"),
    ("train_s", "train_seconds", "{:.1f}"),
)
# Config fields that name the run's own directory: already the "run" column.
SKIPPED_FIELDS = ("out", "resume")


def find_summaries(paths: list[str | os.PathLike]) -> list[Path]:
    """summary.json of each path: a run dir, a summary file, or a dir of runs (searched)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif (p / "summary.json").is_file():
            found.append(p / "summary.json")
        elif p.is_dir() and (nested := sorted(p.rglob("summary.json"))):
            found += nested
        else:
            raise ConfigError(
                f"no summary.json in {p}; pass the output dir of a finished `scpl train` run"
            )
    return found


def load_summary(path: Path) -> dict:
    """A run's summary, with a one-line DataError if the file is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable run summary ({e}); remove it or rerun") from None
    if not isinstance(data, dict) or "test_acc" not in data:
        raise DataError(f"{path}: no test_acc; not a `scpl train` summary.json")
    return data


def run_table(paths: list[str | os.PathLike]) -> tuple[list[str], list[dict]]:
    """(columns, rows) for the runs under ``paths``; values are raw (numbers stay numbers)."""
    files = find_summaries(paths)
    summaries = [load_summary(f) for f in files]
    configs = [{"recipe": s.get("recipe"), **s.get("config", {})} for s in summaries]
    keys: list[str] = []
    for c in configs:
        keys += [k for k in c if k not in keys and k not in SKIPPED_FIELDS]
    missing = object()
    differ = [
        k for k in keys if len({json.dumps(c.get(k, missing), default=str) for c in configs}) > 1
    ]
    rows = []
    for f, s, c in zip(files, summaries, configs, strict=True):
        row = {"run": str(f.parent)}
        row.update({col: s.get(key) for col, key, _ in RESULT_COLUMNS})
        row.update({k: c.get(k) for k in differ})
        rows.append(row)
    return ["run", *(col for col, _, _ in RESULT_COLUMNS), *differ], rows


def _cell(value, fmt: str = "{}") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def to_markdown(columns: list[str], rows: list[dict]) -> str:
    """A Markdown table (results formatted, '|' in values escaped)."""
    fmts = {col: fmt for col, _, fmt in RESULT_COLUMNS}
    numeric = set(fmts)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|",
    ]
    for r in rows:
        cells = [_cell(r.get(c), fmts.get(c, "{}")).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(columns: list[str], rows: list[dict]) -> str:
    """CSV with a header row; values unformatted (None as empty)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, lineterminator="\n")
    w.writeheader()
    w.writerows({c: "" if r.get(c) is None else r.get(c) for c in columns} for r in rows)
    return buf.getvalue()


def report_runs(paths: list[str | os.PathLike], fmt: str = "markdown") -> str:
    """The table of the runs under ``paths`` as ``markdown`` or ``csv`` text."""
    if fmt not in ("markdown", "csv"):
        raise ConfigError(f"--format {fmt!r}: choose markdown or csv")
    columns, rows = run_table(paths)
    return to_markdown(columns, rows) if fmt == "markdown" else to_csv(columns, rows)

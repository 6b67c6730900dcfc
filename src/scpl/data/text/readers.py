"""Readers of labelled text files: each yields (text, label, where) with ``where`` =
"file:line", so every malformed row raises a one-line DataError naming the file and line."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from scpl.data.text.tokens import Row
from scpl.errors import DataError


def check_nonempty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); check the path and permissions") from None
    if size == 0:
        raise DataError(f"{path} is empty; replace it with the real file")


def open_text(path: Path):
    check_nonempty(path)
    try:
        return open(path, encoding="utf-8-sig", errors="replace", newline="")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); check the file's permissions") from None


def csv_rows(path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank CSV row; csv errors name the file and line."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # IMDB reviews exceed the 128 KiB default
    with open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise DataError(
                    f"{path}:{reader.line_num}: malformed CSV ({e}); fix or replace the file"
                ) from None
            if row and any(field.strip() for field in row):
                yield reader.line_num, row


def int_label(raw: str, lo: int, hi: int, where: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise DataError(
            f"{where}: label {raw[:30]!r} is not an integer in [{lo}, {hi}]; fix or replace the file"
        ) from None
    if not lo <= value <= hi:
        raise DataError(
            f"{where}: label {value} outside the class range [{lo}, {hi}]; fix or replace the file"
        )
    return value


def zhang_csv(path: Path, num_classes: int) -> list[Row]:
    """AG News / DBpedia CSV (Zhang et al. 2015): ``"class","title","body"``, class 1..C."""
    rows = []
    for line, row in csv_rows(path):
        where = f"{path}:{line}"
        if len(row) != 3:
            raise DataError(
                f"{where}: expected 3 fields (class index, title, text), got {len(row)}; "
                f"fix or replace the file"
            )
        label = int_label(row[0], 1, num_classes, where) - 1
        rows.append((f"{row[1]} {row[2]}", label, where))
    if not rows:
        raise DataError(f"{path} has no rows; replace it with the real file")
    return rows


def tsv_with_header(path: Path, text_col: str, label_col: str) -> Iterator[tuple[str, str, str]]:
    """Plain TSV (no quoting, as GLUE ships SST-2) with a header naming the columns."""
    with open_text(path) as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if text_col not in header or label_col not in header:
            raise DataError(
                f"{path}:1: header {header[:6]} lacks the columns {text_col!r} and {label_col!r}; "
                f"expected a GLUE-style TSV with a '{text_col}<TAB>{label_col}' header"
            )
        ti, li = header.index(text_col), header.index(label_col)
        for line, raw in enumerate(f, 2):
            raw = raw.rstrip("\r\n")
            if not raw.strip():
                continue
            fields = raw.split("\t")
            if len(fields) != len(header):
                raise DataError(
                    f"{path}:{line}: expected {len(header)} tab-separated fields, got "
                    f"{len(fields)}; fix or replace the file"
                )
            yield fields[ti], fields[li], f"{path}:{line}"


def csv_with_header(path: Path, columns: tuple[str, ...], hint: str) -> Iterator[tuple]:
    """Yield (*fields for ``columns``, where) from a CSV whose first row names the columns."""
    rows = csv_rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(f"{path} has no rows; replace it with the real file") from None
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}:1: no column {missing[0]!r} in the header {header[:8]}; {hint}")
    index = [header.index(c) for c in columns]
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(
                f"{path}:{line}: expected {len(header)} fields like the header, got {len(row)}; "
                f"fix or replace the file"
            )
        yield (*(row[i] for i in index), f"{path}:{line}")

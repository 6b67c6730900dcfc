"""``text-csv``: the user's own ``train.csv`` / ``test.csv`` with a header row; the document
and label columns are named by ``--text-column`` / ``--label-column`` (default text / label).
"""

from __future__ import annotations

from pathlib import Path

from scpl.data.base import DatasetSpec, LoadOptions, RawData, register_dataset
from scpl.data.text.cache import tokenised
from scpl.data.text.readers import csv_with_header
from scpl.errors import DataError

TEXT_CSV_MAX_LEN = 128


def _text_csv_present(root: Path) -> bool:
    return (root / "train.csv").is_file() and (root / "test.csv").is_file()


def _label_order(labels: set[str]) -> list[str]:
    """Sorted class names; integer-like labels sort by value ("2" before "10")."""
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def _text_csv_load(root: Path | None, options: LoadOptions) -> RawData:
    assert root is not None
    text_col, label_col = options.text_column.strip(), options.label_column.strip()
    vocab_size, max_len = options.vocab_size, options.text_len(TEXT_CSV_MAX_LEN)
    files = [root / "train.csv", root / "test.csv"]
    hint = "pass --text-column / --label-column with the column names"

    def raw_rows(path: Path) -> list[tuple[str, str, str]]:
        rows = []
        for text, label, where in csv_with_header(path, (text_col, label_col), hint):
            if not label.strip():
                raise DataError(f"{where}: empty label in column {label_col!r}; fix the file")
            rows.append((text, label.strip(), where))
        if not rows:
            raise DataError(f"{path} has no rows; replace it with the real file")
        return rows

    def read():
        train, test = raw_rows(files[0]), raw_rows(files[1])
        classes = _label_order({label for _, label, _ in train})
        index = {c: i for i, c in enumerate(classes)}
        for _, label, where in test:
            if label not in index:
                raise DataError(
                    f"{where}: label {label[:30]!r} never occurs in {files[0]}; "
                    f"every test class needs training examples"
                )
        return (
            [(t, index[lbl], w) for t, lbl, w in train],
            [(t, index[lbl], w) for t, lbl, w in test],
            classes,
        )

    settings = {
        "vocab_size": vocab_size,
        "max_len": max_len,
        "text_column": text_col,
        "label_column": label_col,
    }
    return tokenised("text-csv", files, settings, read, None)


register_dataset(
    DatasetSpec(
        name="text-csv",
        load=_text_csv_load,
        present=_text_csv_present,
        kind="text",
        input_shape=(TEXT_CSV_MAX_LEN,),
        num_classes=0,  # known only once the labels are read
    ),
    help="your own train.csv/test.csv with a header; columns from --text-column/--label-column",
)

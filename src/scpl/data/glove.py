"""GloVe embeddings for a vocabulary: parse a GloVe-format text file, build the [V, dim] matrix.

The file holds one word per line, ``word v1 ... vD`` separated by single spaces, any D (the
glove.6B/42B/840B files, or word2vec text files, whose ``N D`` header line is skipped). Words
may contain spaces (glove.840B): the last D fields are the vector. ``.gz`` files are read as is.

Rows of the matrix:
* a vocabulary word found in the file gets its vector (exact match first; otherwise the first
  line whose lowercased word matches, for cased files such as glove.840B);
* ``<pad>`` (id 0) is all zeros;
* every other row (``<unk>`` and words the file lacks) is drawn from N(0, s^2), where s is
  the standard deviation of the vectors that were found, from a generator seeded with ``seed``.

The parsed vectors (found rows + which rows were found) are cached atomically under
``<cache>/glove/<file key>-<vocab hash>-<dim>.pt``. The file key hashes the file's path, size,
mtime and its first and last MiB (hashing a 5 GB file in full would cost more than it saves);
the seeded fill of missing rows is redone on every load, so the seed is not part of the key.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from scpl.data.base import cache_dir
from scpl.data.text.cache import atomic_torch_save, load_cached
from scpl.data.text.tokens import PAD_ID
from scpl.errors import ConfigError, DataError

GLOVE_CACHE_VERSION = 1
RANDOM_STD = 1.0  # std of every row under random init (nn.Embedding's default N(0, 1))
LOW_COVERAGE = 0.5  # below this fraction of found words, load_glove_or_random adds a notice


def _file_key(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha1(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), 2)
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def _vocab_key(vocab: Sequence[str]) -> str:
    return hashlib.sha1(json.dumps(list(vocab)).encode()).hexdigest()[:16]


def _open(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    if path.suffix == ".zip":
        raise DataError(f"{path} is a zip archive; extract the glove.*.txt file and pass that")
    return open(path, encoding="utf-8", errors="replace")


def _parse(path: Path, vocab: Sequence[str], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(vectors [V, dim] with zeros where missing, found bool [V]) read from ``path``."""
    index = {w: i for i, w in enumerate(vocab)}
    lower: dict[str, int] = {}  # lowercased vocab word -> id, for cased files
    for w, i in index.items():
        lower.setdefault(w.lower(), i)
    rows: dict[int, list[float]] = {}
    exact = [False] * len(vocab)
    file_dim = None
    try:
        with _open(path) as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n").rstrip(" ")
                if not line:
                    continue
                if file_dim is None:
                    fields = line.split(" ")
                    if len(fields) == 2 and all(s.isdigit() for s in fields):
                        file_dim = int(fields[1])  # word2vec text header "N D"
                        if file_dim != dim:
                            break
                        continue
                    file_dim = len(fields) - 1
                    if file_dim != dim:
                        break
                first = line.split(" ", 1)[0]
                i = index.get(first)
                is_exact = i is not None and not exact[i]
                if not is_exact:
                    i = lower.get(first.lower())
                    if i is None or i in rows:
                        continue  # not needed (or already have it): skip parsing the numbers
                parts = line.rsplit(" ", dim)
                if len(parts) == dim + 1 and parts[0] != first:
                    continue  # a word with spaces whose first token happens to be in the vocab
                try:
                    if len(parts) != dim + 1:
                        raise ValueError
                    rows[i] = [float(v) for v in parts[1:]]
                except ValueError:
                    raise DataError(
                        f"{path}:{lineno}: expected 'word' and {dim} numbers, got "
                        f"{line[:60]!r}; the file is not GloVe text or is corrupt"
                    ) from None
                exact[i] = is_exact
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e}); replace it") from None
    if file_dim is None:
        raise DataError(f"{path} is empty; pass a GloVe .txt file (e.g. glove.6B.300d.txt)")
    if file_dim != dim:
        raise DataError(
            f"{path} holds {file_dim}-d vectors but the model's embedding size is {dim}; "
            f"pass --embed-dim {file_dim} or use a {dim}-d file (e.g. glove.6B.{dim}d.txt)"
        )
    vectors = torch.zeros(len(vocab), dim)
    found = torch.zeros(len(vocab), dtype=torch.bool)
    if rows:
        ids = torch.tensor(sorted(rows))
        vectors[ids] = torch.tensor([rows[i] for i in ids.tolist()])
        found[ids] = True
    return vectors, found


def load_glove(
    path: str | Path, vocab: Sequence[str], dim: int, seed: int = 0
) -> tuple[torch.Tensor, int]:
    """The [len(vocab), dim] float32 embedding matrix for ``vocab`` and how many words were found.

    ``vocab[0]`` must be the padding word (its row is zeros). Raises DataError if the file is
    missing, empty, corrupt or of another dimension.
    """
    path = Path(path).expanduser()
    if dim < 1:
        raise ConfigError(f"embedding size {dim} must be positive, e.g. 300")
    if not path.is_file():
        raise DataError(
            f"GloVe file {path} not found; pass the path of a glove.*.txt file "
            f"(https://nlp.stanford.edu/projects/glove/), or none for random embeddings"
        )
    key = {
        "version": GLOVE_CACHE_VERSION,
        "file": _file_key(path),
        "vocab": _vocab_key(vocab),
        "dim": dim,
    }
    cache = cache_dir() / "glove" / f"{key['file']}-{key['vocab']}-{dim}.pt"
    blob = load_cached(cache, key)
    if blob is None:
        vectors, found = _parse(path, vocab, dim)
        blob = {"key": key, "vectors": vectors, "found": found}
        atomic_torch_save(blob, cache)
    vectors, found = blob["vectors"].clone(), blob["found"]
    bad = (~torch.isfinite(vectors).all(1)).nonzero()
    if len(bad):
        # Checked here, not left to training: a NaN embedding shows up as a NaN loss that the
        # run would blame on --lr.
        raise DataError(
            f"{path}: the vector of {vocab[int(bad[0])]!r} holds a non-finite value (nan, inf or "
            f"a number beyond float32)"
            + (f" (and {len(bad) - 1} more words)" if len(bad) > 1 else "")
            + "; the file is corrupt, replace it"
        )
    n_found = int(found.sum())
    std = float(vectors[found].std()) if n_found * dim > 1 else RANDOM_STD
    if not math.isfinite(std) or std <= 0:
        std = RANDOM_STD
    g = torch.Generator().manual_seed(seed)
    fill = torch.randn(len(vocab), dim, generator=g) * std
    vectors = torch.where(found[:, None], vectors, fill)
    if len(vocab):
        vectors[PAD_ID] = 0.0
    return vectors, n_found


def random_embeddings(vocab_size: int, dim: int, seed: int = 0) -> torch.Tensor:
    """N(0, RANDOM_STD^2) rows from a generator seeded with ``seed``; the <pad> row is zeros."""
    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(vocab_size, dim, generator=g) * RANDOM_STD
    if vocab_size:
        vectors[PAD_ID] = 0.0
    return vectors


def load_glove_or_random(
    path: str | Path | None, vocab: Sequence[str], dim: int, seed: int = 0
) -> tuple[torch.Tensor, str | None]:
    """GloVe rows for ``vocab`` from ``path``, or random rows when ``path`` is None.

    Returns (matrix [len(vocab), dim], notice): the notice, for the caller to print, says when
    random embeddings are used or when under half of the vocabulary was found in the file.
    """
    if path is None or str(path) == "":
        notice = (
            f"no GloVe file given: embeddings start random (N(0, {RANDOM_STD:g}), "
            f"{len(vocab)} x {dim}); pass a glove.*.txt file for the paper's setting"
        )
        return random_embeddings(len(vocab), dim, seed), notice
    vectors, n_found = load_glove(path, vocab, dim, seed)
    notice = None
    words = max(1, len(vocab) - 2)  # <pad> and <unk> are never in the file
    if n_found < LOW_COVERAGE * words:
        notice = (
            f"only {n_found} of {words} vocabulary words have vectors in {path}; "
            f"the others start random (is it an English GloVe file?)"
        )
    return vectors, notice

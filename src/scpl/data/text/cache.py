"""The token cache: tokenised tensors are stored atomically under
``<cache>/<name>/tokens-<key>.pt``; the key hashes the settings, the tokenizer version and each
source file's path, size and mtime, so editing a source file or changing a setting re-tokenises.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch

from scpl.atomic import atomic_write
from scpl.data.base import RawData, cache_dir
from scpl.data.text.tokens import TOKENIZER_VERSION, build_tensors


def fingerprint(files: Iterable[Path]) -> str:
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


def tokenised(
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
        "source": fingerprint(sources),
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

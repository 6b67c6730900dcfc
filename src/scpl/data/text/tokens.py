"""Cleaning, tokenising, the vocabulary and padding: text to int64 token ids.

Preprocessing (the SCPL / Associated Learning text setting), see :func:`tokenize`: lowercase,
strip HTML tags (and unescape entities), drop apostrophes ("don't" -> "dont"), turn every other
punctuation run into a space, split on whitespace and remove scikit-learn's
``ENGLISH_STOP_WORDS`` (bundled: nothing is downloaded at run time). The vocabulary is built
from the TRAIN split only (:func:`build_tensors`): the ``vocab_size - 2`` most frequent train
words (ties broken by the word, ascending) get ids 2, 3, ...; id 0 is ``<pad>`` and id 1
``<unk>`` (every other word, including words seen only in the test split). Sequences are
truncated to ``max_len``; a text that is empty after cleaning becomes a single ``<unk>``
(length 1), so every length is >= 1.
"""

from __future__ import annotations

import array
import functools
import html
import re
from collections.abc import Iterable

import numpy as np
import torch

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
TOKENIZER_VERSION = 1  # bump when tokenize() or the cache layout changes

Row = tuple[str, int, str]  # (text, label, where) with ``where`` = "file:line" for errors

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

"""Text datasets: AG News, IMDB, DBpedia, SST-2, BBC News, a generic labelled CSV (``text-csv``)
and generated documents for smoke runs (``synthetic-text``, no files). Importing this package
registers them.

Every loader returns :class:`~scpl.data.base.RawData` with int64 token ids ``[N, T]`` (padded
with 0 to ``max_len`` T), int64 labels, the true lengths (``train_lengths`` / ``test_lengths``,
each in ``[1, T]``) and ``extra = {"vocab": [...], "classes": [...], "max_len": T}``.

Settings come from :class:`~scpl.data.base.LoadOptions` (``load_dataset``'s keywords, the
``--vocab-size`` / ``--max-len`` / ``--text-column`` / ``--label-column`` flags):
``vocab_size`` (default 30000, counting <pad> and <unk>), ``max_len`` (0 = the dataset's
default: ag-news 60, imdb 350, sst2 15, dbpedia 400, bbc-news 300, text-csv 128) and, for
``text-csv``, the column names (default "text" / "label").

Modules: :mod:`~scpl.data.text.tokens` (cleaning, vocabulary, padding),
:mod:`~scpl.data.text.readers` (CSV/TSV rows with file:line errors),
:mod:`~scpl.data.text.cache` (the token cache), and one module per family of datasets:
:mod:`~scpl.data.text.news`, :mod:`~scpl.data.text.sentiment`,
:mod:`~scpl.data.text.user_csv`, :mod:`~scpl.data.text.synthetic`.
"""

from scpl.data.text import news, sentiment, synthetic, user_csv  # noqa: F401  (registers)
from scpl.data.text.tokens import PAD, PAD_ID, UNK, UNK_ID, build_tensors, stop_words, tokenize

__all__ = ["PAD", "PAD_ID", "UNK", "UNK_ID", "build_tensors", "stop_words", "tokenize"]

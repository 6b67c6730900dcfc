"""Bad inputs found by an adversarial pass over the CLI and the library (issue 24, items 10-14):
every numeric flag has a range, absurd values and broken files are one `scpl: error:` line
(exit 2, no traceback), runs that end broken fail, the library refuses misuse, and messages
name the real cause. Mutants each test catches are named in its docstring."""

from __future__ import annotations

import errno
import gzip
import json
import math
import os
import struct
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from torch import nn

import scpl
from scpl.cli import main
from scpl.errors import ConfigError, DataError, ScplError
from scpl.training.config import RANGES, TrainConfig

FAST = [
    "--progress", "false", "--tensorboard", "false", "--epochs", "1", "--max-steps", "4",
    "--log-every", "2", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SCPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SCPL_DATA", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``scpl argv``: (exit code, stdout, stderr); argparse's exits count as exit codes."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    c = capsys.readouterr()
    return code, c.out, c.err


def error_line(code: int, err: str) -> str:
    """The one `scpl: error:` line of a refused command (exit 2, no traceback); informational
    lines printed before it (the model summary) are allowed, other error lines are not."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("scpl: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert all(ln.startswith("scpl: ") for ln in lines), err
    return errors[0]


def finished_run(tmp_path: Path, capsys, name: str = "run") -> Path:
    out = tmp_path / name
    code, _, err = cli(
        capsys, "train", "smoke", "--out", str(out), *FAST, "--checkpoint-every", "2",
        "--lr-schedule", "constant",
    )  # fmt: skip
    assert code == 0, err
    return out


# -- 10. a range for every numeric flag ------------------------------------------------------


def test_every_numeric_field_has_a_range():
    """Mutant: a numeric field left out of RANGES (e.g. delete "proj_dim")."""
    numeric = [f.name for f in fields(TrainConfig) if f.type in ("int", "float")]
    assert numeric and not [n for n in numeric if n not in RANGES]
    assert all(n in numeric for n in RANGES)  # no stale entries


def _allowed(name: str, v: float) -> bool:
    """What RANGES says about ``v`` (read independently of check_ranges)."""
    low, high, _ = RANGES[name]
    if not math.isfinite(v):
        return False
    lo, lo_open = low if isinstance(low, tuple) else (low, False)
    hi, hi_open = high if isinstance(high, tuple) else (high, False)
    hi = hi() if callable(hi) else hi
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if name == "lr_min":  # also bounded by --lr (cosine schedule)
        ok = ok and v <= TrainConfig.lr
    if name == "batch_size":  # SupCon needs two samples
        ok = ok and v >= 2
    return ok


VALUES = {"negative": -1, "zero": 0, "huge": 10**30, "nan": "nan", "inf": "inf"}
NUMERIC = sorted(RANGES)


@pytest.mark.parametrize("value", sorted(VALUES))
@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_flag_is_accepted_or_refused_in_one_line(name, value, tmp_path, capsys):
    """Each numeric field with a negative, zero, huge, NaN and inf value: valid values pass
    validation; the others are one line naming the flag, exit 2.
    Mutants: validate() not calling check_ranges; an upper bound dropped from the table (huge
    seeds, --max-len, --threads pass); Parser.error printing argparse's usage (nan for an int)."""
    is_int = next(f for f in fields(TrainConfig) if f.name == name).type == "int"
    v = VALUES[value]
    typed = float(v) if not is_int or isinstance(v, str) else v
    flag = "--" + name.replace("_", "-")
    text = str(v) if not isinstance(v, int) or is_int else str(float(v))
    if _allowed(name, typed) and not (is_int and isinstance(v, str)):
        TrainConfig(**{name: int(v) if is_int else float(v)}).validate()
        return
    code, _, err = cli(capsys, "train", "smoke", "--out", str(tmp_path / "o"), *FAST, flag, text)
    assert flag in error_line(code, err)


ISSUE_FLAGS = {
    "weight-decay-negative": (["--weight-decay", "-1"], "--weight-decay"),
    "seed-past-64-bits": (["--seed", "99999999999999999999"], "--seed"),
    "proj-dim-negative": (["--proj-dim", "-3"], "--proj-dim"),
    "proj-dim-zero": (["--proj-dim", "0"], "--proj-dim"),
    "max-len-huge": (["--max-len", "100000000"], "--max-len"),
    "dist-timeout-zero": (["--dist-timeout", "0"], "--dist-timeout"),
    "width-huge": (["--width", "1e6"], "--width"),
    "threads-huge": (["--threads", "100000"], "--threads"),
    "lr-min-above-lr": (["--lr-min", "10"], "--lr-min 10 is above --lr"),
    "out-empty": (["--out", ""], "--out is empty"),
    "dist-one-process": (
        ["--executor", "dist", "--nproc", "1", "--stages", "1"],
        "use --executor local",
    ),
    "abbreviated-flag": (["--npro", "2"], "did you mean --nproc?"),
    "int-flag-nan": (["--seed", "nan"], "--seed"),
    "optimizer-unknown": (["--optimizer", "sgd"], "choose adam or adamw"),
    "adamw-decay-past-1-over-lr": (
        ["--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "1000"],
        "would zero or flip them",
    ),
}


@pytest.mark.parametrize("case", sorted(ISSUE_FLAGS))
def test_issue_flags_are_one_line(case, tmp_path, capsys):
    """The inputs of issue 24 that gave tracebacks, trained wrongly or misled.
    Mutants: each range removed from RANGES; the lr_min <= lr check removed; the empty --out
    check removed; the one-process dist check removed (says "pass --nproc 1"); allow_abbrev
    left True (--npro becomes --nproc, and torchrun dumps its usage on the relaunch); the
    --optimizer choice or the adamw lr x decay check removed (a traceback, or a run whose
    weights are zeroed every step)."""
    flags, word = ISSUE_FLAGS[case]
    argv = ["train", "smoke", "--out", str(tmp_path / "o"), *FAST, *flags]
    assert word in error_line(*cli(capsys, *argv)[::2])


def test_width_that_cannot_fit_is_refused_before_building(tmp_path, capsys, monkeypatch):
    """The model's size is counted on the meta device and compared with the devices' memory.
    Mutant: check_model_fits not called (the run builds and trains; with a real huge width it
    dies allocating)."""
    import scpl.training.checks as checks
    from scpl.models import estimate_parameters

    assert estimate_parameters("vgg", (3, 32, 32), 10, 4, 1e6) == math.inf  # sizes overflow
    assert estimate_parameters("convnet", (1, 8, 8), 10, 2, 1.0) > 0
    code, _, err = cli(capsys, "train", "smoke", "--out", str(tmp_path / "a"), *FAST,
                       "--width", "500")  # fmt: skip
    assert "GiB" in error_line(code, err)
    monkeypatch.setattr(checks, "device_memory", lambda devices: 10**5)  # a 100 kB machine
    code, _, err = cli(capsys, "train", "smoke", "--out", str(tmp_path / "b"), *FAST)
    line = error_line(code, err)
    assert "--width" in line and "smaller --width" in line


def test_nan_guard_skip_fails_a_run_that_ends_with_non_finite_weights(tmp_path, capsys):
    """--nan-guard skip drops bad updates, but BatchNorm statistics still go NaN: the run must
    fail, not report chance accuracy. Mutant: check_weights_finite not called (exit 0)."""
    code, _, err = cli(capsys, "train", "smoke", "--out", str(tmp_path / "r"), *FAST,
                       "--lr", "1e30", "--nan-guard", "skip")  # fmt: skip
    assert "non-finite values" in error_line(code, err)


def test_a_list_loader_of_one_class_is_refused(tmp_path):
    """A plain list of batches is read for its labels too. Mutant: check_classes reading only
    a DataLoader's dataset (test_acc 1.0)."""
    from scpl.training.loop import train

    batches = [(torch.randn(16, 1, 8, 8), torch.zeros(16, dtype=torch.long))] * 4
    cfg = TrainConfig(model="convnet", width=0.125, stages=2, epochs=1, batch_size=16,
                      progress=False, tensorboard=False, device="cpu", augment="none",
                      executor="sequential", out=str(tmp_path / "one"))  # fmt: skip
    with pytest.raises(ScplError, match="single class"):
        train(cfg, train_loader=batches, test_loader=batches)


def test_recipe_name_or_overwrite_with_resume_is_refused(tmp_path, capsys):
    """Mutants: the recipe check in cmd_train removed (the name is ignored); the overwrite
    check removed (resume_config resets overwrite, so it was ignored)."""
    run = finished_run(tmp_path, capsys)
    line = error_line(*cli(capsys, "train", "paper-fmnist-vgg-bp", "--resume", str(run))[::2])
    assert "recipe 'smoke'" in line and "drop the recipe name" in line
    line = error_line(*cli(capsys, "train", "--resume", str(run), "--overwrite", "true")[::2])
    assert "--overwrite" in line


# -- 11. the library refuses misuse -----------------------------------------------------------


def _tiny_pipe(**kw) -> scpl.Pipeline:
    torch.manual_seed(0)
    stages = [nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU()), nn.Linear(16, 16)]
    model = scpl.StagedModel(stages, nn.Linear(16, 3), input_shape=(8,))
    return scpl.pipeline(model, executor="sequential", head="linear", **kw)


def test_step_after_close_raises():
    """Mutant: close() not marking the pipeline closed (step() builds new workers)."""
    pipe = _tiny_pipe()
    pipe.step(torch.randn(8, 8), torch.randint(0, 3, (8,)))
    pipe.close()
    with pytest.raises(ConfigError, match="closed"):
        pipe.step(torch.randn(8, 8), torch.randint(0, 3, (8,)))
    with pytest.raises(ConfigError, match="closed"):
        pipe.evaluate([(torch.randn(8, 8), torch.randint(0, 3, (8,)))])
    pipe.close()  # still safe twice


def test_an_empty_batch_raises():
    """Mutant: no empty-batch check in step() (the metrics turn NaN, no error)."""
    with _tiny_pipe() as pipe:
        with pytest.raises(ConfigError, match="empty batch"):
            pipe.step(torch.randn(0, 8), torch.zeros(0, dtype=torch.long))
        pipe.step(torch.randn(8, 8), torch.randint(0, 3, (8,)))
        assert all(math.isfinite(v) for v in pipe.metrics().values())


def test_evaluate_checks_labels_are_classes():
    """Mutant: evaluate() not checking the label range (returns 0.0)."""
    with _tiny_pipe() as pipe:
        pipe.step(torch.randn(8, 8), torch.randint(0, 3, (8,)))
        good = [(torch.randn(8, 8), torch.randint(0, 3, (8,)))]
        assert 0.0 <= pipe.evaluate(good) <= 1.0
        with pytest.raises(ConfigError, match=r"outside the classifier's classes \[0, 3\)"):
            pipe.evaluate([*good, (torch.randn(4, 8), torch.tensor([0, 7, 1, -1]))])


# -- 12. broken files and full disks are one line --------------------------------------------


@pytest.mark.parametrize("which", ["metrics", "summary"])
def test_disk_full_while_writing_the_run_files_is_one_line(which, tmp_path, capsys, monkeypatch):
    """Mutant: main() without its OSError handler (a 31-33 line traceback)."""
    import scpl.training.loop as loop
    import scpl.training.outputs as outputs

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if which == "metrics":
        monkeypatch.setattr(outputs.MetricsLog, "write", full)
    else:
        monkeypatch.setattr(loop, "atomic_write_json", full)
    code, _, err = cli(capsys, "train", "smoke", "--out", str(tmp_path / "r"), *FAST)
    line = error_line(code, err)
    assert "No space left on device" in line and "--resume" in line


@pytest.mark.parametrize("edit", ["shape", "key"])
def test_an_edited_checkpoint_is_one_line(edit, tmp_path, capsys):
    """A checkpoint that loads but does not fit the model. Mutant: no try around the restore
    in loop._train (a load_state_dict traceback)."""
    run = finished_run(tmp_path, capsys)
    newest = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    ck = torch.load(newest, weights_only=True)
    state = ck["executor"]["runners"][0]["unit"]
    name = next(k for k, v in state.items() if torch.is_tensor(v) and v.dim() > 1)
    if edit == "shape":
        state[name] = torch.zeros(3)
    else:
        state[name + "_edited"] = state.pop(name)
    torch.save(ck, newest)
    line = error_line(*cli(capsys, "train", "--resume", str(run), "--progress", "false")[::2])
    assert "does not fit this run" in line and name in line


def test_report_out_to_a_folder_or_a_read_only_place_is_one_line(tmp_path, capsys):
    """Mutant: cmd_report writing without its checks (IsADirectoryError / PermissionError)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(dict(
        test_acc=0.5, best_epoch=1, best_val_acc=0.5, samples_per_s=1.0, train_seconds=1.0,
        recipe="smoke", config=dict(model="convnet", method="scpl", dataset="digits", seed=0),
    )))  # fmt: skip
    line = error_line(*cli(capsys, "report", str(run), "--out", str(tmp_path))[::2])
    assert "is a folder" in line
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write to a 0o500 directory (root)")
        line = error_line(*cli(capsys, "report", str(run), "--out", str(locked / "t.md"))[::2])
    finally:
        locked.chmod(0o700)
    assert "could not write" in line


def _idx_files(d: Path, n: int, extra: bytes = b"", gz: bool = False) -> Path:
    d.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        images = struct.pack(">IIII", 0x803, n, 28, 28) + bytes(n * 28 * 28) + extra
        labels = struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))
        for stem, data in ((f"{prefix}-images-idx3-ubyte", images),
                           (f"{prefix}-labels-idx1-ubyte", labels)):  # fmt: skip
            if gz:
                (d / f"{stem}.gz").write_bytes(gzip.compress(data, compresslevel=1))
            else:
                (d / stem).write_bytes(data)
    return d


def test_fashion_files_with_zero_images_are_one_line(tmp_path, capsys):
    """Mutant: no 0-image check (torch.cat of an empty list in the validation split)."""
    d = _idx_files(tmp_path / "fm", 0)
    argv = ["train", "smoke", "--dataset", "fashion-mnist", "--data-dir", str(d)]
    line = error_line(*cli(capsys, *argv, "--out", str(tmp_path / "o"), *FAST)[::2])
    assert "0 images" in line


# -- 13. bounded decompression ---------------------------------------------------------------


def test_a_gzip_bomb_is_refused_after_its_header_size(tmp_path, monkeypatch):
    """An IDX .gz whose data goes on far past its header's size is refused after reading at
    most the header's size (+1 byte), and a header announcing more than any dataset is refused
    before anything is read. Mutant: the old read_idx (gzip.open(...).read() in full)."""
    from scpl.data.vision import fashion

    d = _idx_files(tmp_path / "bomb", 2, extra=bytes(64 * 2**20), gz=True)  # 64 MiB of zeros
    path = d / "train-images-idx3-ubyte.gz"
    assert path.stat().st_size < 2**20
    served = []
    real_open = gzip.open

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            b = self.f.read(n)
            served.append(len(b))
            return b

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(fashion.gzip, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    with pytest.raises(DataError, match="does not match its IDX header"):
        fashion.read_idx(path)
    assert sum(served) <= 16 + 2 * 28 * 28 + 1
    huge = tmp_path / "huge.gz"
    huge.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 2**20, 2**12, 2**12)))
    served.clear()
    with pytest.raises(DataError, match="announces"):
        fashion.read_idx(huge)
    assert sum(served) <= 16
    good = _idx_files(tmp_path / "good", 3, gz=True)
    assert fashion.read_idx(good / "train-images-idx3-ubyte.gz").shape == (3, 28, 28)


# -- 14. messages that name the real cause ---------------------------------------------------


def test_too_many_micro_batches_names_micro_batches(tmp_path, capsys):
    """Mutant: the old message ("use --batch-size 2 or more" for a batch of 32)."""
    argv = ["train", "smoke", "--out", str(tmp_path / "o"), *FAST, "--method", "bp"]
    line = error_line(*cli(capsys, *argv, "--batch-size", "32", "--micro-batches", "32")[::2])
    assert "--micro-batches 16 or fewer" in line and "--batch-size 2 or more" not in line


def test_a_first_checkpoint_on_a_full_disk_promises_no_earlier_one(tmp_path, monkeypatch):
    """Mutant: the old fixed text ("the previous checkpoint is intact" with none written)."""
    import scpl.atomic as atomic
    from scpl.training.checkpoint import atomic_save

    def full_mkstemp(**kw):
        link = Path(kw["dir"]) / f"full-{len(list(Path(kw['dir']).iterdir()))}.tmp"
        link.symlink_to("/dev/full")
        return os.open(link, os.O_WRONLY), str(link)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", full_mkstemp)
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    with pytest.raises(ScplError) as first:
        atomic_save({"w": torch.zeros(100000)}, ckpts / "ckpt-000000002.rank0.pt")
    assert "no earlier checkpoint" in str(first.value) and "intact" not in str(first.value)
    (ckpts / "ckpt-000000002.rank0.pt").write_bytes(b"an earlier checkpoint")
    with pytest.raises(ScplError, match="previous checkpoint is intact"):
        atomic_save({"w": torch.zeros(100000)}, ckpts / "ckpt-000000004.rank0.pt")


def test_a_glove_file_with_nan_is_refused_at_load(tmp_path):
    """Mutant: no finiteness check in load_glove (the NaN loss is blamed on --lr)."""
    from scpl.data.glove import load_glove

    f = tmp_path / "glove.txt"
    f.write_text("the 0.1 0.2 0.3\ncat nan 0.5 0.1\ndog 1e39 0 0\n")
    with pytest.raises(DataError, match=r"'cat' holds a non-finite value.*1 more"):
        load_glove(f, ["<pad>", "<unk>", "the", "cat", "dog"], 3)
    f.write_text("the 0.1 0.2 0.3\ncat 0.4 0.5 0.1\n")
    vectors, found = load_glove(f, ["<pad>", "<unk>", "the", "cat"], 3)
    assert found == 2 and bool(torch.isfinite(vectors).all())

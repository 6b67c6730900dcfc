"""`scpl experiment`: trials over seeds -> mean ± std tables (the smoke experiment)."""

import csv

from scpl.cli import main


def test_smoke_experiment_writes_tables_and_resumes(tmp_path, capsys):
    out = tmp_path / "exp"
    assert (
        main(["experiment", "smoke", "--trials", "2", "--out", str(out), "--set", "max_steps=3"])
        == 0
    )
    table = (out / "table.md").read_text()
    assert "| method | convnet |" in table and "±" in table
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert {r["method"] for r in rows} == {"bp", "scpl"}
    assert all(r["n"] == "2" for r in rows)
    runs = (out / "runs.jsonl").read_text().splitlines()
    assert len(runs) == 4
    # Re-running continues instead of repeating finished runs.
    assert (
        main(["experiment", "smoke", "--trials", "2", "--out", str(out), "--set", "max_steps=3"])
        == 0
    )
    assert len((out / "runs.jsonl").read_text().splitlines()) == 4


def test_bad_set_and_unknown_experiment_are_one_line_errors(tmp_path, capsys):
    assert main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    assert "choose one of" in capsys.readouterr().err
    assert main(["experiment", "smoke", "--out", str(tmp_path), "--set", "epochs"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err

"""Run reports (metrics.csv, curves.png) and `recstudio compare` (see docs/runs.md)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import yaml

import recstudio
from recstudio.commands.compare import main as compare_main
from recstudio.data import from_dataframe
from recstudio.model.registry import get_model
from recstudio.reporting.compare import load_run
from recstudio.reporting.curves import best_epoch, write_run_report
from recstudio.reporting.epochs import epoch_table
from recstudio.utils.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_split(valid: bool = True):
    rng = np.random.default_rng(7)
    rows = [(f"u{u}", f"i{i}", 1.0, float(t)) for u in range(30)
            for t, i in enumerate(rng.choice(40, size=10, replace=False))]
    frame = pd.DataFrame(rows, columns=["u", "i", "r", "t"])
    return from_dataframe(frame, "u", "i", "r", "t").split(split_ratio=[0.8, 0.1, 0.1] if valid else [0.8, 0.2])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 3-epoch BPR run and an EASE (closed-form) run on the same tiny data."""
    root = tmp_path_factory.mktemp("runs")
    split = tiny_split()
    bpr = get_model("BPR")(embed_dim=8, epochs=3, batch_size=64, early_stop_patience=10, quiet=True)
    bpr.fit(split, run_dir=root / "bpr")
    ease = get_model("EASE")(quiet=True)
    ease.fit(split, run_dir=root / "ease")
    return {"bpr": root / "bpr", "ease": root / "ease", "root": root}


def assert_valid_png(path: Path):
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def fake_run(folder: Path, metrics: dict, model: str = "BPR", dataset: str = "ml-100k") -> Path:
    folder.mkdir(parents=True)
    (folder / "test_metrics.json").write_text(json.dumps(metrics))
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": model, "dataset": dataset, "epochs": 3}))
    return folder


# ---- one run: metrics.csv and curves.png ----------------------------------------------------------
def test_a_run_writes_one_row_per_epoch_from_lightning_log(runs):
    table = pd.read_csv(runs["bpr"] / "metrics.csv")
    assert list(table["epoch"]) == [0, 1, 2]
    assert table.columns[:2].tolist() == ["epoch", "train_loss"] and table.columns[-1] == "wall_time_s"
    assert {"valid_mrr@10", "valid_ndcg@10", "valid_recall@10"} <= set(table.columns)
    assert not any(c.startswith("test") for c in table.columns)
    assert table.notna().all().all()
    lightning = pd.read_csv(runs["bpr"] / "logs" / "metrics.csv")
    np.testing.assert_allclose(table["train_loss"], lightning["train/loss"].dropna())
    np.testing.assert_allclose(table["valid_ndcg@10"], lightning["valid/ndcg@10"].dropna())
    assert (table["wall_time_s"] > 0).all() and table["wall_time_s"].is_monotonic_increasing


def test_a_run_draws_a_readable_curves_png(runs):
    assert_valid_png(runs["bpr"] / "curves.png")
    assert not list(runs["bpr"].glob(".*.part*"))  # atomic writes leave no temporary file


def test_closed_form_run_gets_its_validation_row_and_no_plot(runs):
    table = pd.read_csv(runs["ease"] / "metrics.csv")
    assert len(table) == 1 and table.loc[0, "epoch"] == 0
    assert "train_loss" not in table.columns and "valid_ndcg@10" in table.columns
    assert not (runs["ease"] / "curves.png").exists()


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_run_without_validation_plots_the_loss_alone(tmp_path):
    model = get_model("BPR")(embed_dim=8, epochs=2, batch_size=64, quiet=True)
    model.fit(tiny_split(valid=False), run_dir=tmp_path / "run")
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(table.columns) == ["epoch", "train_loss", "wall_time_s"] and len(table) == 2
    assert_valid_png(tmp_path / "run" / "curves.png")


def test_epoch_table_folds_lightning_rows_and_keeps_gaps(tmp_path):
    log = tmp_path / "logs" / "metrics.csv"
    log.parent.mkdir()
    log.write_text("epoch,step,test/ndcg@10,time/elapsed_s,train/loss,valid/ndcg@10\n"
                   "0,4,,1.5,0.9,\n"                 # val_every=2: no validation at epoch 0
                   "1,9,,,,0.20\n"
                   "1,9,,3.0,0.7,\n"
                   "2,14,,4.5,0.6,\n"
                   "3,19,,,,0.25\n"
                   "3,19,,6.0,0.5,\n"
                   "4,19,0.3,,,\n")                  # the test row is left out
    table = epoch_table(log)
    assert list(table.columns) == ["epoch", "train_loss", "valid_ndcg@10", "wall_time_s"]
    assert table["epoch"].tolist() == [0, 1, 2, 3]
    assert table["train_loss"].tolist() == [0.9, 0.7, 0.6, 0.5]
    assert math.isnan(table.loc[0, "valid_ndcg@10"]) and table.loc[3, "valid_ndcg@10"] == 0.25
    assert best_epoch(table, "ndcg@10", "max") == 3
    written = write_run_report(tmp_path, "ndcg@10", "max")
    assert set(written) == {"metrics", "curves"}
    assert_valid_png(written["curves"])


def test_best_epoch_takes_the_first_best_and_honours_min():
    table = pd.DataFrame({"epoch": [0, 1, 2, 3], "valid_rmse": [1.0, 0.8, 0.9, 0.8],
                          "valid_ndcg@10": [0.1, 0.3, 0.3, 0.2]})
    assert best_epoch(table, "rmse", "min") == 1
    assert best_epoch(table, "ndcg@10", "max") == 1
    assert best_epoch(table, "mrr@10", "max") is None
    with pytest.raises(ConfigError, match="'max' or 'min'"):
        best_epoch(table, "rmse", "lowest")


def test_report_without_lightning_log_writes_nothing(tmp_path):
    assert write_run_report(tmp_path, "ndcg@10", "max") == {}
    assert list(tmp_path.iterdir()) == []


# ---- compare ------------------------------------------------------------------------------------
def test_compare_prints_table_with_best_marked_and_writes_chart(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert compare_main([str(runs["bpr"]), str(runs["ease"]), "--metrics", "ndcg@10", "recall@10"]) == 0
    out = capsys.readouterr().out
    bpr = json.loads((runs["bpr"] / "test_metrics.json").read_text())
    ease = json.loads((runs["ease"] / "test_metrics.json").read_text())
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("BPR/", "EASE/"))}
    assert set(lines) == {"BPR/custom/bpr", "EASE/custom/ease"}
    for label, metrics in (("BPR/custom/bpr", bpr), ("EASE/custom/ease", ease)):
        cells = lines[label]
        assert [float(c.rstrip("*")) for c in cells] == [round(metrics["ndcg@10"], 4), round(metrics["recall@10"], 4)]
        best_ndcg = metrics["ndcg@10"] == max(bpr["ndcg@10"], ease["ndcg@10"])
        assert cells[0].endswith("*") == best_ndcg
    assert out.splitlines()[0].split() == ["run", "ndcg@10", "recall@10"]
    assert_valid_png(tmp_path / "compare.png")  # the default output, in the current folder


def test_compare_runs_api_returns_the_test_metrics(runs):
    table = recstudio.compare_runs([runs["bpr"], runs["ease"]])
    bpr = json.loads((runs["bpr"] / "test_metrics.json").read_text())
    assert table.index.tolist() == ["BPR/custom/bpr", "EASE/custom/ease"]
    assert table.loc["BPR/custom/bpr"].to_dict() == pytest.approx(bpr)
    assert table.attrs["paths"]["EASE/custom/ease"] == runs["ease"]
    assert recstudio.compare_runs(runs["root"]).index.tolist() == table.index.tolist()  # a folder of runs
    assert recstudio.compare_runs(str(runs["root"] / "e*")).index.tolist() == ["EASE/custom/ease"]  # a glob
    with pytest.raises(DataError, match="is a folder of runs, not one run directory"):
        load_run(runs["root"])


def test_runs_with_different_metrics_get_blank_cells(tmp_path):
    a = fake_run(tmp_path / "a", {"ndcg@10": 0.3, "recall@10": 0.2})
    b = fake_run(tmp_path / "b", {"ndcg@10": 0.4, "rmse": 0.9}, model="MF")
    c = fake_run(tmp_path / "c", {"rmse": 0.8}, model="MF")
    table = recstudio.compare_runs([a, b, c])
    assert table.columns.tolist() == ["ndcg@10", "recall@10", "rmse"]
    assert math.isnan(table.loc["MF/ml-100k/b", "recall@10"])
    text = recstudio.reporting.format_comparison(table)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:4]}
    assert rows["BPR/ml-100k/a"] == ["0.3000", "0.2000", "-"]  # alone in recall@10: nothing to beat
    assert rows["MF/ml-100k/b"] == ["0.4000*", "-", "0.9000"]
    assert rows["MF/ml-100k/c"] == ["-", "-", "0.8000*"]        # rmse: lower is better
    assert "no such metric" in text and "lower is better for rmse" in text
    out = recstudio.reporting.plot_comparison(table, tmp_path / "chart.png")
    assert_valid_png(out)


def test_compare_via_python_m_recstudio(tmp_path):
    a = fake_run(tmp_path / "a", {"ndcg@10": 0.3})
    b = fake_run(tmp_path / "b", {"ndcg@10": 0.5}, model="EASE")
    done = subprocess.run([sys.executable, "-m", "recstudio", "compare", str(a), str(b), "--output",
                           str(tmp_path / "out" / "c.png")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert ["EASE/ml-100k/b", "0.5000*"] in [line.split() for line in done.stdout.splitlines()]
    assert_valid_png(tmp_path / "out" / "c.png")


# ---- bad input ----------------------------------------------------------------------------------
def test_a_folder_that_is_not_a_run_dir_is_named_in_the_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert compare_main([str(tmp_path / "empty"), "--output", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "empty") in err and "not a run directory (no test_metrics.json)" in err
    assert "config.yaml, test_metrics.json" in err  # says what a run dir holds
    assert not (tmp_path / "c.png").exists()
    with pytest.raises(DataError, match="does not exist"):
        recstudio.compare_runs(tmp_path / "missing")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("model: BPR\n")
    with pytest.raises(DataError, match="unfinished' has no test_metrics.json: that run did not finish"):
        recstudio.compare_runs(unfinished)
    with pytest.raises(DataError, match="matches no run directory"):
        recstudio.compare_runs(str(tmp_path / "nothing-*"))


def test_unknown_metric_lists_the_available_ones(tmp_path, capsys):
    a = fake_run(tmp_path / "a", {"ndcg@10": 0.3, "recall@10": 0.2})
    assert compare_main([str(a), "--metrics", "auc", "--output", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "unknown metric(s) ['auc']" in err and "['ndcg@10', 'recall@10']" in err
    assert not (tmp_path / "c.png").exists()


def test_malformed_metrics_file_and_bad_chart_name_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "test_metrics.json").write_text('{"ndcg@10": "high"}')
    with pytest.raises(DataError, match="should map metric names to numbers"):
        recstudio.compare_runs(bad)
    (bad / "test_metrics.json").write_text('{"ndcg@10": 0.3')
    with pytest.raises(DataError, match="is not valid JSON"):
        recstudio.compare_runs(bad)
    good = fake_run(tmp_path / "good", {"ndcg@10": 0.3})
    with pytest.raises(ConfigError, match=r"should end in one of .*\.png"):
        recstudio.reporting.plot_comparison(recstudio.compare_runs(good), tmp_path / "chart.txt")
    assert not (tmp_path / "chart.txt").exists()
    assert compare_main([str(good), "--output", str(tmp_path / "chart.txt")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "cannot write a chart to" in err  # refused before the table is printed

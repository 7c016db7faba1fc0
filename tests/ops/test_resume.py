"""Resuming a killed run, atomic checkpoints and loading run folders (docs/checkpoints.md).

The process-killing test SIGKILLs a real ``python run.py`` run halfway through writing a
checkpoint (from inside the process, so the moment is exact) and resumes it with
``python run.py --resume``; the other tests run in this process on tiny synthetic data.
"""
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.commands.train import main as cli_main
from recstudio.data import from_dataframe
from recstudio.train import checkpoint as ckpt_module
from recstudio.train.checkpoint import (AtomicCheckpointIO, LastCheckpoint, capture_random_state, find_checkpoint,
                                        resume_config, restore_random_state)
from recstudio.model.registry import get_model
from recstudio.utils.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]

#: a BPR run on ml-100k cut down by a k-core filter: about 0.1 s an epoch
CLI_ARGS = ["-d", "ml-100k", "--min_user_inter", "60", "--min_item_inter", "60", "--embed_dim", "8",
            "--epochs", "5", "--batch_size", "1024", "--early_stop_patience", "100"]

#: the command line's main(), SIGKILL-ed halfway through writing epoch 2's first checkpoint (best.ckpt when
#: the epoch improves, last.ckpt then being a hard link to it; last.ckpt otherwise)
KILLED_MID_SAVE = """
import io, os, signal, sys
from pathlib import Path
import torch
real_save = torch.save
def save_and_die(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)) and Path(f).name.startswith((".last.ckpt.", ".best.ckpt.")) and obj.get("epoch") == 2:
        buffer = io.BytesIO()
        real_save(obj, buffer)
        with open(f, "wb") as out:
            out.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = save_and_die
from recstudio.commands.train import main
sys.exit(main(sys.argv[1:]))
"""


def python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=180, cwd=ROOT)


def only_run(parent: Path) -> Path:
    runs = [p for p in parent.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def valid_by_epoch(run_dir: Path) -> pd.Series:
    """The validation ndcg@10 logged for each epoch (every epoch exactly once)."""
    log = pd.read_csv(run_dir / "logs" / "metrics.csv")
    rows = log.dropna(subset=["valid/ndcg@10"])
    assert rows["epoch"].is_unique, rows["epoch"].tolist()
    return rows.set_index("epoch")["valid/ndcg@10"]


def test_a_killed_cli_run_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path):
    reference = python("run.py", *CLI_ARGS, "--run_dir", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr
    killed = python("-c", KILLED_MID_SAVE, *CLI_ARGS, "--run_dir", str(tmp_path / "killed"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    run_dir = only_run(tmp_path / "killed")
    checkpoints = run_dir / "checkpoints"
    assert list(checkpoints.glob(".*.ckpt.*.part"))                    # the save it died in
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 1  # the one before, intact
    assert not (run_dir / "test_metrics.json").exists()

    resumed = python("run.py", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and str(run_dir) in resumed.stdout
    assert not list(checkpoints.glob(".*.part"))

    ref_dir = only_run(tmp_path / "reference")
    expected = json.loads((ref_dir / "test_metrics.json").read_text())
    got = json.loads((run_dir / "test_metrics.json").read_text())
    assert got.keys() == expected.keys()
    assert all(abs(got[k] - expected[k]) <= 1e-6 for k in expected), (got, expected)
    pd.testing.assert_series_equal(valid_by_epoch(run_dir), valid_by_epoch(ref_dir))
    last, ref_last = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (run_dir, ref_dir))
    assert last["epoch"] == ref_last["epoch"] == 4
    assert all(torch.equal(last["state_dict"][k], v) for k, v in ref_last["state_dict"].items())


# ---- in-process runs on tiny data --------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(4)
    rows = [(f"u{u}", f"i{i}", 1.0, float(t)) for u in range(40)
            for t, i in enumerate(rng.choice(30, size=10, replace=False))]
    return from_dataframe(pd.DataFrame(rows, columns=["u", "i", "r", "t"]), "u", "i", "r", "t")


class Crash(Exception):
    pass


def crash_after_saving(monkeypatch, epoch: int) -> None:
    """Make the run raise right after writing ``last.ckpt`` of ``epoch`` (in full or as a link to best.ckpt)."""
    real = LastCheckpoint._save_checkpoint

    def save(self, trainer, filepath):
        real(self, trainer, filepath)
        if trainer.current_epoch == epoch:
            raise Crash()
    monkeypatch.setattr(LastCheckpoint, "_save_checkpoint", save)


def train(model: str, data, run_dir: Path, **kw):
    settings = {"epochs": 4, "batch_size": 64, "quiet": True, "early_stop_patience": 100, **kw}
    _, metrics = recstudio.run(model=model, dataset=data, run_dir=str(run_dir), **settings)
    return only_run(run_dir), metrics


def crashed_run(monkeypatch, model: str, data, run_dir: Path, epoch: int = 1, **kw) -> Path:
    with monkeypatch.context() as m:
        crash_after_saving(m, epoch)
        with pytest.raises(Crash):
            train(model, data, run_dir, **kw)
    return only_run(run_dir)


def assert_same_run(a: Path, b: Path, metrics_a, metrics_b) -> None:
    assert all(abs(metrics_a[k] - metrics_b[k]) <= 1e-6 for k in metrics_a), (metrics_a, metrics_b)
    sa, sb = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (a, b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_wrmf_resumes_exactly(tmp_path, tiny, monkeypatch):
    kw = {"embed_dim": 8, "solver": "cg"}
    fresh, expected = train("WRMF", tiny, tmp_path / "fresh", **kw)
    assert (fresh / "checkpoints" / "best.ckpt").is_file()  # the solver's batches count as steps
    run = crashed_run(monkeypatch, "WRMF", tiny, tmp_path / "crashed", **kw)
    _, metrics = recstudio.run(resume=run, dataset=tiny, quiet=True)
    assert_same_run(fresh, run, expected, metrics)


def test_random_state_of_samplers_is_restored(tmp_path, tiny, monkeypatch):
    """The uniform sampler draws from its own generator, saved beside torch's global state."""
    kw = {"embed_dim": 8, "sampler": "uniform", "loss": "bpr"}
    fresh, expected = train("BPR", tiny, tmp_path / "fresh", **kw)
    run = crashed_run(monkeypatch, "BPR", tiny, tmp_path / "crashed", **kw)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)[ckpt_module.RANDOM_STATE_KEY]
    assert "sampler.generator" in state["generators"]
    torch.manual_seed(99)  # whatever the new process's state, the checkpoint's wins
    _, metrics = recstudio.run(resume=run, dataset=tiny, quiet=True)
    assert_same_run(fresh, run, expected, metrics)
    assert valid_by_epoch(run).index.tolist() == [0, 1, 2, 3]


def test_more_epochs_continue_a_finished_run(tmp_path, tiny):
    fresh, expected = train("BPR", tiny, tmp_path / "fresh", embed_dim=8, epochs=4)
    short, _ = train("BPR", tiny, tmp_path / "short", embed_dim=8, epochs=2)
    _, metrics = recstudio.run(resume=short, dataset=tiny, epochs=4, quiet=True)
    assert_same_run(fresh, short, expected, metrics)
    assert (short / "config.yaml").read_text().count("epochs: 4") == 1


def test_an_early_stopped_run_is_only_tested_again(tmp_path, tiny):
    run, expected = train("BPR", tiny, tmp_path / "r", embed_dim=8, epochs=30, early_stop_patience=1)
    stopped_at = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert stopped_at < 29
    _, metrics = recstudio.run(resume=run, dataset=tiny, quiet=True)
    assert metrics == expected
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == stopped_at


def test_last_checkpoint_links_best_when_both_are_written_at_one_step(tmp_path, tiny, monkeypatch):
    """An improving validation writes best.ckpt once; last.ckpt becomes a hard link to it (no second
    serialisation), and keeps that content when a later best.ckpt is renamed over its name."""
    writes = []
    real = AtomicCheckpointIO.save_checkpoint
    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint",
                        lambda self, ck, path, storage_options=None: (writes.append((Path(path).name, ck["epoch"])),
                                                                      real(self, ck, path, storage_options)))
    run, _ = train("BPR", tiny, tmp_path / "r", embed_dim=8, epochs=6)
    log = pd.read_csv(run / "logs" / "metrics.csv").dropna(subset=["valid/mrr@10"])
    improved = log["valid/mrr@10"].cummax().diff().fillna(1.0).gt(0).tolist()
    assert [name for name, _ in writes] == [("best.ckpt" if up else "last.ckpt") for up in improved]
    last, best = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best.ckpt"
    assert last.samefile(best) == improved[-1]
    assert torch.load(last, weights_only=True)["epoch"] == 5
    assert torch.load(best, weights_only=True)["epoch"] == max(e for e, up in enumerate(improved) if up)


# ---- atomic writes -----------------------------------------------------------------------------
def half_written_save(real_save):
    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as out:
            out.truncate(Path(f).stat().st_size // 2)
        raise OSError("disk full (simulated)")
    return save


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "w": torch.arange(1000.0)}, str(path))
    monkeypatch.setattr(torch, "save", half_written_save(torch.save))
    with pytest.raises(OSError, match="simulated"):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, str(path))
    kept = torch.load(path, weights_only=True)
    assert kept["epoch"] == 1 and torch.equal(kept["w"], torch.arange(1000.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_runs_write_checkpoints_through_the_atomic_plugin(tmp_path, tiny, monkeypatch):
    run, _ = train("BPR", tiny, tmp_path / "r", embed_dim=8, epochs=1)
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    monkeypatch.setattr(torch, "save", half_written_save(torch.save))
    with pytest.raises(OSError, match="simulated"):  # the same run folder again: the first save fails
        recstudio.run(resume=run, dataset=tiny, epochs=2, quiet=True)
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before
    assert not list((run / "checkpoints").glob(".*.part"))


def test_model_save_is_atomic(tmp_path, tiny, monkeypatch):
    model = get_model("BPR")(embed_dim=8, epochs=1, quiet=True)
    model.fit(tiny.split(), run_dir=tmp_path / "run")
    path = model.save(tmp_path / "bpr.pt")
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", half_written_save(torch.save))
    with pytest.raises(OSError, match="simulated"):
        model.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["bpr.pt", "run"]


def test_random_state_round_trip():
    module = torch.nn.Module()
    module.sampler = torch.nn.Module()
    module.sampler.generator = torch.Generator().manual_seed(3)
    state = capture_random_state(module)
    draws = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=module.sampler.generator))
    restore_random_state(state, module)
    again = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=module.sampler.generator))
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and torch.equal(draws[2], again[2])
    with pytest.raises(DataError, match="different model"):
        restore_random_state(state, torch.nn.Linear(1, 1))


# ---- bad --resume inputs -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny):
    """A finished 2-epoch BPR run on the tiny data (not a registered dataset)."""
    parent = tmp_path_factory.mktemp("tiny-run")
    run, _ = train("BPR", tiny, parent, embed_dim=8, epochs=2)
    return run


def cli_error(capsys, *argv: str) -> str:
    assert cli_main(list(argv)) == 2
    return capsys.readouterr().err


def test_missing_empty_or_corrupt_checkpoints_are_data_errors(tmp_path, capsys):
    assert "does not exist" in cli_error(capsys, "--resume", str(tmp_path / "nope"))
    empty = tmp_path / "BPR-x-1"
    (empty / "checkpoints").mkdir(parents=True)
    err = cli_error(capsys, "--resume", str(empty))
    assert "has no last.ckpt" in err and "before its first checkpoint" in err
    (empty / "checkpoints" / "last.ckpt").write_bytes(b"\x80\x02 not a checkpoint")
    assert "cannot read checkpoint" in cli_error(capsys, "--resume", str(empty))
    with pytest.raises(DataError, match="corrupt"):
        recstudio.load(empty)


def test_changing_the_model_or_its_data_keys_is_a_config_error(tiny_run, tiny, capsys):
    err = cli_error(capsys, "--resume", str(tiny_run), "--embed_dim", "16")
    assert "cannot change embed_dim: 8 -> 16" in err and "epochs" in err
    err = cli_error(capsys, "--resume", str(tiny_run), "-m", "NCF")
    assert "is a run of BPR, not NCF" in err
    with pytest.raises(ConfigError, match="cannot change min_user_inter"):
        recstudio.run(resume=tiny_run, dataset=tiny, min_user_inter=3)
    with pytest.raises(ConfigError, match="unknown key 'epoch'.*'epochs'"):
        resume_config({"epochs": 2}, {"epoch": 3}, "BPR")


def test_the_runs_own_data_is_required(tiny_run, tiny, capsys):
    err = cli_error(capsys, "--resume", str(tiny_run))  # trained on a DataFrame: the CLI cannot load it
    assert "not trained on a registered dataset" in err and "dataset=" in err
    other = from_dataframe(pd.DataFrame({"u": ["a", "b", "c"] * 4, "i": [f"x{k}" for k in range(12)]}), "u", "i")
    with pytest.raises(DataError, match="differs from the data the run was trained on"):
        recstudio.run(resume=tiny_run, dataset=other)


def test_what_cannot_be_resumed(tmp_path, tiny_run, tiny):
    saved = recstudio.load(tiny_run).save(tmp_path / "weights.pt")
    with pytest.raises(DataError, match="holds weights only"):
        recstudio.run(resume=saved, dataset=tiny)
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes((tiny_run / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(DataError, match="not inside a run folder"):
        recstudio.run(resume=loose, dataset=tiny)
    ease, _ = train("EASE", tiny, tmp_path / "ease")
    with pytest.raises(ConfigError, match="closed form.*nothing to resume"):
        recstudio.run(resume=ease, dataset=tiny)


# ---- recstudio.load of run folders -------------------------------------------------------------
def test_load_takes_a_run_folder(tiny_run, tmp_path):
    checkpoints = tiny_run / "checkpoints"
    assert find_checkpoint(tiny_run, prefer=("best.ckpt", "last.ckpt")) == checkpoints / "best.ckpt"
    from_folder = recstudio.load(tiny_run)
    from_file = recstudio.load(checkpoints / "best.ckpt")
    assert all(torch.equal(v, from_file.state_dict()[k]) for k, v in from_folder.state_dict().items())
    copy = tmp_path / "copy"
    (copy / "checkpoints").mkdir(parents=True)
    (copy / "checkpoints" / "last.ckpt").write_bytes((checkpoints / "last.ckpt").read_bytes())
    last = recstudio.load(copy)  # no best.ckpt: the last one
    items, _ = last.recommend(["u1"], k=3)
    assert items.shape == (1, 3)
    with pytest.raises(DataError, match="has no best.ckpt or last.ckpt"):
        recstudio.load(tmp_path)

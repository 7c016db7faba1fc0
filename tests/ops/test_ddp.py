"""Multi-process (DDP) training and evaluation on CPU with gloo (see docs/distributed.md).

Every process-starting test binds 127.0.0.1 on a free MASTER_PORT and leaves no process behind.
"""
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recstudio.data import from_dataframe
from recstudio.data.types.base import IndexSampler
from recstudio.train.distributed import ShardedDataModule
from recstudio.model.base.meta import DataMeta
from recstudio.model.registry import get_model
from recstudio.utils.errors import ConfigError
from loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
EVAL_KEYS = dict(metrics=["recall", "ndcg", "mrr", "item_coverage"], cutoffs=[5, 10])


@pytest.fixture
def loopback(monkeypatch):
    """MASTER_ADDR / MASTER_PORT for a process group on 127.0.0.1 (restored afterwards)."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))


def tiny_split(valid: bool = True, users: int = 41):
    rng = np.random.default_rng(3)
    rows = [(f"u{u}", f"i{i}", 1.0, float(t)) for u in range(users)
            for t, i in enumerate(rng.choice(30, size=10, replace=False))]
    frame = pd.DataFrame(rows, columns=["u", "i", "r", "t"])
    return from_dataframe(frame, "u", "i", "r", "t").split(split_ratio=[0.8, 0.1, 0.1] if valid else [0.8, 0.2])


def module_for(model, split, world_size: int, rank: int) -> ShardedDataModule:
    data = ShardedDataModule.for_split(model, split)
    data.trainer = SimpleNamespace(world_size=world_size, global_rank=rank)  # what Lightning sets per process
    return data


# ---- sharding, without processes ------------------------------------------------------------
def test_each_process_trains_on_a_disjoint_shard_of_every_epoch():
    split = tiny_split()
    model = get_model("BPR")(embed_dim=8, batch_size=16, quiet=True)
    model.build(DataMeta.from_split(split))
    loaders = [module_for(model, split, 2, r).train_dataloader() for r in (0, 1)]
    rows = len(loaders[0].dataset)
    for epoch in (0, 1):
        shards = [loader.sampler.order(epoch) for loader in loaders]
        assert len(shards[0]) == len(shards[1]) == rows // 2
        assert not set(shards[0].tolist()) & set(shards[1].tolist())
        assert len(set(torch.cat(shards).tolist())) == 2 * (rows // 2)  # all rows but the odd one out
    assert not torch.equal(loaders[0].sampler.order(0), loaders[0].sampler.order(1))  # reshuffled per epoch
    assert len(loaders[0]) == len(loaders[1])  # DDP needs the same number of steps everywhere
    batches = [list(loader) for loader in loaders]
    uid = split.dataset.uid_field
    assert [len(b[uid]) for b in batches[0]] == [len(b[uid]) for b in batches[1]]


def test_evaluation_users_are_dealt_out_whole_batches_round_robin():
    split = tiny_split(users=41)
    model = get_model("BPR")(embed_dim=8, eval_batch_size=4, quiet=True)
    model.build(DataMeta.from_split(split))
    uid = split.dataset.uid_field
    single = [b[uid].tolist() for b in module_for(model, split, 1, 0).test_dataloader()]
    per_rank = [[b[uid].tolist() for b in module_for(model, split, 3, r).test_dataloader()] for r in range(3)]
    for r in range(3):
        assert per_rank[r] == single[r::3]
    dealt = [u for batches in per_rank for b in batches for u in b]
    assert sorted(dealt) == sorted(u for b in single for u in b)  # nothing dropped, nothing twice


def test_a_process_without_an_evaluation_batch_gets_one_empty_batch():
    s = IndexSampler(3, 2, shuffle=False, num_replicas=3, rank=2, shard="batches")
    assert len(s) == 1 and [b.tolist() for b in s] == [[]]
    assert IndexSampler(3, 2, shuffle=False, num_replicas=3, rank=1, shard="batches").global_batch_number(0) == 1
    with pytest.raises(ConfigError, match="shard must be 'rows'"):
        IndexSampler(3, 2, shard="users")


def test_alternating_models_are_refused_under_ddp_before_anything_runs(tmp_path):
    model = get_model("WRMF")(embed_dim=8, epochs=1, quiet=True, devices=2, strategy="ddp_spawn",
                              run_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="alternating.*devices=1"):
        model.fit(tiny_split())
    assert list(tmp_path.iterdir()) == []  # no run folder was written


# ---- real processes ---------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_two_process_evaluation_equals_one_process(protocol, loopback, tmp_path):
    """(a) A closed-form model (deterministic weights) fitted and evaluated from Python with
    ddp_spawn: the all-reduced test metrics returned in the calling process equal one process's."""
    split = tiny_split(valid=False)  # no validation: a single spawn, for the test phase
    keys = dict(EVAL_KEYS) if protocol == "full" else dict(metrics=["recall", "ndcg", "mrr"], cutoffs=[5, 10])
    common = dict(quiet=True, eval_batch_size=3, eval_protocol=protocol, eval_negatives=8, **keys)
    one = get_model("EASE")(**common, run_dir=str(tmp_path / "one")).fit(split)
    model = get_model("EASE")(**common, run_dir=str(tmp_path / "two"), devices=2, strategy="ddp_spawn")
    two = model.fit(split)
    assert set(two) == set(one) and len(one) == len(keys["metrics"]) * 2
    for k in one:
        assert abs(one[k] - two[k]) <= 1e-6, (k, one[k], two[k])
    assert json.loads((model.run_dir / "test_metrics.json").read_text()) == two
    assert len(list((tmp_path / "two").iterdir())) == 1


def run_cli_ddp(run_dir: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    """`python run.py ... --devices 2 --strategy ddp` on ml-100k (1 epoch, a few large batches);
    the whole process group is killed if it is still alive at the end."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "BPR", "-d", "ml-100k", "--devices", "2", "--strategy", "ddp",
           "--accelerator", "cpu", "--epochs", "1", "--batch_size", "8192", "--embed_dim", "8", "--seed", "7",
           "--learning_rate", "0.01", "--run_dir", str(run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the rank-1 process it started
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Two command-line DDP runs with the same seed (each in its own run folder)."""
    base = tmp_path_factory.mktemp("ddp-cli")
    data_dir = base / "data"
    old = os.environ.get("RECSTUDIO_DATA_DIR")
    os.environ["RECSTUDIO_DATA_DIR"] = str(data_dir)
    try:
        return [(run_cli_ddp(base / f"runs{i}"), base / f"runs{i}") for i in (0, 1)]
    finally:
        if old is None:
            os.environ.pop("RECSTUDIO_DATA_DIR", None)
        else:
            os.environ["RECSTUDIO_DATA_DIR"] = old


def test_command_line_ddp_run_writes_one_run_folder_with_reduced_metrics(cli_runs):
    """(b) A real 2-process run from the command line completes; rank 0 alone prints and writes."""
    out, runs = cli_runs[0]
    assert out.returncode == 0, out.stderr[-3000:]
    folders = list(runs.iterdir())
    assert len(folders) == 1, folders  # every process used global rank 0's folder
    folder = folders[0]
    assert {"config.yaml", "test_metrics.json", "checkpoints", "logs"} <= {p.name for p in folder.iterdir()}
    assert (folder / "checkpoints" / "best.ckpt").is_file()
    metrics = json.loads((folder / "test_metrics.json").read_text())
    assert set(metrics) >= {"recall@10", "ndcg@10", "mrr@10"}
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in metrics.values())
    assert out.stdout.count("test metrics (") == 1 and out.stdout.count("epoch   0") == 1
    printed = out.stdout.split("test metrics (")[1].splitlines()[2].split()
    assert [float(v) for v in printed] == [round(v, 4) for v in metrics.values()]
    assert "sync_dist=True" not in out.stderr


def test_command_line_ddp_runs_with_the_same_seed_give_the_same_metrics(cli_runs):
    """(c) Same seed, same sharding, same gradients: the same test metrics run to run."""
    results = []
    for out, runs in cli_runs:
        assert out.returncode == 0, out.stderr[-3000:]
        (folder,) = runs.iterdir()
        results.append(json.loads((folder / "test_metrics.json").read_text()))
    assert results[0] == results[1]

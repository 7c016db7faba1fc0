"""``train_examples: prefix``: one training row per train interaction (the prefix expansion of the
session-based papers and RecBole) for every causal sequential model."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data import from_dataframe
from recstudio.data.types import DATASET_TYPES
from recstudio.model.registry import get_model
from recstudio.utils.errors import ConfigError


@pytest.fixture(scope="module")
def split():
    # user a: items 1..6 in time order, user b: 7, 8, 9 (loo: the last two are valid / test)
    rows = [("a", f"i{k}", 1.0, float(k)) for k in range(1, 7)] + [("b", f"i{k}", 1.0, float(k)) for k in (7, 8, 9)]
    return from_dataframe(pd.DataFrame(rows, columns=["u", "i", "r", "t"]), "u", "i", "r", "t").split(split_mode="loo")


def decoded(split, ids):
    return [split.dataset.decode_items(np.asarray([i]))[0] if i else 0 for i in ids]


def test_seq_rows_carry_the_next_item_at_the_latest_position(split):
    ds = DATASET_TYPES["seq"](split, max_seq_len=3, padding="left", target_seq=True)
    batch = ds[torch.arange(len(ds))]
    seqs = [decoded(split, r) for r in batch["item_seq"].tolist()]
    targets = [decoded(split, r) for r in batch["target_seq"].tolist()]
    # user a trains on i1..i4 (i5 valid, i6 test): rows predict i2, i3, i4 from the items before them
    assert seqs[:3] == [[0, 0, "i1"], [0, "i1", "i2"], ["i1", "i2", "i3"]]
    assert targets[:3] == [[0, 0, "i2"], [0, 0, "i3"], [0, 0, "i4"]]
    assert len(ds) == 3  # user b trains on i7 only: no row has an earlier item
    right = DATASET_TYPES["seq"](split, max_seq_len=3, padding="right", target_seq=True)
    b = right[torch.arange(2)]
    assert b["target_seq"].tolist()[0][0] == b[split.dataset.iid_field].tolist()[0] and b["target_seq"][0, 1:].eq(0).all()
    assert "target_seq" not in DATASET_TYPES["seq"](split, max_seq_len=3)[torch.arange(1)]


@pytest.mark.parametrize("name,cfg", [
    ("SASRec", dict(embed_dim=8, n_layers=1, n_heads=1, dropout=0.0, max_seq_len=4)),
    ("SRGNN", dict(embed_dim=8, max_seq_len=4)),
])
def test_prefix_training_runs_and_counts_one_target_per_train_interaction(name, cfg, split, tmp_path):
    model, metrics = recstudio.run(model=name, dataset=split, train_examples="prefix", epochs=2,
                                   run_dir=str(tmp_path), quiet=True, **cfg)
    assert model.config["train_examples"] == "prefix" and all(math.isfinite(v) for v in metrics.values())
    ds = model._get_dataset_class()(split, **model._dataset_kwargs())
    assert int((ds[torch.arange(len(ds))]["target_seq"] > 0).sum()) == 3


def test_prefix_graph_model_encodes_only_the_needed_prefixes(split):
    model = get_model("SRGNN")(embed_dim=8, max_seq_len=4, quiet=True)
    model = model.build(model.context_from(split)).eval()
    seq = torch.tensor([[0, 1, 2, 3], [0, 0, 4, 5]])
    positions = torch.tensor([[False, False, True, True], [False, False, False, True]])
    with torch.no_grad():
        torch.testing.assert_close(model.position_output(seq, positions), model.sequence_output(seq)[positions])


def test_prefix_examples_are_for_causal_models_and_checked(split):
    bert = get_model("BERT4Rec")(embed_dim=8, n_layers=1, n_heads=1, max_seq_len=4, train_examples="prefix", quiet=True)
    with pytest.raises(ConfigError, match="train_examples='prefix' trains next-item prediction"):
        bert.build(bert.context_from(split))
    with pytest.raises(ConfigError, match="train_examples"):
        get_model("SASRec")(train_examples="prefixes", quiet=True)

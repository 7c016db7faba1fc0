"""The sequential zoo's own blocks (recstudio/model/family/seq_layers.py) and, for every model built on them or
on the plain sequential base here, that position t never sees a later item and that the evaluation query is
the training output at the last position."""
import numpy as np
import pandas as pd
import pytest
import torch

from recstudio.data import from_dataframe
from recstudio.model.base.meta import DataMeta
from recstudio.model.family.seq_layers import UserSequentialRecommender, causal_windows, prefix_mask, prefix_mean
from recstudio.model.registry import get_model

MODELS = ["NARM", "STAMP", "Caser", "NextItNet", "FPMC", "TransRec", "HGN", "HRM", "SHAN", "Fossil", "NPE"]
SMALL = dict(embed_dim=8, max_seq_len=10, quiet=True)


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{int(i)}", 1.0, float(t)) for u in range(20)
            for t, i in enumerate(rng.choice(np.arange(1, 31), size=int(rng.integers(5, 15)), replace=False))]
    return from_dataframe(pd.DataFrame(rows, columns=["u", "i", "r", "t"]), "u", "i", "r", "t").split(split_mode="loo")


def test_causal_windows_prefix_mask_and_mean():
    seq = torch.tensor([[0, 3, 4, 5]])
    assert causal_windows(seq, 3)[0].tolist() == [[0, 0, 0], [0, 0, 3], [0, 3, 4], [3, 4, 5]]
    assert prefix_mask(seq)[0].int().tolist() == [[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1]]
    x = torch.tensor([[[9.0], [1.0], [2.0], [6.0]]])
    assert prefix_mean(x, seq)[0, :, 0].tolist() == [0.0, 1.0, 1.5, 3.0]


def encode(model, seq, users):
    enc = model.query_encoder.encoder
    return enc(seq, users) if isinstance(model, UserSequentialRecommender) else enc(seq)


@pytest.mark.parametrize("name", MODELS)
def test_no_future_leakage_and_query_is_the_last_position(name, split):
    model = get_model(name)(**SMALL)
    model.build(DataMeta.from_split(split))
    model.eval()
    torch.manual_seed(0)
    n, L = model.meta.num_items, SMALL["max_seq_len"]
    seq = torch.randint(1, n, (4, L))
    seq[1, :3] = 0  # a left-padded row
    users = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        base = encode(model, seq, users)
        assert base.shape[:2] == (4, L) and torch.isfinite(base).all()
        assert base[1, :3].abs().sum() == 0  # padding positions are zero
        for t in range(L - 1):
            changed = seq.clone()
            changed[:, t + 1:] = torch.randint(1, n, (4, L - t - 1))
            torch.testing.assert_close(encode(model, changed, users)[:, :t + 1], base[:, :t + 1])
        batch = {"item_seq": seq, model.meta.uid_field: users}
        torch.testing.assert_close(model.encode_query(batch), base[:, -1])

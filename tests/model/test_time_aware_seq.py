"""Time-aware sequential models (`uses_time`): the batches' timestamps, TiSASRec's intervals and attention, HSTU's time bias."""
import numpy as np
import pandas as pd
import pytest
import torch

from recstudio.data import from_dataframe
from recstudio.data.types import EvalDataset
from recstudio.data.types.position_eval import PositionEvalDataset
from recstudio.data.types.seq import TIME_SEQ, SeqDataset
from recstudio.data.types.seq2seq import Seq2SeqDataset
from recstudio.model.registry import get_model
from recstudio.model.zoo.seq.tisasrec import TimeIntervalAttention, interval_matrix
from recstudio.utils.errors import ConfigError

SMALL = dict(embed_dim=8, n_layers=1, n_heads=1, max_seq_len=6, time_span=16, dropout=0.0, epochs=2,
             batch_size=16, eval_batch_size=16, quiet=True, early_stop_patience=2)


def timed_frame(n_users=12, seed=0):
    """Item ids and timestamps chosen so that the time of ``i{k}`` is 1000 * k + user offset: an item's time
    can be read back from its id."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = np.sort(rng.choice(np.arange(1, 30), size=int(rng.integers(5, 10)), replace=False))
        rows += [(f"u{u}", f"i{k}", 1.0, 1000.0 * k + u) for k in items]
    return pd.DataFrame(rows, columns=["u", "i", "r", "t"])


@pytest.fixture(scope="module")
def split():
    return from_dataframe(timed_frame(), "u", "i", "r", "t").split(split_mode="loo")


def assert_times_follow_items(split, seq, times, users):
    ds = split.dataset
    tokens = ds.decode_items(seq[seq > 0].numpy())
    expected = np.array([1000.0 * int(t[1:]) for t in tokens]) + np.array(
        [int(ds.decode_users(np.array([u]))[0][1:]) for u, row in zip(users.numpy(), seq) for x in row if x > 0])
    assert np.allclose(times[seq > 0].numpy(), expected)
    assert (times[seq == 0] == 0).all()


@pytest.mark.parametrize("mode", ["causal", "cloze"])
def test_training_batches_carry_the_inputs_timestamps(split, mode):
    ds = Seq2SeqDataset(split, max_seq_len=4, mode=mode, with_time=True, seed=0)
    batch = next(iter(ds.loader(64, shuffle=False)))
    seq = batch["item_seq"]
    if mode == "cloze":  # masked positions hold the mask token: compare the original items
        seq = torch.where(batch["target_seq"] > 0, batch["target_seq"], seq)
    assert batch[TIME_SEQ].dtype == torch.float64 and batch[TIME_SEQ].shape == seq.shape
    assert_times_follow_items(split, seq, batch[TIME_SEQ], batch[split.dataset.uid_field])
    assert TIME_SEQ not in next(iter(Seq2SeqDataset(split, max_seq_len=4).loader(8, shuffle=False)))


def test_prefix_and_evaluation_batches_carry_them_too(split):
    uid = split.dataset.uid_field
    for ds in (SeqDataset(split, max_seq_len=4, with_time=True), EvalDataset(split, "test", max_seq_len=4, with_time=True),
               PositionEvalDataset(split, "valid", max_seq_len=4, with_time=True)):
        batch = next(iter(ds.loader(64, shuffle=False)))
        assert_times_follow_items(split, batch["item_seq"], batch[TIME_SEQ], batch[uid])


def reference_intervals(seq, times, span):
    """The official preprocessing on one window: unit = smallest non-zero consecutive gap, rounded rescaling."""
    out = np.zeros((len(seq), len(seq)), dtype=np.int64)
    idx = [k for k, x in enumerate(seq) if x]
    t = [times[k] for k in idx]
    gaps = {b - a for a, b in zip(t, t[1:]) if b - a != 0}
    unit = min(gaps) if gaps else 1.0
    scaled = [int(round((x - min(t)) / unit)) for x in t] if t else []
    for a, i in enumerate(idx):
        for b, j in enumerate(idx):
            out[i, j] = min(abs(scaled[a] - scaled[b]), span)
    return out


def test_interval_matrix_matches_the_official_definition():
    rng = np.random.default_rng(3)
    seq = torch.tensor(rng.integers(1, 9, size=(20, 7)))
    for row in range(20):  # left padding of random length
        seq[row, : int(rng.integers(0, 7))] = 0
    times = torch.tensor(np.sort(rng.choice([0, 60, 60, 3600, 86400, 90000], size=(20, 7)), axis=1), dtype=torch.float64)
    times = times.masked_fill(seq == 0, 0.0) + (seq > 0) * torch.arange(20, dtype=torch.float64)[:, None] * 7
    got = interval_matrix(seq, times, span=16)
    for row in range(20):
        assert np.array_equal(got[row].numpy(), reference_intervals(seq[row].tolist(), times[row].tolist(), 16))


def test_attention_equals_the_naive_formula():
    """Eq. 5-6 with the [B, L, L, d] interval embeddings formed explicitly, several heads."""
    torch.manual_seed(0)
    B, L, d, h, S = 3, 5, 8, 2, 7
    attn = TimeIntervalAttention(d, h, dropout=0.0)
    xq, x = torch.randn(B, L, d), torch.randn(B, L, d)
    pos_k, pos_v, rel_k, rel_v = torch.randn(L, d), torch.randn(L, d), torch.randn(S, d), torch.randn(S, d)
    rel = torch.randint(0, S, (B, L, L))
    allowed = torch.ones(L, L, dtype=torch.bool).tril().expand(B, L, L)
    got = attn(xq, x, pos_k, pos_v, rel, rel_k, rel_v, allowed)
    q, k, v = attn.q(xq), attn.k(x) + pos_k, attn.v(x) + pos_v
    rk, rv = rel_k[rel], rel_v[rel]  # [B, L, L, d]
    out = torch.zeros(B, L, d)
    for head in range(h):
        sl = slice(head * d // h, (head + 1) * d // h)
        e = (q[:, :, None, sl] * (k[:, None, :, sl] + rk[..., sl])).sum(-1) / (d // h) ** 0.5
        a = torch.softmax(e.masked_fill(~allowed, float("-inf")), -1)
        out[..., sl] = (a[..., None] * (v[:, None, :, sl] + rv[..., sl])).sum(2)
    assert torch.allclose(got, out, atol=1e-5)


def test_the_timestamps_change_the_output_and_the_future_does_not(split):
    model = get_model("TiSASRec")(**SMALL)
    model.build(model.context_from(split))
    model.eval()
    seq = torch.tensor([[0, 3, 5, 7, 9, 11]])
    t = torch.tensor([[0.0, 10.0, 20.0, 30.0, 40.0, 50.0]], dtype=torch.float64)
    base = model.sequence_output(seq, t)
    later = t.clone()
    later[0, 3:] += 500.0  # a long break before the 4th item
    moved = model.sequence_output(seq, later)
    assert torch.allclose(base[0, :3], moved[0, :3], atol=1e-6)  # causal: earlier positions unchanged
    assert not torch.allclose(base[0, 3:], moved[0, 3:], atol=1e-4)
    assert (base[0, 0] == 0).all()  # padding position


def test_it_trains_evaluates_and_recommends_with_the_times(split, tmp_path):
    model = get_model("TiSASRec")(**SMALL)
    metrics = model.fit(split, run_dir=str(tmp_path / "run"))
    assert all(np.isfinite(v) for v in metrics.values()) and "ndcg@10" in metrics
    assert "history_times" in model.needs and model.meta.history_times is not None
    users = split.dataset.decode_users(np.array([1, 2]))
    top = model.recommend(list(users), k=3)
    assert len(top) == 2
    batch = model.query_batch(torch.tensor([1, 2]))
    assert TIME_SEQ in batch and batch[TIME_SEQ].dtype == torch.float64


def test_a_dataset_without_timestamps_is_refused_clearly():
    frame = timed_frame().drop(columns=["t"])
    split = from_dataframe(frame, "u", "i", "r").split(split_mode="loo")
    model = get_model("TiSASRec")(**SMALL)
    with pytest.raises(ConfigError, match="timestamps"):
        model.fit(split)


def test_hstu_reads_the_time_gaps_when_its_time_bias_is_on(split):
    from recstudio.model.zoo.seq.hstu import time_buckets
    cfg = dict(embed_dim=8, n_layers=1, max_seq_len=6, num_neg=4, dropout=0.0, quiet=True)
    model = get_model("HSTU")(**cfg)
    assert model.uses_time and "history_times" in model.needs
    model.build(model.context_from(split))
    model.eval()
    with torch.no_grad():  # a non-zero time bias, so that the gaps matter
        for layer in model.query_encoder.encoder.layers:
            layer.ts_bias.copy_(torch.linspace(-2.0, 2.0, len(layer.ts_bias)))
    seq = torch.tensor([[0, 3, 5, 7, 9, 11]])
    t = torch.tensor([[0.0, 10.0, 20.0, 30.0, 40.0, 50.0]], dtype=torch.float64)
    later = t.clone()
    later[0, 4:] += 1e6
    a, b = model.sequence_output(seq, t), model.sequence_output(seq, later)
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6)  # query 3 reads t_4: it changes, earlier ones do not
    assert not torch.allclose(a[0, 3:], b[0, 3:], atol=1e-4)
    buckets = time_buckets(t, 128)
    assert buckets.shape == (1, 6, 6) and buckets.max() <= 128
    plain = get_model("HSTU")(**cfg, time_bias=False)  # the position-only variant needs no time field
    assert not plain.uses_time and "history_times" not in plain.needs
    untimed = from_dataframe(timed_frame().drop(columns=["t"]), "u", "i", "r").split(split_mode="loo")
    plain.build(plain.context_from(untimed))
    assert plain.sequence_output(seq).shape == (1, 6, 8)

"""Dataset types: whole-batch indexing, loaders, negatives, sequences, CSR rows, evaluation batches."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from scipy.stats import spearmanr

from recstudio.data import from_dataframe
from recstudio.data.types import (DATASET_TYPES, ALSDataset, EvalDataset, IndexSampler, NegativeSampler,
                                  Seq2SeqDataset, SeqDataset, TripletDataset, UserDataset, csr_gather,
                                  csr_to_dense, gather_windows, to_device)
from recstudio.utils.errors import ConfigError, DataError

ML100K = Path(__file__).resolve().parents[2] / "datasets" / "ml-100k" / "u.data"


# ---- fixtures -------------------------------------------------------------------------------
def random_frame(num_users=40, num_items=30, per_user=(3, 20), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        k = rng.integers(*per_user)
        for t, i in enumerate(rng.choice(num_items, size=k, replace=False)):
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 6)), float(100 * u + t)))
    return pd.DataFrame(rows, columns=["u", "i", "r", "t"])


@pytest.fixture(scope="module")
def small():
    """40 users x 30 items with ratings, times, user and item features; 8:1:1 random split."""
    df = random_frame()
    users = pd.DataFrame({"u": [f"u{u}" for u in range(40)], "age": np.arange(40, dtype=float),
                          "r": np.ones(40)})  # 'r' collides with the rating field
    items = pd.DataFrame({"i": [f"i{i}" for i in range(30)], "genre": [["a", "b"], ["c"], []] * 10,
                          "price": np.linspace(1, 2, 30)})
    ds = from_dataframe(df, "u", "i", "r", "t", user_features=users, item_features=items)
    return ds.split(split_mode="user_entry")


@pytest.fixture(scope="module")
def seqs():
    """Known time-ordered sequences (rows given out of time order); loo split by time."""
    data = {"A": ["a1", "a2", "a3", "a4", "a5", "a6"], "B": ["b1", "b2", "b3"], "C": ["c1", "c2"]}
    rows = [(u, it, float(t)) for u, items in data.items() for t, it in enumerate(items)]
    df = pd.DataFrame(rows[::-1], columns=["u", "i", "t"])
    ds = from_dataframe(df, "u", "i", time="t")
    return ds, ds.split(split_mode="loo"), data


def ids(ds, names):
    return ds.encode_items(names).tolist()


def user_id(ds, name):
    return int(ds.encode_users([name])[0])


def all_batches(loader):
    return list(loader)


def cat(batches, key):
    return torch.cat([b[key] for b in batches])


# ---- samplers and loaders -------------------------------------------------------------------
def test_index_sampler_epochs_visit_every_row_once_and_repeat_with_seed():
    s = IndexSampler(103, 10, shuffle=True, seed=7)
    first = torch.cat(list(s))
    assert sorted(first.tolist()) == list(range(103)) and len(s) == 11
    assert not torch.equal(first, torch.arange(103))
    again = torch.cat(list(IndexSampler(103, 10, shuffle=True, seed=7)))
    assert torch.equal(first, again)
    assert not torch.equal(first, torch.cat(list(IndexSampler(103, 10, shuffle=True, seed=8))))
    s.set_epoch(1)
    assert not torch.equal(first, torch.cat(list(s)))
    dropped = list(IndexSampler(103, 10, shuffle=True, seed=7, drop_last=True))
    assert len(dropped) == 10 and all(len(b) == 10 for b in dropped)
    shards = [torch.cat(list(IndexSampler(103, 10, seed=7, num_replicas=2, rank=r))) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 51 and not set(shards[0].tolist()) & set(shards[1].tolist())


def test_loader_uses_batch_size_none_and_visits_each_row_once(small):
    tri = TripletDataset(small)
    loader = tri.loader(16, seed=3)
    assert loader.batch_size is None and isinstance(loader.sampler, IndexSampler)
    batches = all_batches(loader)
    assert len(batches) == len(loader) == -(-len(tri) // 16)
    pairs = sorted(zip(cat(batches, "u").tolist(), cat(batches, "i").tolist()))
    ds = small.dataset
    assert pairs == sorted(zip(ds.users[small.train].tolist(), ds.items[small.train].tolist()))
    # epochs advance (a different order), a new loader with the same seed repeats them
    second = all_batches(loader)
    assert not torch.equal(cat(batches, "u"), cat(second, "u"))
    replay = tri.loader(16, seed=3)
    assert torch.equal(cat(all_batches(replay), "i"), cat(batches, "i"))
    assert torch.equal(cat(all_batches(replay), "i"), cat(second, "i"))
    assert not torch.equal(cat(all_batches(tri.loader(16, seed=4)), "i"), cat(batches, "i"))
    ordered = all_batches(tri.loader(16, shuffle=False))
    assert torch.equal(cat(ordered, "u"), torch.from_numpy(ds.users[small.train]))
    assert all(len(b["u"]) == 16 for b in all_batches(tri.loader(16, drop_last=True)))


@pytest.mark.parametrize("name", sorted(DATASET_TYPES))
def test_every_type_builds_from_split_and_batches(small, name):
    cls = DATASET_TYPES[name]
    d = cls.from_split(small, "train", {"max_seq_len": 5, "num_neg": 2, "lr": 0.1, "embed_dim": 8})
    assert d.num_users == small.dataset.num_users and d.num_items == small.dataset.num_items
    batches = all_batches(d.loader(7))
    for b in batches:
        assert isinstance(b, dict) and all(torch.is_tensor(v) for v in b.values())
        assert set(b) == set(d.fields) or (name == "als" and set(b) == set(d.item_rows.fields))
    ids_key = small.dataset.uid_field
    if name != "als":
        assert sorted(cat(batches, ids_key).tolist()) == sorted(d.columns[ids_key].tolist())


@pytest.mark.parametrize("name", sorted(DATASET_TYPES))
@pytest.mark.parametrize("block_bytes", [1, 2000, 10 ** 9])
def test_block_gathered_batches_equal_indexing_each_batch(small, name, block_bytes, monkeypatch):
    """The main-process loader gathers columns once per block of batches; every batch must equal
    ``dataset[idx]`` of its own rows, key by key (blocks of one batch, of a few, of the whole epoch)."""
    from recstudio.data.types import base
    monkeypatch.setattr(base, "BLOCK_BYTES", block_bytes)
    d = DATASET_TYPES[name].from_split(small, "train", {"max_seq_len": 5, "num_neg": 2, "lr": 0.1, "embed_dim": 8})
    loader = d.loader(7, seed=5)
    for part in ([loader.users, loader.items] if name == "als" else [loader]):  # ALS: user rows, then item rows
        batches = list(iter(part))
        part.dataset.set_epoch(0)
        expected = [part.dataset[idx] for idx in part.sampler._my_batches(0)]
        assert len(batches) == len(expected) > 1
        for got, want in zip(batches, expected):
            assert got.keys() == want.keys()
            assert all(torch.equal(got[k], want[k]) for k in want)


def test_resident_device_and_to_device(small):
    tri = TripletDataset(small, num_neg=1, resident_device="cpu")
    assert all(v.device.type == "cpu" for v in tri.columns.values())
    b = tri[np.array([0, 2, 4])]
    assert len(b["u"]) == 3 and b["neg_item"].shape == (3, 1)
    moved = to_device(b, torch.device("cpu"))
    assert set(moved) == set(b) and all(torch.equal(moved[k], b[k]) for k in b)
    ev = EvalDataset(small, "test", max_seq_len=4, resident_device="cpu")
    assert next(iter(ev.loader(8)))["item_seq"].device.type == "cpu"


def test_workers_see_the_same_per_epoch_draws(small):
    tri = TripletDataset(small, num_neg=2)
    a = all_batches(tri.loader(32, seed=1))
    tri2 = TripletDataset(small, num_neg=2)
    loader = tri2.loader(32, seed=1, num_workers=2)
    b = all_batches(loader)
    assert all(torch.equal(x["neg_item"], y["neg_item"]) for x, y in zip(a, b))
    b1 = all_batches(loader)  # epoch 1: redrawn before the workers start
    tri.set_epoch(1)
    assert torch.equal(cat(b1, "neg_item").sort(0).values, tri.columns["neg_item"].sort(0).values)


# ---- TripletDataset ---------------------------------------------------------------------------
def test_triplet_fields_shapes_and_feature_join(small):
    ds = small.dataset
    tri = TripletDataset(small, num_neg=3)
    b = tri[torch.arange(5)]
    assert b["u"].dtype == torch.int64 and b["u"].shape == (5,)
    assert b["r"].dtype == torch.float32 and b["t"].dtype == torch.float64
    assert b["neg_item"].shape == (5, 3) and b["neg_item"].dtype == torch.int64
    # user feature 'r' does not clobber the rating: it becomes user_r
    assert "user_r" in b and torch.equal(b["r"], torch.from_numpy(ds.inter["r"][small.train[:5]]))
    assert torch.equal(b["age"], torch.from_numpy(ds.user_feat["age"][ds.users[small.train[:5]]]))
    assert b["genre"].shape == (5, ds.item_feat["genre"].shape[1])
    assert b["neg_price"].shape == (5, 3) and b["neg_genre"].shape == (5, 3, ds.item_feat["genre"].shape[1])
    assert torch.allclose(b["neg_price"], torch.from_numpy(ds.item_feat["price"][b["neg_item"].numpy()]))
    assert tri.vocab_size("neg_item") == ds.num_items and tri.vocab_size("genre") == ds.vocab_size("genre")
    plain = TripletDataset(small, join_features=False)
    assert set(plain[torch.arange(2)]) == {"u", "i", "r", "t"}
    test = TripletDataset(small, "test")
    assert len(test) == len(small.test)


def dense_split(num_users=300, num_items=25, seed=1):
    """Users who have interacted with most items: collisions are the rule, not the exception."""
    rng = np.random.default_rng(seed)
    rows = [(u, i) for u in range(num_users) for i in rng.choice(num_items, size=rng.integers(5, num_items - 1),
                                                                 replace=False)]
    df = pd.DataFrame(rows, columns=["u", "i"])
    return from_dataframe(df, "u", "i").split(split_mode="user_entry")


@pytest.mark.parametrize("mode", ["uniform", "popularity"])
def test_negatives_never_hit_train_positives(mode):
    split = dense_split()
    tri = TripletDataset(split, num_neg=5, neg_sampling=mode)
    train = split.dataset.interaction_matrix(split.train).tocsr()
    for epoch in range(3):
        tri.set_epoch(epoch)
        neg = tri.columns["neg_item"].numpy()
        users = np.repeat(tri.columns["u"].numpy(), 5)
        assert neg.min() >= 1 and neg.max() < split.dataset.num_items
        assert np.asarray(train[users, neg.ravel()]).sum() == 0


def test_uniform_negatives_are_uniform_over_non_positives():
    m = sp.csr_matrix(np.array([[0] * 8, [0, 1, 0, 1, 1, 0, 0, 1]], dtype=np.float32))
    s = NegativeSampler(m)
    draws = s.draw(np.ones(40000, dtype=np.int64), 1, torch.Generator().manual_seed(0)).view(-1).numpy()
    counts = np.bincount(draws, minlength=8)
    assert counts[[0, 1, 3, 4, 7]].sum() == 0
    assert np.all(np.abs(counts[[2, 5, 6]] / 40000 - 1 / 3) < 0.02)


def test_popularity_negatives_when_the_allowed_mass_is_tiny():
    # user 1 has the 9 popular items; its only negatives (10, 11) carry 2/9002 of the mass,
    # so most draws end in the exact per-user fallback after the rejection rounds
    m = sp.csr_matrix((np.ones(9, dtype=np.float32), (np.ones(9, dtype=int), np.arange(1, 10))), shape=(2, 12))
    counts = np.array([0] + [1000] * 9 + [1, 3])
    s = NegativeSampler(m, "popularity", counts, alpha=1.0)
    draws = s.draw(np.ones(400, dtype=np.int64), 2, torch.Generator().manual_seed(0)).view(-1).numpy()
    assert set(draws.tolist()) <= {10, 11} and 0.6 < (draws == 11).mean() < 0.9
    with pytest.raises(ConfigError):
        NegativeSampler(m, "popular")


def test_negatives_error_when_a_user_has_every_item():
    df = pd.DataFrame({"u": ["x"] * 4 + ["y"] * 2, "i": ["a", "b", "c", "d", "a", "b"]})
    split = from_dataframe(df, "u", "i").split(split_mode="user_entry", split_ratio=[1.0, 0.0])
    with pytest.raises(DataError, match="'x'.*all 4 items"):
        TripletDataset(split, num_neg=1)
    with pytest.raises(DataError, match="'x'"):
        TripletDataset(split, num_neg=1, neg_sampling="popularity")


def test_negatives_resample_is_seeded_per_epoch(small):
    tri = TripletDataset(small, num_neg=4)
    e0 = tri.columns["neg_item"].clone()
    tri.resample_negatives(1)
    e1 = tri.columns["neg_item"].clone()
    assert not torch.equal(e0, e1)
    tri.resample_negatives(0)
    assert torch.equal(tri.columns["neg_item"], e0)
    assert not torch.equal(TripletDataset(small, num_neg=4, seed=99).columns["neg_item"], e0)
    frozen = TripletDataset(small, num_neg=4, refresh_negatives=False)
    all_batches(frozen.loader(8))
    all_batches(frozen.loader(8))
    assert torch.equal(frozen.columns["neg_item"], e0)
    with pytest.raises(ConfigError):
        TripletDataset(small).resample_negatives()


def test_popularity_negatives_follow_popularity_on_ml100k():
    df = pd.read_csv(ML100K, sep="\t", names=["u", "i", "r", "t"])
    split = from_dataframe(df, "u", "i", "r", "t").split()
    tri = TripletDataset(split, num_neg=4, neg_sampling="popularity")
    ds = split.dataset
    pop = np.bincount(ds.items[split.train], minlength=ds.num_items)[1:]
    got = np.bincount(tri.columns["neg_item"].view(-1).numpy(), minlength=ds.num_items)[1:]
    assert spearmanr(pop, got).statistic > 0.9
    assert got[pop == 0].sum() == 0  # never-seen items are never drawn
    uni = np.bincount(TripletDataset(split, num_neg=4).columns["neg_item"].view(-1).numpy(),
                      minlength=ds.num_items)[1:]
    assert spearmanr(pop, uni).statistic < spearmanr(pop, got).statistic
    train = ds.interaction_matrix(split.train)
    users = np.repeat(tri.columns["u"].numpy(), 4)
    assert np.asarray(train[users, tri.columns["neg_item"].view(-1).numpy().copy()]).sum() == 0


# ---- SeqDataset ---------------------------------------------------------------------------------
def seq_rows(d):
    b = d[torch.arange(len(d))]
    return b, {(int(u), int(i)): (s.tolist(), int(n)) for u, i, s, n in
               zip(b[d.uid], b[d.iid], b["item_seq"], b["seq_len"])}


def test_seq_train_prefixes_left_and_right_with_truncation(seqs):
    ds, split, data = seqs
    A, B, C = (user_id(ds, x) for x in "ABC")
    a = ids(ds, data["A"])  # train a1..a4, valid a5, test a6
    left = SeqDataset(split, max_seq_len=2, padding="left")
    _, rows = seq_rows(left)
    assert rows[(A, a[1])] == ([0, a[0]], 1)
    assert rows[(A, a[2])] == ([a[0], a[1]], 2)
    assert rows[(A, a[3])] == ([a[1], a[2]], 2)  # truncated to the last 2
    assert (A, a[0]) not in rows  # no history
    assert len(rows) == 3 and B not in {u for u, _ in rows}  # B's and C's train is one item: no history
    right = SeqDataset(split, max_seq_len=3, padding="right")
    _, rows = seq_rows(right)
    assert rows[(A, a[1])] == ([a[0], 0, 0], 1)
    assert rows[(A, a[3])] == ([a[0], a[1], a[2]], 3)
    batch = right[torch.arange(len(right))]
    assert batch["item_seq"].dtype == torch.int64 and batch["seq_len"].dtype == torch.int64
    assert C not in batch["u"].tolist()


def test_seq_eval_rows_read_the_phase_history(seqs):
    ds, split, data = seqs
    A, B = user_id(ds, "A"), user_id(ds, "B")
    a, b = ids(ds, data["A"]), ids(ds, data["B"])
    _, test = seq_rows(SeqDataset(split, "test", max_seq_len=4))
    assert test[(A, a[5])] == ([a[1], a[2], a[3], a[4]], 4)  # train + valid, last 4
    assert test[(B, b[2])] == ([0, 0, b[0], b[1]], 2)
    _, valid = seq_rows(SeqDataset(split, "valid", max_seq_len=4, padding="right"))
    assert valid[(A, a[4])] == ([a[0], a[1], a[2], a[3]], 4)
    assert valid[(B, b[1])] == ([b[0], 0, 0, 0], 1)


def test_gather_windows_edges():
    flat = torch.tensor([0, 4, 5, 6])
    seq, n = gather_windows(flat, torch.tensor([1, 2, 4]), torch.tensor([4, 2, 4]), 2, "right")
    assert seq.tolist() == [[5, 6], [0, 0], [0, 0]] and n.tolist() == [2, 0, 0]
    with pytest.raises(ConfigError):
        gather_windows(flat, torch.tensor([1]), torch.tensor([2]), 2, "middle")


# ---- Seq2SeqDataset ---------------------------------------------------------------------------
def test_seq2seq_causal_shifts_both_paddings(seqs):
    ds, split, data = seqs
    A, B = user_id(ds, "A"), user_id(ds, "B")
    a, b = ids(ds, data["A"]), ids(ds, data["B"])
    left = Seq2SeqDataset(split, max_seq_len=2)
    got = {int(u): (s.tolist(), t.tolist(), int(n)) for u, s, t, n in
           zip(*(left[torch.arange(len(left))][k] for k in ("u", "item_seq", "target_seq", "seq_len")))}
    assert set(got) == {A}  # B and C have one train item: no (input, next) pair
    assert got[A] == ([a[1], a[2]], [a[2], a[3]], 2)  # last 3 of a1..a4, shifted
    wide = Seq2SeqDataset(split, max_seq_len=5)
    s = wide[torch.arange(1)]
    assert s["item_seq"].tolist() == [[0, 0, a[0], a[1], a[2]]]
    assert s["target_seq"].tolist() == [[0, 0, a[1], a[2], a[3]]] and s["seq_len"].tolist() == [3]
    right = Seq2SeqDataset(split, max_seq_len=5, padding="right")[torch.arange(1)]
    assert right["item_seq"].tolist() == [[a[0], a[1], a[2], 0, 0]]
    assert right["target_seq"].tolist() == [[a[1], a[2], a[3], 0, 0]] and right["seq_len"].tolist() == [3]
    with pytest.raises(ConfigError, match="EvalDataset"):
        Seq2SeqDataset(split, "test")


@pytest.mark.parametrize("padding", ["left", "right"])
def test_seq2seq_cloze_masks(small, padding):
    d = Seq2SeqDataset(small, max_seq_len=8, mode="cloze", mask_ratio=0.3, padding=padding)
    plain = Seq2SeqDataset(small, max_seq_len=8, mode="causal", padding=padding)
    token = d.mask_token
    assert token == small.dataset.num_items and d.num_tokens == small.dataset.num_items + 1
    b = d[torch.arange(len(d))]
    inp, tgt, n = b["item_seq"], b["target_seq"], b["seq_len"]
    masked = inp == token
    cols = torch.arange(8)
    valid = cols >= 8 - n[:, None] if padding == "left" else cols < n[:, None]
    assert not (masked & ~valid).any()  # only real positions are masked
    assert torch.equal(tgt > 0, masked)  # targets exactly at the masked positions
    assert masked.any(1).all()  # at least one mask per row
    assert ((inp > 0) == valid).all()
    # the unmasked sequence is the user's last train items
    full, _ = gather_windows(d.flat, d._lo, d._hi, 8, padding)
    assert torch.equal(torch.where(masked, tgt, inp), full)
    assert 0.15 < masked.sum().item() / valid.sum().item() < 0.45
    # redrawn each epoch, seeded
    d.set_epoch(1)
    e1 = d[torch.arange(len(d))]["item_seq"]
    assert not torch.equal(e1, inp)
    again = Seq2SeqDataset(small, max_seq_len=8, mode="cloze", mask_ratio=0.3, padding=padding)
    again.set_epoch(1)
    assert torch.equal(again[torch.arange(len(d))]["item_seq"], e1)
    assert len(plain) <= len(d)


# ---- UserDataset, EvalDataset, ALSDataset ---------------------------------------------------
def test_user_dataset_rows_equal_csr_rows(small):
    ds = small.dataset
    train = ds.interaction_matrix(small.train, "r").toarray()
    d = UserDataset(small, value="r")
    b = d[torch.arange(len(d))]
    assert b["history"].shape == (len(d), ds.num_items) and b["history"].dtype == torch.float32
    assert np.allclose(b["history"].numpy(), train[b["u"].numpy()])
    assert (b["history"][:, 0] == 0).all()
    assert sorted(b["u"].tolist()) == np.flatnonzero(train.sum(1)).tolist()
    test = UserDataset(small, "test")
    bt = test[torch.arange(len(test))]
    users = bt["u"].numpy()
    assert np.array_equal(users, small.eval_users("test"))
    assert np.array_equal(bt["history"].numpy(), small.history_matrix("test").toarray()[users])
    assert np.array_equal(bt["target"].numpy(), small.target_matrix("test").toarray()[users])
    sparse = UserDataset(small, "test", dense=False)[torch.arange(3)]
    h = csr_to_dense(sparse["history_indptr"], sparse["history_indices"], ds.num_items)
    assert np.array_equal(h.numpy(), small.history_matrix("test").toarray()[users[:3]])


def test_eval_dataset_matches_split_matrices_and_skips_users_without_targets():
    df = random_frame(num_users=30, seed=3)
    df = pd.concat([df, pd.DataFrame({"u": ["solo"], "i": ["i1"], "r": [3.0], "t": [1e6]})])
    ds = from_dataframe(df, "u", "i", "r", "t")
    split = ds.split(split_mode="loo")
    solo = user_id(ds, "solo")
    ev = EvalDataset(split, "test", max_seq_len=6)
    assert solo not in ev.columns["u"].tolist()  # one interaction: train only, no target
    assert np.array_equal(ev.columns["u"].numpy(), split.eval_users("test"))
    batches = all_batches(ev.loader(7))
    assert all(b["history_indptr"].shape == (len(b["u"]) + 1,) for b in batches)
    hist, targ = split.history_matrix("test"), split.target_matrix("test")
    for b in batches:
        users = b["u"].numpy()
        ref_h, ref_t = hist[users], targ[users]
        assert np.array_equal(b["history_indptr"].numpy(), ref_h.indptr)
        assert np.array_equal(b["history_indices"].numpy(), ref_h.indices)
        assert np.array_equal(b["target_indptr"].numpy(), ref_t.indptr)
        assert np.array_equal(b["target_indices"].numpy(), ref_t.indices)
        assert (np.diff(b["target_indptr"].numpy()) > 0).all()
        for u, s, n in zip(users, b["item_seq"], b["seq_len"]):
            rows = split.test_history[ds.users[split.test_history] == u]
            expect = ds.items[rows][-6:].tolist()
            assert int(n) == len(expect) and s.tolist() == [0] * (6 - len(expect)) + expect
    with pytest.raises(ConfigError):
        EvalDataset(split, "train")


def test_eval_dataset_user_split_uses_fold_in_history(small):
    split = small.dataset.split(split_mode="user", split_ratio=[0.6, 0.2, 0.2])
    ev = EvalDataset(split, "valid")
    b = ev[torch.arange(len(ev))]
    users = b["u"].numpy()
    assert not set(users) & set(small.dataset.users[split.train])
    h = csr_to_dense(b["history_indptr"], b["history_indices"], ev.num_items).numpy()
    assert np.array_equal(h, split.history_matrix("valid").toarray()[users]) and h.sum() > 0


def test_als_dataset_rows_rebuild_the_matrix_and_its_transpose(small):
    ds = small.dataset
    als = ALSDataset(small, value="r")
    ref = ds.interaction_matrix(small.train, "r")
    assert (als.user_matrix != ref).nnz == 0 and (als.item_matrix != ref.T).nnz == 0
    users, items = {}, {}
    for b in als.loader(9):
        side, key = (users, "u") if "u" in b else (items, "i")
        ptr, ind, val = b["indptr"].numpy(), b["indices"].numpy(), b["values"].numpy()
        for k, row in enumerate(b[key].tolist()):
            side[row] = (ind[ptr[k]:ptr[k + 1]].tolist(), val[ptr[k]:ptr[k + 1]].tolist())
    assert sorted(users) == list(range(1, ds.num_users)) and sorted(items) == list(range(1, ds.num_items))
    for u, (cols, vals) in users.items():
        assert cols == ref[u].indices.tolist() and np.allclose(vals, ref[u].data)
    for i, (rows, _) in items.items():
        assert rows == ref.T.tocsr()[i].indices.tolist()
    assert len(als.loader(9)) == len(all_batches(als.loader(9)))


def test_csr_gather_matches_scipy():
    rng = np.random.default_rng(0)
    m = sp.random(50, 40, density=0.1, format="csr", random_state=0, dtype=np.float32)
    rows = rng.integers(0, 50, 20)
    ptr, ind, val = csr_gather(torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(
        np.int64)), torch.from_numpy(rows), torch.from_numpy(m.data))
    ref = m[rows]
    assert np.array_equal(ptr.numpy(), ref.indptr) and np.array_equal(ind.numpy(), ref.indices)
    assert np.allclose(csr_to_dense(ptr, ind, 40, val).numpy(), ref.toarray())

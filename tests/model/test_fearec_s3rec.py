"""FEARec's frequency-domain blocks and S3Rec's pre-training stage against hand computation."""
import numpy as np
import pandas as pd
import pytest
import torch

from recstudio.data import from_dataframe
from recstudio.model.registry import get_model
from recstudio.model.zoo.seq.fearec import HybridAttention, band_autocorrelation, frequency_band
from recstudio.model.zoo.seq.s3rec import segment_views
from recstudio.utils.errors import ConfigError


def frame(n_users=30, n_items=40, seed=1):
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{int(i)}", 1.0, float(t)) for u in range(n_users)
            for t, i in enumerate(rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(5, 15)), replace=False))]
    items = pd.DataFrame({"i": [f"i{k}" for k in range(1, n_items + 1)],
                          "genre": [f"g{k % 5}" for k in range(1, n_items + 1)]})
    return pd.DataFrame(rows, columns=["u", "i", "r", "t"]), items


@pytest.fixture(scope="module")
def split():
    inter, items = frame()
    return from_dataframe(inter, "u", "i", "r", "t", item_features=items).split(split_mode="loo")


def built(name, split, **cfg):
    model = get_model(name)(**{"embed_dim": 8, "ffn_dim": 16, "max_seq_len": 8, "n_layers": 2, "n_heads": 2,
                               "quiet": True, **cfg})
    torch.manual_seed(0)
    return model.build(model.context_from(split))


# ---- FEARec ------------------------------------------------------------------------------------------
def test_band_autocorrelation_is_the_circular_cross_correlation():
    torch.manual_seed(0)
    q, k = torch.randn(3, 2, 10, dtype=torch.float64), torch.randn(3, 2, 10, dtype=torch.float64)
    direct = torch.stack([(torch.roll(q, -tau, -1) * k).sum(-1) for tau in range(10)], -1)
    assert torch.allclose(band_autocorrelation(q, k, torch.arange(6)), direct, atol=1e-10)
    # a band: the same as correlating the band-passed signals
    band = torch.tensor([1, 2, 3])
    keep = torch.zeros(6, dtype=torch.bool)
    keep[band] = True
    bp = lambda x: torch.fft.irfft(torch.fft.rfft(x, dim=-1) * keep, n=10, dim=-1)  # noqa: E731
    direct_band = torch.stack([(torch.roll(bp(q), -tau, -1) * bp(k)).sum(-1) for tau in range(10)], -1)
    assert torch.allclose(band_autocorrelation(q, k, band), direct_band, atol=1e-10)


def test_frequency_band_matches_the_reference_ramp():
    # max length 50 -> 26 frequencies; global mixer (ratio 0.6 > 1/2): window of int(26 * 0.4) .. 26, sliding by 10
    assert frequency_band(50, 0, 2, 0.6) == list(range(10, 26))
    assert frequency_band(50, 1, 2, 0.6) == list(range(0, 16))
    assert frequency_band(50, 0, 3, 1.0) == list(range(26))


def test_delay_aggregation_rolls_the_values_by_the_top_delays():
    att = HybridAttention(4, 1, 6, list(range(4)), topk_factor=1.0, spatial_ratio=0.0, spatial_band=False,
                          hidden_dropout=0.0, attn_dropout=0.0, eps=1e-12)
    assert att.top_k == 1  # int(ln 6)
    values = torch.arange(12, dtype=torch.float32).view(2, 1, 1, 6)
    corr = torch.zeros(2, 1, 1, 6)
    corr[0, ..., 2] = 5.0
    corr[1, ..., 4] = 5.0
    att.eval()  # per row: row 0 delay 2, row 1 delay 4, one delay -> weight 1
    out = att._delay_aggregate(values, corr)
    assert torch.equal(out[0], torch.roll(values[0], -2, -1))
    assert torch.equal(out[1], torch.roll(values[1], -4, -1))
    att.train()  # training: one delay for the batch, from the batch-mean correlation (a tie: the lower one)
    out = att._delay_aggregate(values, corr)
    assert torch.equal(out, torch.roll(values, -2, -1))


def test_fearec_position_never_sees_later_items(split):
    model = built("FEARec", split, dropout=0.0, attn_dropout=0.0, spatial_ratio=0.5).eval()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    other = seq.clone()
    other[0, 5:] = torch.tensor([9, 10, 11])
    with torch.no_grad():
        a, b = model.sequence_output(seq), model.sequence_output(other)
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)
    assert not torch.allclose(a[0, 5:], b[0, 5:])


def test_fearec_contrast_modes_and_validation(split):
    from recstudio.data.types import Seq2SeqDataset
    batch = next(iter(Seq2SeqDataset(split, "train", max_seq_len=8, seed=0).loader(32, shuffle=False)))
    losses = {}
    for mode in ("none", "un", "su", "us", "us_x"):
        m = built("FEARec", split, contrast=mode, cl_anchors=8, fredom_weight=0.0 if mode == "none" else 0.1)
        torch.manual_seed(1)
        losses[mode] = float(m.training_loss(batch).detach())
    assert all(np.isfinite(v) for v in losses.values())
    assert all(losses[m] != losses["none"] for m in ("un", "su", "us", "us_x"))  # the contrastive terms count
    with pytest.raises(ConfigError, match="contrast"):
        built("FEARec", split, contrast="xx")
    with pytest.raises(ConfigError, match="fredom_weight"):
        built("FEARec", split, contrast="none", fredom_weight=0.1)


# ---- S3Rec -------------------------------------------------------------------------------------------
def test_segment_views_mask_keep_and_replace_one_segment():
    torch.manual_seed(0)
    seq = torch.tensor([[0, 0, 5, 6, 7, 8, 9, 10], [0, 0, 0, 0, 0, 0, 0, 4], [1, 2, 3, 11, 12, 13, 14, 15]])
    flat = seq[seq != 0].tolist()
    for _ in range(30):
        m, p, n = segment_views(seq, 99)
        for r in range(3):
            real = seq[r] != 0
            k = int(real.sum())
            if k < 2:  # too short: unchanged
                assert torch.equal(m[r], seq[r]) and torch.equal(p[r], seq[r]) and torch.equal(n[r], seq[r])
                continue
            seg = (m[r] == 99).nonzero().view(-1)
            s = len(seg)
            assert 1 <= s <= k // 2 and torch.equal(seg, torch.arange(seg[0], seg[0] + s))  # one contiguous run
            assert torch.equal(m[r][~(m[r] == 99)], seq[r][~(m[r] == 99)])
            assert torch.equal(p[r][seg], seq[r][seg]) and bool((p[r][real & (m[r] != 99)] == 99).all())
            assert torch.equal(n[r][p[r] == 99], p[r][p[r] == 99]) and bool((n[r][~real] == 0).all())
            neg = n[r][seg].tolist()  # s consecutive items of the concatenated rows
            assert any(flat[i:i + s] == neg for i in range(len(flat) - s + 1))


def test_s3rec_pretraining_is_bidirectional_then_causal(split):
    model = built("S3Rec", split, item_attribute="genre", dropout=0.0, pretrain_epochs=1).eval()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    other = seq.clone()
    other[0, -1] = 9
    with torch.no_grad():
        assert not torch.allclose(model._bidirectional(seq)[0, 2], model._bidirectional(other)[0, 2])
        assert torch.allclose(model.sequence_output(seq)[0, 2], model.sequence_output(other)[0, 2], atol=1e-6)


def test_s3rec_attributes_are_multi_hot(split):
    model = built("S3Rec", split, item_attribute="genre")
    ids = torch.tensor([0, 1, 2, model.mask_token])
    hot = model._attributes(ids)
    assert hot.shape == (4, model.n_attributes)
    assert hot[0].sum() == 0 and hot[3].sum() == 0  # padding, mask token
    genre = model.item_feats(ids[1:3])["genre"]
    for row, g in zip(hot[1:3], genre.tolist()):
        assert row.nonzero().view(-1).tolist() == [g - 1]


def test_s3rec_pretraining_lowers_its_loss_and_runs_once(split):
    model = built("S3Rec", split, item_attribute="genre", pretrain_epochs=15, learning_rate=0.01)
    from recstudio.data.types import Seq2SeqDataset
    loader = Seq2SeqDataset(split, "train", max_seq_len=8, seed=0).loader(16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = model.pretrain(loader)
    assert len(history) == 15 and history[-1] < history[0]
    assert bool(model.pretrained)
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any("encoder" in k for k in changed) and any("aap_norm" in k for k in changed)
    assert not any(p.requires_grad for p in model.aap_norm.parameters())  # heads frozen for fine-tuning


def test_s3rec_validation(split):
    with pytest.raises(ConfigError, match="item_attribute"):
        built("S3Rec", split, item_attribute=None)
    with pytest.raises(ConfigError, match="not an item feature field"):
        built("S3Rec", split, item_attribute="colour")
    model = built("S3Rec", split, item_attribute=None, aap_weight=0.0, map_weight=0.0)
    assert torch.isfinite(model.pretrain_loss(torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]]))["total"])

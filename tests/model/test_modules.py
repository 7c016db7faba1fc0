"""Encoder modules: shapes, padding, gradients, causality, last-position gather."""
import pytest
import torch

from recstudio.data.fields import FieldType
from recstudio.model.module import (MLP, FeatureEncoder, GRUSeqEncoder, HistoryPooling, IdEmbedding,
                                    TransformerSeqEncoder, gather_last, last_positions)
from recstudio.utils.errors import ConfigError, DataError

D = 8


def all_params_get_grad(module, loss):
    module.zero_grad()
    loss.backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


# -- IdEmbedding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["normal", "xavier"])
def test_id_embedding_padding_and_bias(init):
    torch.manual_seed(0)
    emb = IdEmbedding(11, D, bias=True, init=init)
    ids = torch.tensor([[0, 3], [5, 0]])
    assert emb(ids).shape == (2, 2, D) and emb.get_bias(ids).shape == (2, 2)
    assert torch.equal(emb.weight[0], torch.zeros(D))
    (emb(ids).sum() + emb.get_bias(ids).sum()).backward()
    assert emb.embedding.weight.grad[0].abs().sum() == 0          # padding row never learns
    assert emb.embedding.weight.grad[3].abs().sum() > 0
    assert emb.bias.weight.grad[5].abs().sum() > 0
    assert torch.equal(IdEmbedding(4, 2).get_bias(ids), torch.zeros(2, 2))
    with pytest.raises(ConfigError):
        IdEmbedding(4, 2, init="uniform")


# -- MLP --------------------------------------------------------------------------------------------
def test_mlp_shapes_and_gradients():
    torch.manual_seed(0)
    mlp = MLP([D, 16, 4], activation="tanh", dropout=0.1, batch_norm=True)
    out = mlp(torch.randn(3, 5, D))
    assert out.shape == (3, 5, 4)
    all_params_get_grad(mlp, out.pow(2).sum())
    assert isinstance(list(MLP([4, 2], last_activation=True).layers)[-1], torch.nn.ReLU)
    assert isinstance(list(MLP([4, 3, 2]).layers)[-1], torch.nn.Linear)
    with pytest.raises(ConfigError, match="Did you mean"):
        MLP([4, 2], activation="rellu")


# -- FeatureEncoder ---------------------------------------------------------------------------------
FIELDS = {"item": ("token", 11), "genre": (FieldType.TOKEN_SEQ, 6), "price": ("float", 1),
          "vec": (FieldType.FLOAT_SEQ, 3)}


def feature_batch(lead=(2,)):
    torch.manual_seed(1)
    return {"item": torch.randint(1, 11, lead), "genre": torch.randint(0, 6, (*lead, 4)),
            "price": torch.rand(lead), "vec": torch.randn(*lead, 3), "label": torch.ones(lead)}


@pytest.mark.parametrize("combine", ["sum", "concat"])
def test_feature_encoder_shapes_and_gradients(combine):
    torch.manual_seed(0)
    enc = FeatureEncoder(FIELDS, D, combine=combine)
    assert enc(feature_batch()).shape == (2, D)
    assert enc(feature_batch((2, 5))).shape == (2, 5, D)        # features along a sequence
    b = feature_batch()
    b["genre"] = torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0]])
    all_params_get_grad(enc, enc(b).pow(2).sum())


def test_feature_encoder_token_seq_mean_ignores_padding():
    enc = FeatureEncoder({"genre": ("token_seq", 6)}, D)
    emb = enc.encoders["genre"].weight
    out = enc({"genre": torch.tensor([[2, 0, 4, 0], [0, 0, 0, 0], [2, 4, 0, 0]])})
    torch.testing.assert_close(out[0], (emb[2] + emb[4]) / 2)
    torch.testing.assert_close(out[0], out[2])
    assert torch.equal(out[1], torch.zeros(D))


def test_feature_encoder_errors_and_sharing():
    shared = IdEmbedding(11, D)
    enc = FeatureEncoder({"item": ("token", 11)}, D, embeddings={"item": shared})
    assert enc.encoders["item"] is shared
    with pytest.raises(DataError, match="lacks fields"):
        enc({"other": torch.tensor([1])})
    with pytest.raises(ConfigError, match="unknown field type"):
        FeatureEncoder({"x": ("tokens", 3)}, D)


# -- HistoryPooling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,with_query", [("mean", False), ("attention", False), ("attention", True)])
def test_history_pooling(mode, with_query):
    torch.manual_seed(0)
    pool = HistoryPooling(mode, D, with_query=with_query)
    ids = torch.tensor([[0, 0, 3, 4], [0, 0, 0, 0], [5, 0, 0, 0]])
    hist = torch.randn(3, 4, D, requires_grad=True)
    query = torch.randn(3, D) if with_query else None
    out = pool(hist, ids, query=query)
    assert out.shape == (3, D)
    assert torch.equal(out[1], torch.zeros(D))                      # empty history -> zeros
    torch.testing.assert_close(out[2], hist[2, 0])                  # a single item -> that item
    # padding positions contribute nothing, whatever they hold
    noisy = hist.detach().clone()
    noisy[ids == 0] = 1e3
    torch.testing.assert_close(pool(noisy, ids != 0, query=query), out.detach())
    loss = out.sum()
    if list(pool.parameters()):
        all_params_get_grad(pool, loss)
    else:
        loss.backward()
    assert torch.isfinite(hist.grad).all() and hist.grad[1].abs().sum() == 0
    if mode == "mean":
        torch.testing.assert_close(out[0], hist[0, 2:].mean(0))


def test_history_pooling_query_errors():
    with pytest.raises(ConfigError, match="needs a query"):
        HistoryPooling("attention", D, with_query=True)(torch.randn(1, 2, D), torch.tensor([[1, 2]]))
    with pytest.raises(ConfigError):
        HistoryPooling("max", D)


# -- sequence encoders ------------------------------------------------------------------------------
def make_transformer(causal=True):
    torch.manual_seed(0)
    enc = TransformerSeqEncoder(num_items=21, dim=D, max_len=6, n_layers=2, n_heads=2, dropout=0.1, causal=causal)
    return enc


LEFT = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]])
RIGHT = torch.tensor([[3, 4, 5, 6, 0, 0], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6], [9, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("factory", [make_transformer, lambda: GRUSeqEncoder(21, D, hidden_dim=6, n_layers=2, dropout=0.1)])
def test_seq_encoders_shapes_padding_gradients(factory):
    enc = factory()
    out = enc(LEFT)
    assert out.shape == (4, 6, D)
    assert torch.isfinite(out).all()
    assert torch.equal(out[LEFT == 0], torch.zeros(int((LEFT == 0).sum()), D))
    assert enc.encode_last(LEFT).shape == (4, D)
    all_params_get_grad(enc, (out ** 2).sum() + enc(RIGHT).pow(2).sum())


def test_transformer_is_causal():
    enc = make_transformer().eval()
    seq = torch.tensor([[0, 1, 2, 3, 4, 5]])
    changed = seq.clone()
    changed[0, 4:] = torch.tensor([17, 18])
    a, b = enc(seq), enc(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    # bidirectional: earlier positions do see the change
    bi = make_transformer(causal=False).eval()
    assert not torch.allclose(bi(seq)[:, :4], bi(changed)[:, :4])


def test_transformer_padding_does_not_leak_and_max_len():
    enc = make_transformer().eval()
    a = enc(torch.tensor([[0, 0, 3, 4, 5, 6]]))
    b = enc(torch.tensor([[0, 7, 3, 4, 5, 6]]))  # a real item instead of padding at position 1 changes later outputs
    assert not torch.allclose(a[:, 2:], b[:, 2:])
    # each row is encoded as if alone (the per-row padding mask lines up with the batch)
    batched = enc(LEFT)
    for i in range(len(LEFT)):
        torch.testing.assert_close(batched[i], enc(LEFT[i:i + 1])[0])
    with pytest.raises(ConfigError, match="max_len"):
        enc(torch.ones(1, 7, dtype=torch.long))


def test_gru_left_equals_right_padding():
    torch.manual_seed(0)
    enc = GRUSeqEncoder(21, D).eval()
    ol, orr = enc(LEFT), enc(RIGHT)
    torch.testing.assert_close(ol[LEFT != 0], orr[RIGHT != 0])
    torch.testing.assert_close(gather_last(ol, LEFT, "left"), gather_last(orr, RIGHT, "right"))


@pytest.mark.parametrize("padding", ["left", "right", "auto"])
def test_gather_last(padding):
    seq = LEFT if padding == "left" else RIGHT
    hidden = torch.arange(4 * 6, dtype=torch.float).view(4, 6, 1).expand(4, 6, 2)
    expected_pos = torch.tensor([5, 0, 5, 5]) if padding == "left" else torch.tensor([3, 0, 5, 0])
    got = gather_last(hidden, seq, padding)
    want = hidden[torch.arange(4), expected_pos].clone()
    want[1] = 0                                                          # empty row -> zeros
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(gather_last(hidden, LEFT, "auto"), gather_last(hidden, LEFT, "left"))
    torch.testing.assert_close(gather_last(hidden, RIGHT, "auto"), gather_last(hidden, RIGHT, "right"))
    with pytest.raises(ConfigError):
        last_positions(seq, "middle")

"""The behaviour-sequence CTR rankers (DIN, DIEN, BST) and FNN: the history each row reads, attention over padding,
Dice, DIEN's auxiliary loss and AUGRU, BST's use of the target, FNN's FM initialisation."""
import pytest
import torch

import recstudio
from recstudio.model.base.config import model_options
from recstudio.model.family.feature import HISTORY_POS
from recstudio.model.zoo.ctr.dien import AttentionGRUCell
from recstudio.model.zoo.ctr.din import Dice, LocalActivationUnit
from recstudio.utils.errors import ConfigError

TINY = {"quiet": True, "label_threshold": 4, "embed_dim": 4, "max_seq_len": 5, "mlp_hidden": [8]}


def built(name, split, **cfg):
    torch.manual_seed(0)
    cls = recstudio.get_model(name)
    options = model_options(cls)
    model = cls(**{**{k: v for k, v in TINY.items() if k in options or k == "quiet"}, **cfg})
    return model.build(model.context_from(split)).eval()


def a_batch(model, split, phase="train", size=64):
    return next(iter(model._eval_dataset(split, phase).loader(size)))


@pytest.fixture(scope="module")
def split(tiny_world):
    return tiny_world


# ---- the history ---------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["left", "right"])
def test_history_is_the_users_items_before_the_row_in_time_order(split, padding):
    model = built("DIN", split)
    batch = a_batch(model, split, "test")
    items, lens = model.history_before(batch, 5, padding)
    ds = split.dataset
    for r in range(len(items)):
        u, pos = int(batch[ds.uid_field][r]), int(batch[HISTORY_POS][r])
        lo = int(ds.user_offsets[u])
        want = [int(i) for i in ds.items[lo:lo + pos][-5:]]
        got = [int(i) for i in items[r] if i > 0]
        assert got == want and int(lens[r]) == len(want)
        assert (items[r, -len(want):] if padding == "left" else items[r, :len(want)]).tolist() == want or not want


# ---- DIN -------------------------------------------------------------------------------------------
def test_local_activation_unit_gives_padding_no_weight():
    torch.manual_seed(0)
    unit = LocalActivationUnit(3, [4], "sigmoid")
    keys, query = torch.randn(2, 4, 3), torch.randn(2, 3)
    mask = torch.tensor([[False, False, True, True], [False, False, False, False]])
    raw = unit(keys, query, mask, softmax=False)
    assert (raw[~mask] == 0).all() and (raw[mask] != 0).all()
    soft = unit(keys, query, mask, softmax=True)
    assert torch.allclose(soft[0].sum(), torch.tensor(1.0)) and (soft[0, :2] == 0).all()
    assert (soft[1] == 0).all()                                     # no history: no weight, no nan
    q = query[:, None].expand_as(keys)                               # the formula MLP([k, q, k - q, k * q])
    want = unit.mlp(torch.cat([keys, q, keys - q, keys * q], -1)).squeeze(-1)
    assert torch.allclose(raw[mask], want[mask])


@pytest.mark.parametrize("softmax", [False, True])
def test_din_score_ignores_what_sits_in_the_padding(split, softmax):
    model = built("DIN", split, attention_softmax=softmax)
    batch = a_batch(model, split, "test")
    with torch.no_grad():
        state = model.prepare_scoring(batch)
        assert (~state["mask"]).any()                                # some rows are padded
        target = model._item_part(batch[model.meta.iid_field])[0].flatten(-2)
        before = model.sequence_logit(state, target)
        noisy = dict(state, hist=torch.where(state["mask"][..., None], state["hist"],
                                             torch.randn_like(state["hist"]) * 5))
        assert torch.allclose(model.sequence_logit(noisy, target), before, atol=1e-6)


def test_din_interest_is_the_attention_weighted_sum_of_behaviours(split):
    model = built("DIN", split)
    batch = a_batch(model, split, "test", 8)
    with torch.no_grad():
        state = model.prepare_scoring(batch)
        target = model._item_part(batch[model.meta.iid_field])[0].flatten(-2)
        w = model.attention(state["hist"], target, state["mask"], False)
        interest = torch.einsum("nl,nlh->nh", w, state["hist"])
        want = model.mlp(torch.cat([state["query"], target, interest], -1)).squeeze(-1)
        assert torch.allclose(model.sequence_logit(state, target), want, atol=1e-6)


def test_dice_matches_its_formula_in_evaluation():
    torch.manual_seed(0)
    dice = Dice(3)
    x = torch.randn(64, 3) * 2 + 1
    dice.train()
    dice(x)                                                          # updates the running statistics
    dice.alpha.data = torch.tensor([0.1, -0.5, 2.0])
    dice.eval()
    mean, var = dice.norm.running_mean, dice.norm.running_var
    p = torch.sigmoid((x - mean) / torch.sqrt(var + 1e-8))
    assert torch.allclose(dice(x), p * x + (1 - p) * dice.alpha * x, atol=1e-5)


def test_behaviour_models_refuse_a_field_selection_without_item_fields(split):
    with pytest.raises(ConfigError, match="item"):
        built("DIN", split, feature_fields=["user_id", "gender"])


# ---- DIEN ------------------------------------------------------------------------------------------
def test_augru_step_matches_the_paper_and_zero_attention_keeps_the_state():
    torch.manual_seed(0)
    cell = AttentionGRUCell(3, 2, "augru")
    x, h, a = torch.randn(4, 3), torch.randn(4, 2), torch.tensor([0.0, 0.3, 0.7, 1.0])
    W, U = cell.x2h, cell.h2h
    gx, gh = W(x), U(h)
    r = torch.sigmoid(gx[:, :2] + gh[:, :2])
    u = torch.sigmoid(gx[:, 2:4] + gh[:, 2:4]) * a[:, None]
    cand = torch.tanh(gx[:, 4:] + r * gh[:, 4:])
    out = cell(x, h, a)
    assert torch.allclose(out, (1 - u) * h + u * cand, atol=1e-6)
    assert torch.allclose(out[0], h[0])                              # attention 0: the state is kept
    plain = AttentionGRUCell(3, 2, "gru")
    plain.load_state_dict(cell.state_dict())
    # a = 1: a GRU step; torch's GRUCell gates the old state by z = 1 - u, i.e. u's pre-activation negated
    gru = torch.nn.GRUCell(3, 2)
    flip = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, 1.0])
    gru.weight_ih.data, gru.bias_ih.data = W.weight.data * flip[:, None], W.bias.data * flip
    gru.weight_hh.data, gru.bias_hh.data = U.weight.data * flip[:, None], U.bias.data * flip
    assert torch.allclose(cell(x[3:], h[3:], a[3:]), gru(x[3:], h[3:]), atol=1e-6)
    assert torch.allclose(plain(x, h, a), gru(x, h), atol=1e-6)


def test_dien_evolution_stops_at_each_rows_last_behaviour(split):
    model = built("DIEN", split)
    torch.manual_seed(1)
    interest, target = torch.randn(3, 4, model.item_dim), torch.randn(3, model.item_dim)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True], [False] * 4])
    with torch.no_grad():
        full = model.evolve(interest, target, mask)
        short = model.evolve(interest[:, :2], target, mask[:, :2])
        noisy = model.evolve(torch.where(mask[..., None], interest, torch.randn_like(interest)), target, mask)
    assert torch.allclose(full[0], short[0], atol=1e-6)              # padding after the last step: no effect
    assert torch.allclose(noisy, full, atol=1e-6)
    assert (full[2] == 0).all()                                     # no history: the zero state


def test_dien_auxiliary_loss_is_finite_nonzero_and_trains_the_extractor(split):
    model = built("DIEN", split).train()
    batch = a_batch(model, split, "train")
    state = model.prepare_scoring(batch)
    aux = model.auxiliary_loss(state)
    assert torch.isfinite(aux) and aux.item() > 0.1
    aux.backward()
    assert model.extractor.weight_ih_l0.grad.abs().sum() > 0
    assert model.evolver.x2h.weight.grad is None                     # the aux loss reads the extractor only
    model.zero_grad()
    torch.manual_seed(3)
    with_aux = model.training_loss(batch)
    off = built("DIEN", split, aux_weight=0.0).train()
    off.load_state_dict(model.state_dict())
    target = off.loss_fn(pos_score=off.forward(batch), label=off.ctr_labels(batch))
    assert torch.allclose(off.training_loss(batch), target)
    torch.manual_seed(3)
    assert torch.allclose(with_aux, target + model.auxiliary_loss(model.prepare_scoring(batch)), atol=1e-5)


def test_dien_negatives_are_never_the_positive(split):
    model = built("DIEN", split)
    pos = torch.arange(1, model.meta.num_items).repeat(50)
    n = model.meta.num_items - 1
    neg = (pos - 1 + torch.randint(1, n, pos.shape)) % n + 1
    assert ((neg >= 1) & (neg <= n)).all() and (neg != pos).all()


@pytest.mark.parametrize("mode", ["augru", "agru", "aigru", "gru"])
def test_dien_variants_score(split, mode):
    model = built("DIEN", split, evolution=mode, aux_hidden=[4])
    batch = a_batch(model, split, "test", 8)
    with torch.no_grad():
        assert torch.isfinite(model.forward(batch)).all()
    with pytest.raises(ConfigError, match="evolution"):
        built("DIEN", split, evolution="lstm")


# ---- BST -------------------------------------------------------------------------------------------
def test_bst_encodes_the_behaviours_in_the_light_of_the_target(split):
    model = built("BST", split, attn_dropout=0.0)
    batch = a_batch(model, split, "test", 16)
    with torch.no_grad():
        state = model.prepare_scoring(batch)
        rows = state["mask"].any(1)
        t1 = model._item_part(torch.full_like(batch[model.meta.iid_field], 1))[0].flatten(-2)
        t2 = model._item_part(torch.full_like(batch[model.meta.iid_field], 2))[0].flatten(-2)
        o1, o2 = model.encode(state["hist"], state["mask"], t1), model.encode(state["hist"], state["mask"], t2)
        behaviours1, behaviours2 = o1[:, :-1][rows], o2[:, :-1][rows]
        assert not torch.allclose(behaviours1, behaviours2)         # the target attends with the behaviours
        assert (o1[:, :-1][~state["mask"]] == 0).all()               # padding zeroed
        assert not torch.allclose(model.sequence_logit(state, t1), model.sequence_logit(state, t2))
        noisy = dict(state, hist=torch.where(state["mask"][..., None], state["hist"],
                                             torch.randn_like(state["hist"])))
        assert torch.allclose(model.sequence_logit(noisy, t1), model.sequence_logit(state, t1), atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "target"])
def test_bst_poolings_score(split, pooling):
    model = built("BST", split, pooling=pooling)
    with torch.no_grad():
        assert torch.isfinite(model.forward(a_batch(model, split, "test", 8))).all()


def test_bst_refuses_heads_that_do_not_divide_the_item_width(split):
    with pytest.raises(ConfigError, match="n_heads"):
        built("BST", split, n_heads=3)


# ---- FNN -------------------------------------------------------------------------------------------
def test_fnn_initialises_its_field_rows_from_a_trained_fm(split, tmp_path):
    fm = recstudio.get_model("FM")(epochs=1, batch_size=32, **{k: v for k, v in TINY.items()
                                                               if k not in ("max_seq_len", "mlp_hidden")})
    fm.fit(split, run_dir=tmp_path / "fm")
    path = fm.save(tmp_path / "fm.pt")
    fnn = built("FNN", split, pretrained_fm=str(path))
    assert fnn.embed_dim == 5
    for key in fnn.used_fields:
        row = fnn.embedding.state_dict()
        names = [n for n in row if n.split(".")[1] == key]
        for name in names:
            rest = name.split(".", 2)[2]
            v = fm.state_dict()[f"embedding.embed.{key}.{rest}"]
            w = fm.state_dict()[f"embedding.weights.{key}.{rest}"]
            got = row[name]
            axis = [a for a in range(got.dim()) if got.shape[a] != v.shape[a]][0]
            assert torch.allclose(got.narrow(axis, 0, w.shape[axis]), w)
            assert torch.allclose(got.narrow(axis, w.shape[axis], v.shape[axis]), v)
    with pytest.raises(ConfigError, match="embed_dim"):
        built("FNN", split, pretrained_fm=str(path), embed_dim=6)
    with pytest.raises(ConfigError, match="cannot read"):
        built("FNN", split, pretrained_fm=str(tmp_path / "missing.pt"))


def test_fnn_is_an_mlp_over_the_concatenated_field_rows(split):
    model = built("FNN", split)
    batch = a_batch(model, split, "test", 8)
    with torch.no_grad():
        q, _ = model.prepare_scoring(batch)
        i, _ = model._item_part(batch[model.meta.iid_field])
        want = model.bias + model.mlp(torch.cat([q, i], -2).flatten(-2)).squeeze(-1)
        assert torch.allclose(model.forward(batch), want, atol=1e-6)
    assert all(n.startswith("embed.") for n, _ in model.embedding.named_parameters())   # no linear term

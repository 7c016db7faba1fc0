"""Self-supervised social models: MHCN's motif channels and SEPT's user views, checked against counts done by
hand on tiny networks."""
import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import recstudio
from recstudio.data import from_atomic

from recstudio.model.zoo.social.mhcn import motif_channels, triangle_motifs
from recstudio.utils.errors import ConfigError


def directed(n, edges):
    """0/1 ``n x n`` CSR with ``S[u, v] = 1`` for every ``(u, v)`` in edges (``u`` links to ``v``)."""
    rows, cols = zip(*edges)
    return sp.csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(n, n))


def mutual(*pairs):
    return [e for u, v in pairs for e in ((u, v), (v, u))]


# one triangle of each of Benson et al.'s seven motifs on users 0, 1, 2 (hand-drawn from their Fig. 1 /
# MHCN's Table 1): which links make it, and the motif it is
TRIANGLES = {
    "A1": [(0, 1), (1, 2), (2, 0)],                          # directed cycle
    "A2": mutual((0, 1)) + [(1, 2), (2, 0)],                 # cycle through one mutual link
    "A3": mutual((0, 1), (1, 2)) + [(2, 0)],                 # two mutual links and a one-way one
    "A4": mutual((0, 1), (1, 2), (0, 2)),                    # all mutual
    "A5": [(0, 1), (1, 2), (0, 2)],                          # feed-forward: 0 -> 1 -> 2 and 0 -> 2
    "A6": mutual((1, 2)) + [(0, 1), (0, 2)],                 # 0 points at both ends of a mutual link
    "A7": mutual((1, 2)) + [(1, 0), (2, 0)],                 # both ends of a mutual link point at 0
}


@pytest.mark.parametrize("motif", sorted(TRIANGLES))
def test_each_triangle_is_counted_once_by_its_own_motif(motif):
    got = triangle_motifs(directed(3, TRIANGLES[motif]))
    ones = np.ones((3, 3)) - np.eye(3)            # one instance, containing each of the three pairs
    for name, m in got.items():
        np.testing.assert_array_equal(m.toarray(), ones if name == motif else np.zeros((3, 3)), err_msg=name)


def test_motif_counts_of_a_hand_built_network():
    # users 0..5: a directed 3-cycle 0 -> 1 -> 2 -> 0 and two all-mutual triangles {2, 3, 4}, {3, 4, 5}
    # sharing the link 3 - 4; 0 -> 5 is a link in no triangle
    S = directed(6, [(0, 1), (1, 2), (2, 0), (0, 5)] + mutual((2, 3), (3, 4), (2, 4), (3, 5), (4, 5)))
    got = triangle_motifs(S)
    A1 = np.zeros((6, 6))
    for u, v in itertools.permutations([0, 1, 2], 2):
        A1[u, v] = 1
    A4 = np.zeros((6, 6))
    for tri in ([2, 3, 4], [3, 4, 5]):
        for u, v in itertools.permutations(tri, 2):
            A4[u, v] += 1
    assert A4[3, 4] == 2 and A4[2, 5] == 0       # the shared link lies in two triangles
    np.testing.assert_array_equal(got["A1"].toarray(), A1)
    np.testing.assert_array_equal(got["A4"].toarray(), A4)
    for name in ("A2", "A3", "A5", "A6", "A7"):
        assert got[name].nnz == 0, name
    H_s, _, _ = motif_channels(S, sp.csr_matrix((6, 2)))
    np.testing.assert_array_equal(H_s.toarray(), A1 + A4)


def test_the_seven_motifs_add_up_to_the_common_neighbours_of_linked_users():
    rng = np.random.default_rng(0)
    n = 30
    S = sp.csr_matrix((rng.random((n, n)) < 0.15).astype(float))
    S.setdiag(0)
    S.eliminate_zeros()
    A = ((S + S.T) > 0).astype(float)
    expected = (A @ A).multiply(A).toarray()
    total = sum(m.toarray() for m in triangle_motifs(S).values())
    np.testing.assert_array_equal(total, expected)
    assert expected.sum() > 0


def test_joint_and_purchase_channels_count_common_items():
    # users 0..3, items 0..2 (a, b, c); 0 <-> 1 mutual, 1 -> 2 one-way, 3 unlinked
    S = directed(4, mutual((0, 1)) + [(1, 2)])
    Y = sp.csr_matrix(np.array([[1, 1, 0],     # 0: a b
                                [1, 1, 1],     # 1: a b c
                                [0, 1, 1],     # 2: b c
                                [1, 1, 0]]))   # 3: a b
    H_s, H_j, H_p = motif_channels(S, Y)
    assert H_s.nnz == 0                                  # no social triangle
    joint = np.zeros((4, 4))
    joint[0, 1] = joint[1, 0] = 2                        # M8: mutual friends sharing a, b
    joint[1, 2] = joint[2, 1] = 2                        # M9: one-way link, sharing b, c
    np.testing.assert_array_equal(H_j.toarray(), joint)
    purchase = np.zeros((4, 4))
    purchase[0, 3] = purchase[3, 0] = 2                  # M10: unlinked, a and b in common
    purchase[1, 3] = purchase[3, 1] = 2
    np.testing.assert_array_equal(H_p.toarray(), purchase)          # pairs with one common item dropped
    _, _, H_p1 = motif_channels(S, Y, purchase_min_common=1)
    purchase[0, 2] = purchase[2, 0] = purchase[2, 3] = purchase[3, 2] = 1
    np.testing.assert_array_equal(H_p1.toarray(), purchase)
    with pytest.raises(ConfigError):
        motif_channels(S, Y, purchase_min_common=0)


def test_a_reciprocal_network_has_only_the_all_mutual_triangle():
    # lastfm-2k lists every friendship both ways: M4 is the only social motif, and M9 never occurs
    S = directed(4, mutual((0, 1), (1, 2), (0, 2), (2, 3)))
    got = triangle_motifs(S)
    assert [k for k, m in got.items() if m.nnz] == ["A4"]
    Y = sp.csr_matrix(np.ones((4, 2)))
    _, H_j, H_p = motif_channels(S, Y)
    np.testing.assert_array_equal(H_j.toarray(), 2 * ((S + S.T) > 0).toarray())
    expected = np.zeros((4, 4))
    expected[0, 3] = expected[3, 0] = expected[1, 3] = expected[3, 1] = 2
    np.testing.assert_array_equal(H_p.toarray(), expected)


def write_atomic(folder, inter, net):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.inter").write_text("user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in inter))
    (folder / "toy.net").write_text("source_id:token\ttarget_id:token\n" + "".join(f"{a}\t{b}\n" for a, b in net))
    return from_atomic(folder, rating_field=None, time_field=None)


def built(name, ds, **cfg):
    model = recstudio.get_model(name)(**{"embed_dim": 8, "quiet": True, "epochs": 1, **cfg})
    return model.build(model.context_from(ds.split()))


@pytest.fixture
def toy(tmp_path):
    # a -> b -> c -> a (a directed 3-cycle), c <-> d mutual; every user has 8 of 10 items
    rng = np.random.default_rng(1)
    inter = [(u, f"i{i}") for u in "abcde" for i in rng.choice(10, size=8, replace=False)]
    return write_atomic(tmp_path / "toy", inter, [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "c")])


def test_mhcn_buffers_are_the_row_normalised_channels(toy):
    model = built("MHCN", toy, n_layers=1)
    uid = {t: int(toy.encode_users([t])[0]) for t in "abcde"}
    H_s = model.H_s.to_dense().numpy()
    expected = np.zeros_like(H_s)
    for u, v in itertools.permutations("abc", 2):          # one M1 instance; c - d lies in no triangle
        expected[uid[u], uid[v]] = 0.5
    np.testing.assert_allclose(H_s, expected)
    train = model.meta.train_matrix().toarray()
    common = train @ train.T
    np.fill_diagonal(common, 0)
    linked = np.zeros_like(common)
    for u, v in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]:
        linked[uid[u], uid[v]] = linked[uid[v], uid[u]] = 1
    joint = common * linked
    purchase = common * (1 - linked) * (common >= 2)
    purchase[0] = purchase[:, 0] = 0
    for h, counts in ((model.H_j, joint), (model.H_p, purchase)):
        rows = counts.sum(1, keepdims=True)
        np.testing.assert_allclose(h.to_dense().numpy(), np.divide(counts, rows, out=np.zeros_like(counts),
                                                                   where=rows > 0), rtol=1e-6, atol=1e-7)


def test_mhcn_one_layer_equals_hand_computation(toy):
    model = built("MHCN", toy, n_layers=1)
    torch.manual_seed(0)
    with torch.no_grad():   # random gates and attention, so that every term shows
        for p in model.parameters():
            p.normal_(0, 0.5)
        model.query_encoder.embedding.weight[0] = 0
        model.item_encoder.weight[0] = 0
    model.eval()
    P0 = model.query_encoder.embedding.weight.detach().double().numpy()
    Q0 = model.item_encoder.weight.detach().double().numpy()

    def lin(m):
        return m.weight.detach().double().numpy(), m.bias.detach().double().numpy()

    def gate(m, x):
        w, b = lin(m.linear)
        return x / (1 + np.exp(-(x @ w.T + b)))

    W = model.attention.mat.detach().double().numpy()
    a = model.attention.vec.detach().double().numpy()

    def att(*cs):
        s = np.stack([(c @ W * a).sum(1) for c in cs])
        s = np.exp(s - s.max(0))
        s = s / s.sum(0)
        return sum(w[:, None] * c for w, c in zip(s, cs))

    def norm(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    Y = model.meta.train_matrix().toarray()
    du, di = Y.sum(1, keepdims=True), Y.sum(0, keepdims=True)
    R = np.divide(Y, np.sqrt(du * di), out=np.zeros_like(Y), where=Y > 0)
    H = [h.to_dense().double().numpy() for h in model.channel_adj]
    chans = [gate(model.gates[c], P0) for c in range(3)]
    simple = gate(model.gates[3], P0)
    mixed = att(*chans) + simple / 2
    users = att(*[c + norm(h @ c) for h, c in zip(H, chans)]) + (simple + norm(R @ Q0)) / 2
    items = Q0 + norm(R.T @ mixed)
    with torch.no_grad():
        np.testing.assert_allclose(model.user_vectors().double().numpy(), users, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(model.item_vectors().double().numpy(), items, rtol=1e-4, atol=1e-5)


def test_mhcn_self_supervised_loss_ranks_true_hyperedges(toy):
    model = built("MHCN", toy, n_layers=1, ssl_weight=1.0)
    z = torch.randn(model.meta.num_users, 8)
    z[0] = 0
    loss = model.hierarchical_mim(z, model.H_j, model.H_j_t)
    assert torch.isfinite(loss) and loss > 0
    # softplus terms: 3 per real user; a zero embedding table gives exactly 3 ln 2 per user
    zero = model.hierarchical_mim(torch.zeros_like(z), model.H_j, model.H_j_t)
    assert zero.item() == pytest.approx(3 * np.log(2) * (model.meta.num_users - 1), rel=1e-6)
    with pytest.raises(ConfigError, match="ssl_weight"):
        built("MHCN", toy, ssl_weight=-1.0)


def test_csr_product_gradient_equals_dense():
    from recstudio.model.module.graph import to_torch_csr
    from recstudio.model.zoo.social.mhcn import csr_mm
    a = sp.random(6, 5, density=0.4, random_state=0, dtype=np.float64)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = csr_mm(to_torch_csr(a).double(), to_torch_csr(a.T).double(), x)
    w = torch.randn(6, 3, dtype=torch.float64)
    (y * w).sum().backward()
    dense = torch.as_tensor(a.toarray())
    torch.testing.assert_close(y, dense @ x)
    torch.testing.assert_close(x.grad, dense.T @ w)


# ---- SEPT ----------------------------------------------------------------------------------------
def test_sept_views_count_shared_friends_and_items():
    from recstudio.model.zoo.social.sept import user_views
    # friendships 0-1, 0-2, 1-2, 2-3, 0-3 (triangles {0, 1, 2} and {0, 2, 3}); 3 -> 0 given one way only;
    # user 4 has no friend
    S = directed(5, mutual((0, 1), (0, 2), (1, 2), (2, 3)) + [(3, 0)])
    Y = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1], [1, 1, 1]]))
    friend, sharing = user_views(S, Y)
    f = np.eye(5)
    for (u, v), shared in {(0, 1): 1, (0, 2): 2, (1, 2): 1, (2, 3): 1, (0, 3): 1}.items():
        f[u, v] = f[v, u] = shared                         # common friends of two friends
    np.testing.assert_array_equal(friend.toarray(), f)
    s = np.eye(5)
    for (u, v), shared in {(0, 1): 1, (0, 2): 2, (1, 2): 1, (2, 3): 1, (0, 3): 0}.items():
        s[u, v] = s[v, u] = shared                         # common items of two friends
    np.testing.assert_array_equal(sharing.toarray(), s)


def test_sept_neighbour_discrimination_equals_hand_computation(toy):
    model = built("SEPT", toy, ssl_tau=0.5)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    aug = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    pos = torch.tensor([[0, 2], [1, 0], [2, 1]])
    s = (z @ aug.T / 0.5).numpy()
    expected = sum(-np.log(np.exp(s[u, pos[u]]).sum() / np.exp(s[u]).sum()) for u in range(3))
    assert model.neighbour_discrimination(z, aug, pos).item() == pytest.approx(expected, rel=1e-5)


def test_sept_perturbed_graph_drops_edges_symmetrically(toy):
    model = built("SEPT", toy, drop_ratio=0.5)
    adj = model.perturbed_adjacency().to_dense()
    torch.testing.assert_close(adj, adj.T)
    n_users = model.meta.num_users
    train_edges = model.meta.train_matrix().nnz
    friendships = model._social_edges.nnz
    ui = int((adj[:n_users, n_users:] != 0).sum())
    uu = int((adj[:n_users, :n_users] != 0).sum())
    assert ui == int(train_edges * 0.5) and uu == 2 * int(friendships * 0.5)
    # redrawn: another call draws another subset
    assert not torch.equal(adj, model.perturbed_adjacency().to_dense())


def test_sept_warm_up_trains_the_recommender_alone(toy):
    model = built("SEPT", toy, warmup_epochs=1, ssl_weight=1.0)
    batch = {model.meta.uid_field: torch.tensor([1, 2, 3, 1])}
    assert not model.tri_training_active()                # epoch 0 < warmup 1
    assert model.social_loss(batch).item() == 0.0
    model = built("SEPT", toy, warmup_epochs=0, ssl_weight=1.0, instance_cnt=2)
    loss = model.social_loss(batch)
    assert torch.isfinite(loss) and loss.item() > 0
    with pytest.raises(ConfigError, match="social_symmetric"):
        built("SEPT", toy, social_symmetric=False)
    with pytest.raises(ConfigError, match="drop_ratio"):
        built("SEPT", toy, drop_ratio=1.0)


def test_sept_each_view_is_labelled_by_the_other_two():
    from recstudio.model.zoo.social.sept import pseudo_positives
    # 2 anchors x 4 unlabeled users; view 0 alone would pick user 0, but views 1 and 2 agree on user 3 / 1
    probs = [torch.tensor([[0.70, 0.10, 0.10, 0.10], [0.10, 0.10, 0.70, 0.10]]),
             torch.tensor([[0.10, 0.20, 0.30, 0.40], [0.25, 0.40, 0.05, 0.30]]),
             torch.tensor([[0.05, 0.30, 0.20, 0.45], [0.20, 0.50, 0.10, 0.20]])]
    pos = pseudo_positives(probs, 2)
    # view 0: mean of views 1, 2 = [[.075, .25, .25, .425], [.225, .45, .075, .25]]
    assert pos[0][0].tolist()[0] == 3 and pos[0][0].tolist()[1] in (1, 2)    # .425, then a tie at .25
    assert pos[0][1].tolist() == [1, 3]                                        # .45, then .25
    # view 1: mean of views 0, 2 = [[.375, .2, .15, .275], [.15, .3, .4, .15]]
    assert pos[1].tolist() == [[0, 3], [2, 1]]
    # view 2: mean of views 0, 1 = [[.4, .15, .2, .25], [.175, .25, .375, .2]]
    assert pos[2].tolist() == [[0, 3], [2, 1]]

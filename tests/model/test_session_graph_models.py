"""SR-GNN / GC-SAN session graphs and RepeatNet's mixture: the vectorised blocks against direct references."""
import numpy as np
import pytest
import torch

import recstudio
from recstudio.model.zoo.seq.srgnn import all_prefixes, session_graph


def reference_graph(row):
    """The original SR-GNN construction for one row (numpy loop): nodes = np.unique, edge u->v set to 1,
    A_in = A^T / in-degree of the row's node, A_out = A / out-degree."""
    row = np.asarray(row)
    L = len(row)
    node = np.unique(row)
    adj = np.zeros((L, L))
    for a, b in zip(row[:-1], row[1:]):
        if a and b:
            adj[np.where(node == a)[0][0], np.where(node == b)[0][0]] = 1
    a_in = adj.T / np.maximum(adj.sum(0), 1)[:, None]
    a_out = adj / np.maximum(adj.sum(1), 1)[:, None]
    alias = [np.where(node == i)[0][0] for i in row]
    return alias, np.pad(node, (0, L - len(node))), a_in, a_out


def test_session_graph_matches_the_loop_construction():
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(1, 6, (40, 9), generator=gen)  # few ids: many repeats and self-loops
    lengths = torch.randint(0, 10, (40,), generator=gen)
    seq = seq.masked_fill(torch.arange(9) < 9 - lengths.unsqueeze(1), 0)  # left padding, some empty rows
    alias, nodes, a_in, a_out = session_graph(seq)
    for r in range(seq.size(0)):
        ref_alias, ref_nodes, ref_in, ref_out = reference_graph(seq[r].tolist())
        assert alias[r].tolist() == list(ref_alias)
        assert nodes[r].tolist() == list(ref_nodes)
        np.testing.assert_allclose(a_in[r].numpy(), ref_in, atol=1e-6)
        np.testing.assert_allclose(a_out[r].numpy(), ref_out, atol=1e-6)


def test_all_prefixes_are_the_left_padded_prefixes():
    seq = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    prefixes, real = all_prefixes(seq)
    expected = []
    for b, t in real.nonzero().tolist():
        p = seq[b, :t + 1].tolist()
        expected.append([0] * (5 - len(p)) + p)
    assert prefixes.tolist() == expected


@pytest.mark.parametrize("name", ["SRGNN", "GCSAN"])
def test_training_output_at_each_position_is_the_query_of_its_prefix(name, make_split, tmp_path):
    """No leak from later items: the training vector at position t is the evaluation query of the prefix."""
    model = recstudio.get_model(name)(epochs=1, embed_dim=8, max_seq_len=6, quiet=True)
    model.fit(make_split(0, n_users=12, n_items=15, length=6), run_dir=tmp_path)
    model.eval()
    seq = torch.tensor([[0, 0, 3, 4, 3, 7], [1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        out = model.sequence_output(seq)
        for t in range(6):
            prefix = torch.nn.functional.pad(seq[:, :t + 1], (5 - t, 0))
            q = model.encode_query({"item_seq": prefix})
            torch.testing.assert_close(out[:, t], q.masked_fill(seq[:, t:t + 1] == 0, 0.0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("joint", [False, True])
def test_repeatnet_training_probability_is_the_ranking_distribution(joint, make_split, tmp_path):
    model = recstudio.get_model("RepeatNet")(epochs=1, embed_dim=8, hidden_dim=8, max_seq_len=6, joint_train=joint,
                                            quiet=True)
    model.fit(make_split(0, n_users=12, n_items=15, length=6), run_dir=tmp_path)
    model.eval()
    seq = torch.tensor([[0, 0, 3, 4, 3, 7], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        logp = model.encode_query({"item_seq": seq})
        torch.testing.assert_close(logp.exp().sum(1), torch.ones(3))
        core = model.query_encoder.core
        rows, cols = torch.arange(2), torch.full((2,), 5)
        mode, alpha_r, logits = core(seq[:2], rows, cols)
        target = torch.tensor([3, 9])  # a repeat and an explore target
        p_r = (alpha_r * (seq[:2] == target[:, None])).sum(-1)
        p_e = torch.softmax(logits, -1).gather(1, target[:, None]).squeeze(1)
        torch.testing.assert_close(mode[:, 0] * p_r + mode[:, 1] * p_e, logp[:2].exp().gather(1, target[:, None]).squeeze(1))
    model.train()
    batch = {"item_seq": seq[:2], "target_seq": torch.cat([seq[:2, 1:], target[:, None]], 1)}
    loss = model.training_loss(batch)
    assert torch.isfinite(loss)

"""EASE's closed form and WRMF's alternating least squares against direct computations."""
import numpy as np
import pytest
import torch

import recstudio
from recstudio.model.base.meta import DataMeta
from recstudio.model.registry import get_model


@pytest.fixture(scope="module")
def split(make_split):
    return make_split(3, n_users=25, n_items=30, length=(5, 15))


def test_ease_matches_the_formula(split, tmp_path):
    model = get_model("EASE")(reg_weight=5.0, quiet=True)
    model.fit(split, run_dir=tmp_path)
    X = split.matrix("train").toarray()[:, 1:]
    X[X > 0] = 1
    P = np.linalg.inv(X.T @ X + 5.0 * np.eye(X.shape[1]))
    B = np.eye(X.shape[1]) - P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    learned = model.item_encoder.weight.numpy()[1:, 1:]
    np.testing.assert_allclose(learned, B, rtol=1e-4, atol=1e-5)
    assert np.allclose(np.diag(learned), 0)
    batch = model.query_batch(torch.arange(1, 6))
    scores = model.score_users(batch).numpy()[:, 1:]
    hist = np.zeros((5, X.shape[1]))
    for r, u in enumerate(range(1, 6)):
        items = split.dataset.items[split.dataset.user_offsets[u]:split.dataset.user_offsets[u + 1]]
        hist[r, items - 1] = 1
    np.testing.assert_allclose(scores, hist @ B, rtol=1e-4, atol=1e-4)


def test_wrmf_row_solve_equals_normal_equations(split):
    model = get_model("WRMF")(embed_dim=4, alpha=3.0, reg_weight=0.5, quiet=True)
    model.build(DataMeta.from_split(split))
    Y = torch.randn(split.dataset.num_items, 4, dtype=torch.float64)
    indptr, indices = torch.tensor([0, 3, 3, 5]), torch.tensor([2, 5, 7, 1, 9])
    values = torch.tensor([1.0, 2.0, 1.0, 1.0, 3.0])
    x, _ = model.solve_rows(Y, indptr, indices, values)
    for r in range(3):
        c = torch.ones(Y.shape[0], dtype=torch.float64)
        p = torch.zeros(Y.shape[0], dtype=torch.float64)
        cols = indices[indptr[r]:indptr[r + 1]]
        c[cols] = 1 + 3.0 * values[indptr[r]:indptr[r + 1]].double()
        p[cols] = 1.0
        A = Y.T @ (c[:, None] * Y) + 0.5 * torch.eye(4, dtype=torch.float64)
        expected = torch.linalg.solve(A, Y.T @ (c * p))
        torch.testing.assert_close(x[r], expected)


def test_wrmf_training_loss_decreases_and_recommends(split, tmp_path):
    model, metrics = recstudio.run(model="WRMF", dataset=split, embed_dim=8, epochs=4, early_stop_patience=10,
                                   quiet=True, run_dir=str(tmp_path))
    losses = __import__("pandas").read_csv(model.run_dir / "logs" / "metrics.csv")["train/loss"].dropna().tolist()
    assert len(losses) >= 3 and losses[-1] < losses[0]
    assert not [p for p in model.parameters() if p.requires_grad]

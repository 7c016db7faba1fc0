"""Known answers of the neighbourhood models (ItemKNN, UserKNN, RP3beta / P3alpha, SparseEASE) on a 4 x 4
binary matrix, similarities computed by hand:

    X = [[1, 1, 0, 0],     item counts c = [3, 3, 2, 2]
         [1, 1, 1, 0],     co-occurrences g01 = 2, g02 = 1, g03 = 1, g12 = 2, g13 = 1, g23 = 1
         [0, 1, 1, 1],     user counts [2, 3, 3, 2]
         [1, 0, 0, 1]]
"""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recstudio.model.family.neighbourhood import SparseMatrix, knn_similarity, random_walk_weights
from recstudio.model.zoo.general.ease import ease_weights
from recstudio.model.zoo.general.sparseease import sparse_ease_weights
from recstudio.utils.errors import ConfigError

X = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 0, 1]], dtype=np.float32))
R6 = 1 / np.sqrt(6)


@pytest.mark.parametrize("block_entries", [4, 1 << 20])  # one column per block, or all at once
def test_item_cosine_all_neighbours(block_entries):
    W = knn_similarity(X, k=4, block_entries=block_entries).toarray()
    want = np.array([[0, 2 / 3, R6, R6], [2 / 3, 0, 2 * R6, R6], [R6, 2 * R6, 0, 0.5], [R6, R6, 0.5, 0]])
    np.testing.assert_allclose(W, want, atol=1e-5)


def test_item_cosine_top1_keeps_each_columns_nearest():
    W = knn_similarity(X, k=1, block_entries=8).toarray()
    # column 0: s10 = 2/3 beats 1/sqrt6; column 1: s21 = 2/sqrt6; column 2: s12; column 3: s23 = 1/2
    want = np.zeros((4, 4))
    want[1, 0], want[2, 1], want[1, 2], want[2, 3] = 2 / 3, 2 * R6, 2 * R6, 0.5
    np.testing.assert_allclose(W, want, atol=1e-5)


def test_item_shrink_jaccard_and_asymmetric_cosine():
    W = knn_similarity(X, k=4, shrink=1.0).toarray()
    assert W[0, 1] == pytest.approx(2 / (3 + 1), abs=1e-5)
    J = knn_similarity(X, k=4, similarity="jaccard").toarray()
    want = np.array([[0, .5, .25, .25], [.5, 0, 2 / 3, .25], [.25, 2 / 3, 0, 1 / 3], [.25, .25, 1 / 3, 0]])
    np.testing.assert_allclose(J, want, atol=1e-5)
    A = knn_similarity(X, k=4, similarity="asymmetric_cosine", asymmetric_alpha=1.0).toarray()
    # alpha = 1: g_ij / c_i (row i the neighbour): W[0, 2] = 1/3, W[2, 0] = 1/2
    assert A[0, 2] == pytest.approx(1 / 3, abs=1e-5) and A[2, 0] == pytest.approx(0.5, abs=1e-5)


def test_user_cosine_and_scores():
    W = knn_similarity(X.T, k=1).toarray()  # column u: u's nearest user
    assert W[1, 0] == pytest.approx(2 * R6, abs=1e-5) and np.count_nonzero(W[:, 0]) == 1
    S = W.T  # user 0's only neighbour is user 1 -> score = s01 * X[1]
    np.testing.assert_allclose((S @ X.toarray())[0], 2 * R6 * np.array([1, 1, 1, 0]), atol=1e-5)


def test_p3alpha_and_rp3beta_rows():
    P3 = random_walk_weights(X, k=4, alpha=1.0).toarray()
    # W[0] = P_iu[0] @ P_ui = 1/3 (x_u0/2 + x_u1/3 + x_u3/2) = [4/9, 5/18, 1/9, 1/6], diagonal zeroed
    np.testing.assert_allclose(P3[0], [0, 5 / 18, 1 / 9, 1 / 6], atol=1e-7)
    RP3 = random_walk_weights(X, k=4, alpha=1.0, beta=1.0).toarray()
    np.testing.assert_allclose(RP3[0], [0, 5 / 54, 1 / 18, 1 / 12], atol=1e-7)  # columns / pop [3, 3, 2, 2]
    RP3n = random_walk_weights(X, k=4, alpha=1.0, beta=1.0, normalize=True).toarray()
    np.testing.assert_allclose(RP3n[0], [0, 0.4, 0.24, 0.36], atol=1e-7)
    top1 = random_walk_weights(X, k=1, alpha=1.0).toarray()
    np.testing.assert_allclose(top1[0], [0, 5 / 18, 0, 0], atol=1e-7)  # rows keep their k largest
    with pytest.raises(ConfigError):
        random_walk_weights(X, k=4, alpha=0.0)


def test_sparse_ease_is_ease_with_full_support():
    np.testing.assert_allclose(sparse_ease_weights(X, 2.0, k=3).toarray(), ease_weights(X, 2.0), atol=1e-10)
    B = sparse_ease_weights(X, 2.0, k=1).toarray()
    assert (np.count_nonzero(B, axis=0) <= 1).all()


def test_sparse_matrix_product_and_state_dict_round_trip():
    W = knn_similarity(X, k=2)
    m = SparseMatrix(4, 4, keep_rows=True)
    m.set(W)
    x = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(m.right_multiply(x).numpy(), x.numpy() @ W.toarray(), atol=1e-6)
    np.testing.assert_allclose(m.dense_rows(torch.tensor([2, 0])).numpy(), W.toarray()[[2, 0]], atol=1e-6)
    fresh = SparseMatrix(4, 4, keep_rows=True)
    fresh.load_state_dict(m.state_dict())  # the empty buffers take the saved nnz
    np.testing.assert_allclose(fresh.right_multiply(x).numpy(), m.right_multiply(x).numpy())
    with pytest.raises(ConfigError):
        knn_similarity(X, k=0)
    with pytest.raises(ConfigError):
        knn_similarity(X, k=2, similarity="pearson")


def test_sparse_ease_dense_and_sparse_gram_paths_agree():
    Y = sp.random(50, 30, density=0.3, format="csr", random_state=0)
    Y.data[:] = 1.0
    dense = sparse_ease_weights(Y, 5.0, k=10, block_entries=1 << 20).toarray()  # G held dense
    blocks = sparse_ease_weights(Y, 5.0, k=10, block_entries=100).toarray()    # X_N^T X_N per item
    np.testing.assert_allclose(dense, blocks, atol=1e-10)

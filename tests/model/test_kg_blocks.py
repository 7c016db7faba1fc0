"""TransH and TransD triple scorers (recstudio.model.module.kg): hand-computed scores and projections."""
import pytest
import torch

from recstudio.model.module.kg import KG_SCORERS, TransD, TransH
from recstudio.utils.errors import ConfigError


def test_transh_projects_onto_the_hyperplane_and_scores_by_hand():
    scorer = TransH(num_relations=2, dim=2)
    with torch.no_grad():
        scorer.normal.weight[1] = torch.tensor([0.0, 2.0])    # unit normal (0, 1) after normalisation
        scorer.relation.weight[1] = torch.tensor([1.0, 0.0])
    h, t = torch.tensor([[1.0, 5.0]]), torch.tensor([[3.0, -7.0]])
    rel = torch.tensor([1])
    # h_r = (1, 0), t_r = (3, 0): h_r + d_r - t_r = (-1, 0)
    assert torch.allclose(scorer.project(h, rel), torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(scorer(h, rel, t), torch.tensor([-1.0]))
    squared = TransH(num_relations=2, dim=2, squared=True)
    squared.load_state_dict(scorer.state_dict())
    t2 = torch.tensor([[4.0, 1.0]])                          # h_r + d_r - t_r = (-2, 0)
    assert torch.allclose(squared(h, rel, t2), torch.tensor([-4.0]))
    # the projection is orthogonal to the normal, and projecting twice changes nothing
    x = torch.randn(5, 2)
    r = torch.ones(5, dtype=torch.long)
    once = scorer.project(x, r)
    assert torch.allclose(once[:, 1], torch.zeros(5), atol=1e-6)
    assert torch.allclose(scorer.project(once, r), once, atol=1e-6)


def test_transh_padding_relation_is_the_identity():
    scorer = TransH(num_relations=3, dim=4)
    x = torch.randn(3, 4)
    assert torch.allclose(scorer.project(x, torch.zeros(3, dtype=torch.long)), x)


def test_transd_dynamic_mapping_by_hand():
    scorer = TransD(num_relations=2, dim=2)
    with torch.no_grad():
        scorer.relation_proj.weight[1] = torch.tensor([1.0, 1.0])
        scorer.relation.weight[1] = torch.tensor([0.0, 1.0])
    # h = (1, 2), h_p = (1, 0): h_r = h + (h_p . h) r_p = (1, 2) + 1 * (1, 1) = (2, 3)
    # t = (2, 0), t_p = (0, 1): t_r = t + 0 * r_p = (2, 0)
    h, t = torch.tensor([[1.0, 2.0, 1.0, 0.0]]), torch.tensor([[2.0, 0.0, 0.0, 1.0]])
    rel = torch.tensor([1])
    assert torch.allclose(scorer.project(h, rel), torch.tensor([[2.0, 3.0]]))
    # h_r + r - t_r = (0, 4)
    assert torch.allclose(scorer(h, rel, t), torch.tensor([-4.0]))
    # the mapping matrix form M = r_p e_p^T + I gives the same projection
    x = torch.randn(4, 4)
    r = torch.ones(4, dtype=torch.long)
    M = scorer.relation_proj.weight[1].view(2, 1) * x[:, None, 2:] + torch.eye(2)
    assert torch.allclose(scorer.project(x, r), (M @ x[:, :2, None]).squeeze(-1), atol=1e-6)


def test_transd_relation_dim_pads_or_truncates():
    wide = TransD(num_relations=2, dim=2, relation_dim=3)
    with torch.no_grad():
        wide.relation_proj.weight.zero_()
    assert torch.allclose(wide.project(torch.tensor([[1.0, 2.0, 5.0, 5.0]]), torch.tensor([1])),
                          torch.tensor([[1.0, 2.0, 0.0]]))
    narrow = TransD(num_relations=2, dim=3, relation_dim=2)
    with torch.no_grad():
        narrow.relation_proj.weight.zero_()
    assert torch.allclose(narrow.project(torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0, 0.0]]), torch.tensor([1])),
                          torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ConfigError, match="2 \\* dim"):
        narrow.project(torch.zeros(1, 3), torch.tensor([1]))


@pytest.mark.parametrize("cls, width", [(TransH, 4), (TransD, 8)])
def test_corrupted_scores_match_forward_and_train(cls, width):
    torch.manual_seed(0)
    scorer = cls(num_relations=3, dim=4)
    h, tp, tn = (torch.randn(6, width, requires_grad=True) for _ in range(3))
    rel = torch.tensor([1, 2, 1, 2, 1, 0])
    pos, neg, vectors = scorer.corrupted_scores(h, rel, tp, tn)
    assert torch.allclose(pos, scorer(h, rel, tp), atol=1e-6)
    assert torch.allclose(neg, scorer(h, rel, tn), atol=1e-6)
    assert len(vectors) == 4 and vectors[0].shape == (6, 4)
    (neg - pos).sum().backward()
    assert all(p.grad is not None for p in scorer.parameters())


def test_registry_names():
    assert KG_SCORERS["transh"] is TransH and KG_SCORERS["transd"] is TransD

"""Losses: hand-computed values, shapes, stability, logQ properties, registry."""
import math

import pytest
import torch

from recstudio.model.loss import (LOSSES, BCELoss, BPRLoss, CCLLoss, HingeLoss, InfoNCELoss, Loss, MSELoss,
                                  PointwiseBCELoss, SampledSoftmaxLoss, SoftmaxLoss, WARPLoss, WRMFLoss,
                                  build_loss)
from recstudio.utils.errors import ConfigError

POS = torch.tensor([2.0, -1.0])
NEG = torch.tensor([[1.0, 3.0], [0.0, -2.0]])


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def close(a, b, tol=1e-5):
    return abs(float(a) - float(b)) < tol


# ----------------------------------------------------------------------------- hand values
def test_bpr_hand_value():
    expected = -(math.log(sig(1)) + math.log(sig(-1))) / 2 - (math.log(sig(-1)) + math.log(sig(1))) / 2
    assert close(BPRLoss()(POS, NEG), expected / 2)


def test_hinge_hand_value():
    # row 0: max(0, 1-2+1)=0, max(0, 1-2+3)=2 -> 1 ; row 1: max(0, 1+1+0)=2, max(0, 1+1-2)=0 -> 1
    assert close(HingeLoss(margin=1.0)(POS, NEG), 1.0)
    assert close(HingeLoss(margin=0.0, reduction="sum")(POS, NEG), 0.5 + 0.5)


def test_bce_hand_value():
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus
    row0 = sp(-2) + sp(1) + sp(3)
    row1 = sp(1) + sp(0) + sp(-2)
    assert close(BCELoss()(POS, NEG), (row0 + row1) / 2)
    mean0 = sp(-2) + (sp(1) + sp(3)) / 2
    mean1 = sp(1) + (sp(0) + sp(-2)) / 2
    assert close(BCELoss(neg_reduction="mean")(POS, NEG), (mean0 + mean1) / 2)


def test_bce_pointwise_with_labels():
    label = torch.tensor([1.0, 0.0])
    expected = (-math.log(sig(2)) - math.log(1 - sig(-1))) / 2
    assert close(BCELoss()(POS, label=label), expected)
    assert close(PointwiseBCELoss()(POS, label=label.long()), expected)
    assert PointwiseBCELoss.pointwise and not PointwiseBCELoss.needs_negatives


def test_softmax_hand_value_and_padding():
    all_score = torch.tensor([[5.0, 1.0, 2.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    pos_index = torch.tensor([2, 1])
    row0 = math.log(math.e ** 1 + math.e ** 2 + 1) - 2
    row1 = math.log(3.0)
    assert close(SoftmaxLoss(padding_idx=0)(all_score=all_score, pos_index=pos_index), (row0 + row1) / 2)
    masked = all_score.clone()
    masked[:, 0] = float("-inf")
    assert close(SoftmaxLoss()(all_score=masked, pos_index=pos_index), (row0 + row1) / 2)
    # pos_score in place of pos_index
    assert close(SoftmaxLoss()(pos_score=torch.tensor([2.0, 0.0]), all_score=masked), (row0 + row1) / 2)
    # temperature divides the scores
    t = SoftmaxLoss(temperature=2.0)(all_score=masked, pos_index=pos_index)
    assert close(t, SoftmaxLoss()(all_score=masked / 2, pos_index=pos_index))


def test_sampled_softmax_hand_value():
    lp = torch.log(torch.tensor([0.5, 0.25]))
    lq = torch.log(torch.tensor([[0.25, 0.25], [0.5, 0.125]]))
    row0 = [2 - math.log(0.5), 1 - math.log(0.25), 3 - math.log(0.25)]
    row1 = [-1 - math.log(0.25), 0 - math.log(0.5), -2 - math.log(0.125)]
    lse = lambda xs: math.log(sum(math.exp(x) for x in xs))  # noqa: E731
    expected = ((lse(row0) - row0[0]) + (lse(row1) - row1[0])) / 2
    assert close(SampledSoftmaxLoss()(POS, NEG, lp, lq), expected)
    plain = ((lse([2, 1, 3]) - 2) + (lse([-1, 0, -2]) + 1)) / 2
    assert close(SampledSoftmaxLoss()(POS, NEG), plain)
    assert close(SampledSoftmaxLoss(logq=False)(POS, NEG, lp, lq), plain)
    assert not SampledSoftmaxLoss(logq=False).uses_logq and SampledSoftmaxLoss.uses_logq


def test_ccl_hand_value():
    pos, neg = torch.tensor([0.9, 0.2]), torch.tensor([[0.85, 0.1, 0.95], [0.0, 0.0, 0.0]])
    # row 0: 0.1 + (0.05 + 0 + 0.15) ; row 1: 0.8 + 0
    assert close(CCLLoss(margin=0.8)(pos, neg), (0.1 + 0.2 + 0.8) / 2)
    assert close(CCLLoss(margin=0.8, neg_weight=3.0)(pos, neg), (0.1 + 0.2 + 0.8) / 2)
    assert close(CCLLoss(margin=0.8, neg_weight=1.0)(pos, neg), (0.1 + 0.2 / 3 + 0.8) / 2)


def test_mse_and_wrmf_hand_values():
    pos, label = torch.tensor([3.0, 1.0]), torch.tensor([5.0, 0.0])
    assert close(MSELoss()(pos, label=label), (4 + 1) / 2)
    # r=5: c=1+0.5*5=3.5, p=1 -> 3.5*(3-1)^2 = 14 ; r=0: c=1, p=0 -> 1
    assert close(WRMFLoss(alpha=0.5)(pos, label=label), (14 + 1) / 2)
    neg = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    assert close(WRMFLoss(alpha=0.5, neg_weight=0.1)(pos, neg, label=label), (14 + 0.5 + 1 + 0.1) / 2)
    assert close(WRMFLoss(alpha=1.0)(torch.tensor([1.0])), 0.0)  # label absent: r = 1


def test_warp_hand_value():
    loss = WARPLoss(num_items=101, margin=1.0, reduction="none")  # 100 real items
    pos = torch.tensor([1.0, 1.0, 5.0])
    neg = torch.tensor([[0.5, 2.0, 0.0], [-5.0, -5.0, 0.5], [0.0, 0.0, 0.0]])
    out = loss(pos, neg)
    h = lambda n: sum(1.0 / i for i in range(1, n + 1))  # noqa: E731
    # row 0: first violation at trial 1 -> rank 99 ; row 1: trial 3 -> rank 33 ; row 2: none
    assert close(out[0], h(99) * 0.5, 1e-4)
    assert close(out[1], h(33) * 0.5, 1e-4)
    assert out[2] == 0


def test_warp_gradient_only_through_chosen_negative():
    pos = torch.tensor([1.0], requires_grad=True)
    neg = torch.tensor([[-3.0, 0.5, 2.0]], requires_grad=True)
    WARPLoss(num_items=11)(pos, neg).backward()
    w = sum(1.0 / i for i in range(1, 5))  # rank floor(9 / 2) = 4
    assert torch.allclose(neg.grad, torch.tensor([[0.0, w, 0.0]]))
    assert close(pos.grad[0], -w)


def test_infonce_forms_agree():
    torch.manual_seed(0)
    batch = torch.randn(4, 4)
    pos = batch.diagonal()
    rows = (torch.arange(4)[:, None] + torch.arange(1, 4)[None]) % 4
    neg = batch.gather(1, rows)
    a = InfoNCELoss(temperature=0.5)(all_score=batch)
    b = InfoNCELoss(temperature=0.5)(pos, neg)
    c = SoftmaxLoss(temperature=0.5)(all_score=batch, pos_index=torch.arange(4))
    assert torch.allclose(a, b) and torch.allclose(a, c)
    assert not InfoNCELoss.uses_logq and not InfoNCELoss().uses_logq and InfoNCELoss(logq=True).uses_logq


# ----------------------------------------------------------------------------- properties
def test_logq_with_uniform_proposal_changes_nothing():
    torch.manual_seed(1)
    pos, neg = torch.randn(8), torch.randn(8, 5)
    c = -math.log(999.0)
    corrected = SampledSoftmaxLoss()(pos, neg, torch.full((8,), c), torch.full((8, 5), c))
    assert torch.allclose(corrected, SampledSoftmaxLoss()(pos, neg), atol=1e-6)


def test_sampled_softmax_with_every_item_equals_full_softmax():
    torch.manual_seed(2)
    b, n = 5, 7
    all_score = torch.randn(b, n, requires_grad=True)
    pos_index = torch.randint(0, n, (b,))
    full = SoftmaxLoss()(all_score=all_score, pos_index=pos_index)
    others = torch.stack([torch.tensor([j for j in range(n) if j != p]) for p in pos_index.tolist()])
    pos, neg = all_score.gather(1, pos_index[:, None]).squeeze(1), all_score.gather(1, others)
    sampled = SampledSoftmaxLoss()(pos, neg)
    assert torch.allclose(full, sampled, atol=1e-6)
    # with a uniform proposal over the n - 1 others and logQ it is still the full softmax
    lq = torch.full((b, n - 1), -math.log(n - 1))
    assert torch.allclose(full, SampledSoftmaxLoss()(pos, neg, lq[:, 0], lq), atol=1e-6)
    g_full, = torch.autograd.grad(full, all_score, retain_graph=True)
    g_samp, = torch.autograd.grad(sampled, all_score)
    assert torch.allclose(g_full, g_samp, atol=1e-6)


def test_accidental_hits_are_dropped():
    pos, neg = torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 5.0, -1.0], [2.0, 0.5, 0.0]])
    mask = torch.tensor([[False, True, False], [False, False, True]])
    keep = [[0, 2], [0, 1]]
    dropped = torch.stack([neg[i, keep[i]] for i in range(2)])
    for loss in [SampledSoftmaxLoss(), InfoNCELoss(), BPRLoss(), HingeLoss(), CCLLoss(neg_weight=1.0),
                 BCELoss(), BCELoss(neg_reduction="mean")]:
        assert torch.allclose(loss(pos, neg, neg_is_pos=mask), loss(pos, dropped), atol=1e-6), loss
    # WARP never picks a masked negative as the violation
    w = WARPLoss(num_items=11, reduction="none")(torch.tensor([1.0]), torch.tensor([[5.0, 0.5]]),
                                                 neg_is_pos=torch.tensor([[True, False]]))
    assert close(w[0], sum(1.0 / i for i in range(1, 5)) * 0.5)


def test_several_positives_share_negatives():
    torch.manual_seed(3)
    pos, neg = torch.randn(3, 2), torch.randn(3, 4)
    for loss in [SampledSoftmaxLoss(reduction="none"), BPRLoss(reduction="none"), HingeLoss(reduction="none"),
                 BCELoss(reduction="none"), CCLLoss(reduction="none"), WARPLoss(10, reduction="none")]:
        out = loss(pos, neg)
        assert out.shape == (3, 2)
        for p in range(2):
            assert torch.allclose(out[:, p], loss(pos[:, p], neg), atol=1e-6), loss
        assert torch.allclose(loss(pos, neg.unsqueeze(1).expand(3, 2, 4)), out, atol=1e-6)
    idx = torch.tensor([[1, 2], [0, 3], [3, 3]])
    full = SoftmaxLoss(reduction="none")(all_score=neg, pos_index=idx)
    assert full.shape == (3, 2) and torch.allclose(full[:, 1], SoftmaxLoss(reduction="none")(all_score=neg,
                                                                                               pos_index=idx[:, 1]))


def every_loss():
    return [SoftmaxLoss(), SampledSoftmaxLoss(), InfoNCELoss(), BPRLoss(), HingeLoss(), WARPLoss(num_items=50),
            BCELoss(), PointwiseBCELoss(), CCLLoss(), MSELoss(), WRMFLoss()]


def call(loss, pos, neg, all_score, label):
    if loss.needs_all_scores:
        return loss(all_score=all_score, pos_index=torch.zeros(len(pos), dtype=torch.long))
    if loss.pointwise:
        return loss(pos, label=label)
    lq = torch.full(neg.shape, -3.0)
    return loss(pos, neg, lq[:, 0], lq)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_every_loss_is_finite_with_finite_gradients(scale):
    torch.manual_seed(4)
    for loss in every_loss():
        pos = (torch.randn(6) * scale).requires_grad_()
        neg = (torch.randn(6, 5) * scale).requires_grad_()
        all_score = (torch.randn(6, 9) * scale).requires_grad_()
        label = torch.randint(0, 2, (6,)).float()
        out = call(loss, pos, neg, all_score, label)
        assert out.dim() == 0 and torch.isfinite(out), loss
        out.backward()
        for t in (pos, neg, all_score):
            assert t.grad is None or torch.isfinite(t.grad).all(), loss


def test_reductions():
    pos, neg = torch.randn(4), torch.randn(4, 3)
    none = BPRLoss(reduction="none")(pos, neg)
    assert none.shape == (4,)
    assert torch.allclose(BPRLoss(reduction="sum")(pos, neg), none.sum())
    assert torch.allclose(BPRLoss()(pos, neg), none.mean())
    with pytest.raises(ConfigError):
        BPRLoss(reduction="avg")


# ----------------------------------------------------------------------------- contract, registry
def test_flags_and_registry():
    expected = {"softmax": (True, False, False), "sampled_softmax": (False, True, False),
                "infonce": (False, True, False), "bpr": (False, True, False), "hinge": (False, True, False),
                "warp": (False, True, False), "bce": (False, True, False), "pointwise_bce": (False, False, True),
                "ccl": (False, True, False), "mse": (False, False, True), "wrmf": (False, False, True)}
    for name, flags in expected.items():
        cls = LOSSES.get(name.upper())
        assert issubclass(cls, Loss)
        assert (cls.needs_all_scores, cls.needs_negatives, cls.pointwise) == flags, name
    assert LOSSES.get("sampled_softmax").uses_logq and not LOSSES.get("bpr").uses_logq
    assert LOSSES.get("weighted_mse") is WRMFLoss
    with pytest.raises(ConfigError, match="Did you mean 'bpr'"):
        LOSSES.get("bprr")


def test_build_loss():
    assert isinstance(build_loss("Hinge", margin=0.3), HingeLoss)
    assert build_loss("warp", context={"num_items": 20, "unused": 1}).num_items == 20
    inst = BPRLoss()
    assert build_loss(inst) is inst
    with pytest.raises(ConfigError, match="margin"):
        build_loss("hinge", margn=0.3)
    with pytest.raises(ConfigError, match="num_items"):
        build_loss("warp")
    with pytest.raises(ConfigError):
        build_loss(inst, reduction="sum")


def test_missing_inputs_are_explained():
    with pytest.raises(ConfigError, match="neg_score"):
        BPRLoss()(torch.randn(3))
    with pytest.raises(ConfigError, match="all_score"):
        SoftmaxLoss()(torch.randn(3))
    with pytest.raises(ConfigError, match="label"):
        MSELoss()(torch.randn(3))
    with pytest.raises(ConfigError, match="shape"):
        BPRLoss()(torch.randn(3), torch.randn(4, 2))

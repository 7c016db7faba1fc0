"""Every registered negative sampler is selectable by name, from Python overrides and from the command line
(``python run.py -m BPR --loss sampled_softmax --sampler midx_uni``), and trains a model with a finite loss."""
import math

import pytest

import recstudio
from recstudio.commands.train import build_parser, main
from recstudio.model.sampler import SAMPLERS

NAMES = SAMPLERS.names()
TINY = dict(embed_dim=8, epochs=1, batch_size=16, quiet=True, num_neg=4, sampler_clusters=3, sampler_candidates=4,
            sampler_top_n=5, eval_batch_size=64)
SEQ = dict(n_layers=1, max_seq_len=10)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, tiny_world):
    """A trained BPR checkpoint: the proposal of the ``retriever`` sampler."""
    folder = tmp_path_factory.mktemp("retriever")
    bpr, _ = recstudio.run(model="BPR", dataset=tiny_world, embed_dim=8, epochs=1, batch_size=32, quiet=True,
                           run_dir=str(folder))
    return str(bpr.run_dir)


def test_every_sampler_is_a_command_line_choice():
    """The train command parses --sampler NAME (any case) for every registered name."""
    cls = recstudio.get_model("BPR")
    for name in NAMES:
        args, unknown = build_parser(cls).parse_known_args(["--loss", "sampled_softmax", "--sampler", name.upper()])
        assert not unknown and args.sampler == name.upper() and SAMPLERS.canonical(args.sampler) == name


@pytest.mark.parametrize("model_name", ["BPR", "SASRec"])
@pytest.mark.parametrize("name", NAMES)
def test_sampler_trains_one_epoch_by_name(tiny_world, retriever, tmp_path, model_name, name):
    extra = {"sampler_checkpoint": retriever} if name == "retriever" else {}
    model, metrics = recstudio.run(model=model_name, dataset=tiny_world, loss="sampled_softmax", sampler=name,
                                   run_dir=str(tmp_path), **TINY, **(SEQ if model_name == "SASRec" else {}),
                                   **extra)
    assert model.cfg("sampler") == name
    if name == "masked_uniform" and model_name == "BPR":
        assert model.sampler is None  # the triplet dataset draws the negatives (docs/losses_samplers.md)
    else:
        assert type(model.sampler) is SAMPLERS.get(name)
    assert model.current_epoch == 1 and model._loss_count > 0
    assert math.isfinite(model._loss_sum / model._loss_count)
    assert all(math.isfinite(v) for v in metrics.values())


def test_run_py_selects_a_model_based_sampler(tmp_path):
    """End to end through the command line on a tiny atomic folder."""
    from tests.conftest import write_tiny_world
    folder = write_tiny_world(tmp_path / "data")
    code = main(["-m", "BPR", "-d", str(folder), "--loss", "sampled_softmax", "--sampler", "midx_uni",
                 "--num_neg", "4", "--sampler_clusters", "3", "--embed_dim", "8", "--epochs", "1", "--quiet", "true",
                 "--run_dir", str(tmp_path / "runs")])
    assert code == 0
    metrics = list((tmp_path / "runs").rglob("test_metrics.json"))
    assert len(metrics) == 1


# ----------------------------------------------------------------------------- mixed: capped in-batch part
def test_mixed_batch_negatives_cap():
    """``batch_negatives=n``: n random in-batch offsets shared by the rows, the mixture weighing n + 1 batch draws."""
    import torch
    from recstudio.model.sampler import MixedSampler
    from recstudio.utils.errors import ConfigError
    pos = torch.tensor([5, 7, 5, 9, 11, 2, 5, 30, 41, 7])
    lp, neg, lq = MixedSampler(num_items=50, batch_negatives=3, seed=0)(None, 2, pos)
    assert neg.shape == (10, 5)
    rows = torch.arange(10)
    # the three in-batch columns are the same offsets for every row: neg[b, j] = pos[(b + o_j) mod B]
    for j in range(3):
        o = [o for o in range(1, 10) if torch.equal(pos[(rows + o) % 10], neg[:, j])]
        assert o, j
    # by hand: q(5) = (4 * 3/10 + 2 * 1/49) / (4 + 2)
    assert abs(float(lp[0].exp()) - (4 * 0.3 + 2 / 49) / 6) < 1e-6
    s = MixedSampler(num_items=50, batch_negatives=3, seed=0)
    _, neg2, lq2 = s(None, 2, pos)
    assert torch.allclose(s.log_prob(neg2, pos).float(), lq2.float())
    assert MixedSampler(num_items=50, seed=0)(None, 2, pos)[1].shape == (10, 9 + 2)  # default: all B - 1
    assert MixedSampler(num_items=50, batch_negatives=20, seed=0)(None, 2, pos)[1].shape == (10, 9 + 2)
    with pytest.raises(ConfigError):
        MixedSampler(num_items=50, batch_negatives=0)


# ----------------------------------------------------------------------------- the benchmark's proposals
def test_benchmark_proposals_are_distributions(tiny_world, retriever, tmp_path):
    """benchmarks/samplers.py: every sampler's q(j|u) sums to 1 over the items and KL(p||p) = 0; for the
    model-based ones it is the sampler's own exact log_prob after a refresh from the model."""
    import torch
    from benchmarks.samplers import kl_pair, sampler_log_q, user_inputs
    full, _ = recstudio.run(model="BPR", dataset=tiny_world, loss="softmax", run_dir=str(tmp_path), **TINY)
    query, log_p, last, hist = user_inputs(full, torch.arange(1, 6))
    assert kl_pair(log_p, log_p) == (0.0, 0.0)
    for name in NAMES:
        log_q = sampler_log_q(name, full, query, last, hist, 4, 16, retriever)
        assert torch.allclose(log_q[:, 1:].exp().sum(1), torch.ones(5, dtype=torch.float64)), name
        assert torch.isinf(log_q[:, 0]).all(), name

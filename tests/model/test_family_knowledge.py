"""The knowledge-aware family: TransE / TransR blocks, the KG triple loader, CKE and KGAT, ml-100k-kg."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data import from_atomic
from recstudio.data.split import DataSplit
from recstudio.model.module.kg import TransE, TransR, embedding_norm, kg_bpr_loss, kg_margin_loss
from recstudio.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHARED_KG = ROOT.parent / "shared" / "datasets" / "ml-100k-kg"
ML100K = ROOT / "datasets" / "ml-100k"
FAST = dict(batch_size=32, kg_batch_size=16, embed_dim=8, kg_embed_dim=4, quiet=True, eval_batch_size=64)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def write_kg_folder(folder: Path, n_users=24, n_items=16, unlinked=3, seed=0) -> Path:
    """Random interactions (8 per user), items i0..i{n-unlinked-1} linked to entities e*, each with a genre
    entity g{i % 3} (both directions) and a 'director' entity; the last ``unlinked`` items have no entity."""
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    rng = np.random.default_rng(seed)
    with open(folder / f"{name}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u in range(n_users):
            for k, i in enumerate(rng.choice(n_items, size=8, replace=False)):
                f.write(f"u{u}\ti{i}\t1\t{k}\n")
    with open(folder / f"{name}.link", "w") as f:
        f.write("item_id:token\tentity_id:token\n")
        for i in range(n_items - unlinked):
            f.write(f"i{i}\te{i}\n")
    with open(folder / f"{name}.kg", "w") as f:
        f.write("head_id:token\trelation_id:token\ttail_id:token\n")
        for i in range(n_items - unlinked):
            f.write(f"e{i}\tgenre\tg{i % 3}\n")
            f.write(f"g{i % 3}\tgenre_of\te{i}\n")
            f.write(f"e{i}\tdirected_by\td{i % 5}\n")
    return folder


@pytest.fixture(scope="module")
def kg_split(tmp_path_factory):
    folder = write_kg_folder(tmp_path_factory.mktemp("kg") / "tinykg")
    return from_atomic(folder).split()


def built(name, split, **overrides):
    model = recstudio.get_model(name)(**{**FAST, **overrides})
    return model.build(model.context_from(split))


# ---- blocks -------------------------------------------------------------------------------------------
@torch.no_grad()
def test_transe_score_is_minus_the_translation_distance():
    s = TransE(num_relations=3, dim=2)
    with torch.no_grad():
        s.relation.weight[1] = torch.tensor([1.0, 2.0])
    h, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[4.0, 6.0]])
    r = torch.tensor([1])
    # h + r - t = (-3, -4)
    assert float(s(h, r, t)) == pytest.approx(-5.0)
    assert float(TransE(3, 2, p=1)(h, torch.tensor([0]), t)) == pytest.approx(-10.0)  # padding relation: zero
    sq = TransE(3, 2, squared=True)
    sq.relation.load_state_dict(s.relation.state_dict())
    assert float(sq(h, r, t)) == pytest.approx(-25.0)
    with pytest.raises(ConfigError):
        TransE(3, 2, p=1, squared=True)


@torch.no_grad()
def test_transr_projects_head_and_tail_by_the_relation_matrix():
    s = TransR(num_relations=3, dim=2, relation_dim=3)
    W = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    with torch.no_grad():
        s.proj.weight[2] = W.reshape(-1)
        s.relation.weight[2] = torch.tensor([0.5, -1.0, 0.0])
    h, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 1.0]])
    # h W = (1, 2, 0), t W = (0, 1, -1), r = (0.5, -1, 0): diff = (1.5, 0, 1)
    assert float(s(h, torch.tensor([2]), t)) == pytest.approx(-float(np.sqrt(1.5 ** 2 + 1.0)))
    # grouping rows by relation gives each row its own relation's product
    x, rel = torch.randn(7, 2), torch.tensor([2, 1, 2, 0, 1, 2, 1])
    expected = torch.stack([x[k] @ s.matrices(rel[k]) for k in range(7)])
    assert torch.allclose(s.project(x, rel), expected, atol=1e-6)
    # corrupted_scores == forward on each triple; normalize scales the projected vectors to unit length
    n = TransR(3, 2, 3, squared=True, normalize=True)
    hh, tp, tn = torch.randn(4, 2), torch.randn(4, 2), torch.randn(4, 2)
    r4 = torch.tensor([1, 2, 1, 2])
    pos, neg, vecs = n.corrupted_scores(hh, r4, tp, tn)
    assert torch.allclose(pos, n(hh, r4, tp), atol=1e-6) and torch.allclose(neg, n(hh, r4, tn), atol=1e-6)
    assert torch.allclose(vecs[0].norm(dim=-1), torch.ones(4), atol=1e-5)


def test_kg_losses_by_hand():
    pos, neg = torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -2.0])
    assert float(kg_bpr_loss(pos, neg)) == pytest.approx(float(np.mean(np.log1p(np.exp([-2.0, 2.0])))), rel=1e-5)
    assert float(kg_margin_loss(pos, neg, margin=1.0)) == pytest.approx((0.0 + 3.0) / 2)
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert float(embedding_norm(x, x)) == pytest.approx((5.0 + 5.0) / 2)


# ---- the triple loader ----------------------------------------------------------------------------
def test_kg_batches_have_valid_ids_negatives_differ_and_repeat_by_seed(kg_split):
    model = built("CKE", kg_split)
    ctx = model.meta
    triples = set(zip(ctx.kg_head.tolist(), ctx.kg_relation.tolist(), ctx.kg_tail.tolist()))
    kg = model.sample_kg_batch(512)
    assert set(kg) == {"head", "relation", "pos_tail", "neg_tail"} and kg["head"].shape == (512,)
    assert all(t in triples for t in zip(kg["head"].tolist(), kg["relation"].tolist(), kg["pos_tail"].tolist()))
    assert bool((kg["neg_tail"] != kg["pos_tail"]).all())
    assert int(kg["neg_tail"].min()) >= 1 and int(kg["neg_tail"].max()) < ctx.num_entities
    # uniform over the entities: with 512 draws nearly every entity appears as a negative
    assert len(set(kg["neg_tail"].tolist())) >= ctx.num_entities - 4
    again = built("CKE", kg_split).sample_kg_batch(512)
    assert all(torch.equal(kg[k], again[k]) for k in kg)
    other = built("CKE", kg_split, seed=7).sample_kg_batch(512)
    assert not torch.equal(kg["pos_tail"], other["pos_tail"])
    # a checkpoint carries the sampler's state: a resumed run draws what the uninterrupted one would
    ckpt = {}
    model.on_save_checkpoint(ckpt)
    nxt = model.sample_kg_batch(64)
    resumed = built("CKE", kg_split)
    resumed.on_load_checkpoint(ckpt)
    assert torch.equal(resumed.sample_kg_batch(64)["neg_tail"], nxt["neg_tail"])


def test_head_tails_negatives_are_no_tail_of_their_head(kg_split):
    """kg_negatives 'head_tails' (RecBole's KGSampler): a corrupted tail is no tail of the head under any
    relation, and the draws still cover the rest of the entities."""
    model = built("CKE", kg_split, kg_negatives="head_tails")
    ctx = model.meta
    tails_of = {}
    for h, t in zip(ctx.kg_head.tolist(), ctx.kg_tail.tolist()):
        tails_of.setdefault(h, set()).add(t)
    kg = model.sample_kg_batch(2048)
    assert all(t not in tails_of[h] for h, t in zip(kg["head"].tolist(), kg["neg_tail"].tolist()))
    assert int(kg["neg_tail"].min()) >= 1 and int(kg["neg_tail"].max()) < ctx.num_entities
    assert len(set(kg["neg_tail"].tolist())) >= ctx.num_entities - 8
    plain = built("CKE", kg_split).sample_kg_batch(2048)  # the default avoids only the triple's own tail
    assert any(t in tails_of[h] for h, t in zip(plain["head"].tolist(), plain["neg_tail"].tolist()))
    with pytest.raises(ConfigError, match="kg_negatives"):
        built("CKE", kg_split, kg_negatives="all")


def test_items_without_an_entity_get_no_knowledge_term(kg_split):
    cke = built("CKE", kg_split)
    ctx = cke.meta
    assert ctx.items_without_entity == 3
    unlinked = torch.nonzero(ctx.item_entity == 0).flatten()
    unlinked = unlinked[unlinked > 0]
    with torch.no_grad():
        vecs = cke.encode_items(unlinked)
        own = cke.item_encoder.items(unlinked)
        assert torch.equal(vecs, own)  # entity row 0 is zero
        linked = torch.nonzero(ctx.item_entity > 0).flatten()[:3]
        assert not torch.equal(cke.encode_items(linked), cke.item_encoder.items(linked))
    kgat = built("KGAT", kg_split, layers=[8, 4])
    nodes = kgat.item_node[unlinked]
    assert bool((nodes >= ctx.num_users + ctx.num_entities).all())  # their own nodes, interaction edges only
    kg_src = kgat.edge_src[kgat.edge_rel != kgat.ui_relation]
    assert not bool(torch.isin(nodes, kg_src).any())
    kgat.eval()
    with torch.no_grad():
        scores = kgat.score_users({ctx.uid_field: torch.tensor([1, 2])})
    assert torch.isfinite(scores[:, unlinked]).all()


def test_kg_options_are_checked():
    with pytest.raises(ConfigError, match="kg_schedule"):
        recstudio.get_model("CKE")(kg_schedule="sometimes")
    with pytest.raises(ConfigError, match="gradient_clip"):
        recstudio.get_model("KGAT")(gradient_clip=1.0)


@torch.no_grad()
def test_kg_epoch_batches_visit_every_triple_once_in_a_seeded_order(kg_split):
    model = built("KGAT", kg_split, layers=[8], kg_schedule="epochs", kg_batch_size=7)
    ctx = model.meta
    batches = list(model.kg_epoch_batches())
    assert [len(b["head"]) for b in batches[:-1]] == [7] * (len(batches) - 1) and 1 <= len(batches[-1]["head"]) <= 7
    seen = sorted(t for b in batches for t in zip(b["head"].tolist(), b["relation"].tolist(), b["pos_tail"].tolist()))
    assert seen == sorted(zip(ctx.kg_head.tolist(), ctx.kg_relation.tolist(), ctx.kg_tail.tolist()))
    assert all(bool((b["neg_tail"] != b["pos_tail"]).all()) for b in batches)
    again = list(built("KGAT", kg_split, layers=[8], kg_schedule="epochs", kg_batch_size=7).kg_epoch_batches())
    assert all(torch.equal(a["head"], b["head"]) and torch.equal(a["neg_tail"], b["neg_tail"]) for a, b in zip(batches, again))
    assert not torch.equal(torch.cat([b["head"] for b in batches]), torch.cat([b["head"] for b in model.kg_epoch_batches()]))


def test_the_epochs_schedule_runs_one_kg_pass_after_each_cf_epoch(tmp_path, kg_split, monkeypatch):
    from recstudio.model.zoo.kg.kgat import KGAT
    calls = []
    real_kg, real_refresh = KGAT.kg_loss, KGAT.refresh_attention
    monkeypatch.setattr(KGAT, "kg_loss", lambda self, kg: (calls.append(("kg", len(kg["head"]))), real_kg(self, kg))[1])
    monkeypatch.setattr(KGAT, "refresh_attention", lambda self: (calls.append(("refresh", 0)), real_refresh(self))[1])
    model = recstudio.get_model("KGAT")(**FAST, layers=[8], kg_schedule="epochs", epochs=2,
                                        run_dir=str(tmp_path))
    model.fit(kg_split)
    triples = len(model.meta.kg_head)
    per_epoch = -(-triples // 16)
    assert [c for c in calls if c[0] == "refresh"] == [("refresh", 0)] * 2
    first = calls[:calls.index(("refresh", 0))]
    assert len(first) == per_epoch and sum(n for _, n in first) == triples  # the whole KG, then the refresh
    log = pd.read_csv(next(tmp_path.glob("*/logs/metrics.csv")))
    assert log["train/kg_loss"].notna().sum() == 2 and log["train/loss"].notna().sum() == 2


# ---- training, checkpoints ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,extra", [("CKE", {}), ("KGAT", {"layers": [8, 4]}),
                                        ("KGAT", {"layers": [8], "kg_schedule": "epochs"}),
                                        ("KGAT", {"layers": [8], "kg_schedule": "joint", "aggregator": "gcn"})])
def test_trains_and_save_load_gives_identical_scores_without_the_dataset(tmp_path, name, extra):
    folder = write_kg_folder(tmp_path / "kgdata")
    split = from_atomic(folder).split()
    model = recstudio.get_model(name)(**{**FAST, **extra}, epochs=3, run_dir=str(tmp_path / "runs"))
    metrics = model.fit(split)
    assert 0.0 <= metrics["ndcg@10"] <= 1.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = model.save(tmp_path / "m.pt")
    shutil.rmtree(folder)  # the KG must come from the checkpoint
    loaded = recstudio.load(path)
    assert loaded.meta.kg_head is not None and len(loaded.meta.kg_head) == len(model.meta.kg_head)
    batch = {model.meta.uid_field: torch.arange(1, model.meta.num_users)}
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.score_users(batch), loaded.score_users(batch))
    assert all(torch.equal(before[k], v) for k, v in loaded.state_dict().items())
    if name == "KGAT":  # attention was recomputed from the embeddings (not the initial 1/|N_r(h)|)
        init = built("KGAT", split, **extra).attention
        assert not torch.allclose(loaded.attention, init)


def test_kgat_attention_is_a_softmax_over_each_nodes_edges(kg_split):
    model = built("KGAT", kg_split, layers=[8])
    model.refresh_attention()
    sums = torch.zeros(model.num_nodes).index_add_(0, model.edge_src, model.attention)
    has_edges = torch.bincount(model.edge_src, minlength=model.num_nodes) > 0
    assert torch.allclose(sums[has_edges], torch.ones(int(has_edges.sum())), atol=1e-5)
    # the eval cache follows the weights: an in-place change gives new scores
    model.eval()
    batch = {model.meta.uid_field: torch.tensor([1, 2])}
    with torch.no_grad():
        first = model.score_users(batch)
        model.node_embedding.weight.mul_(2.0)
        assert not torch.allclose(first, model.score_users(batch))


@pytest.mark.parametrize("layers,aggregator", [([8, 4], "bi"), ([8, 6, 4], "graphsage"), ([8], "gcn")])
def test_kgat_pruned_propagation_equals_the_full_graph_one(kg_split, layers, aggregator):
    """The layers compute only the nodes the scored users / items depend on; the vectors must equal a plain
    propagation of every node over the dense attention matrix."""
    model = built("KGAT", kg_split, layers=layers, aggregator=aggregator)
    model.refresh_attention()
    model.eval()
    N = model.num_nodes
    dense = torch.zeros(N, N).index_put_((model.edge_src, model.edge_dst), model.attention, accumulate=True)
    with torch.no_grad():
        x, outs = model.node_embedding.weight, [model.node_embedding.weight]
        for layer in model.aggregators:
            side = dense @ x
            if aggregator == "bi":
                x = layer.act(layer.W1(x + side)) + layer.act(layer.W2(x * side))
            elif aggregator == "gcn":
                x = layer.act(layer.W1(x + side))
            else:
                x = layer.act(layer.W1(torch.cat([x, side], -1)))
            outs.append(torch.nn.functional.normalize(x, dim=1))
        full = torch.cat(outs, 1)
        users, items = model.propagated()
    U = model.meta.num_users
    assert torch.allclose(users, full[:U], atol=1e-5)
    assert torch.allclose(items, full[model.item_node], atol=1e-5)


# ---- known answer: the KG tells what the interactions cannot -------------------------------------------
@pytest.mark.parametrize("name,extra,min_right", [("CKE", {}, 7), ("KGAT", {"layers": [16, 8]}, 12)])
def test_items_sharing_a_genre_with_a_users_items_rank_higher(tmp_path, name, extra, min_right):
    """Group-A users watch a0..a5, group-B users b0..b5; a6 and b6 have no training interaction at all
    (a neutral user's two test rows), so interactions cannot tell them apart. The KG says a0..a6 share genre gA
    and b0..b6 genre gB (and its inverse genre_of): the model must rank a6 above b6 for A users and b6 above a6
    for B users, on average over the group. KGAT propagates a6 <- gA <- a0..a5 <- A users: for every user.
    CKE's a6 vector is its entity's (tied to the a-items' entities through gA by TransR) plus its own randomly
    initialised item embedding that no positive ever trains, noise of the same size as the knowledge term on
    this tiny graph: the group means and a majority of the users (7 of 12)."""
    folder = tmp_path / "genre"
    folder.mkdir()
    rows = [(f"A{u}", f"a{i}") for u in range(12) for i in range(6)]
    rows += [(f"B{u}", f"b{i}") for u in range(12) for i in range(6)]
    rows += [("N0", "a6"), ("N0", "b6")] + [("N0", f"x{i}") for i in range(6)]
    with open(folder / "genre.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        f.writelines(f"{u}\t{i}\t{k}\n" for k, (u, i) in enumerate(rows))
    items = [f"{g}{i}" for g in "ab" for i in range(7)] + [f"x{i}" for i in range(6)]
    with open(folder / "genre.link", "w") as f:
        f.write("item_id:token\tentity_id:token\n")
        f.writelines(f"{i}\tE_{i}\n" for i in items)
    with open(folder / "genre.kg", "w") as f:
        f.write("head_id:token\trelation_id:token\ttail_id:token\n")
        for i in items:
            f.write(f"E_{i}\tgenre\tG_{i[0]}\n")
            f.write(f"G_{i[0]}\tgenre_of\tE_{i}\n")
    ds = from_atomic(folder)
    rng = np.random.default_rng(0)
    users, item_tokens = ds.users, ds.id_maps["item"].tokens[ds.items - 1]
    cold = np.isin(item_tokens, ["a6", "b6"])
    valid = np.flatnonzero(~cold & (rng.random(len(users)) < 0.1))
    test = np.flatnonzero(cold)
    train = np.setdiff1d(np.arange(len(users)), np.concatenate([valid, test]))
    split = DataSplit(ds, train, valid, test, train, np.union1d(train, valid), dict(ds.split().config))
    model = recstudio.get_model(name)(embed_dim=16, kg_embed_dim=16, batch_size=8, kg_batch_size=64, epochs=40,
                                      learning_rate=0.02, early_stop_patience=40, quiet=True,
                                      run_dir=str(tmp_path / "runs"), **extra)
    model.fit(split)
    imap, umap = ds.id_maps["item"], ds.id_maps["user"]
    a6, b6 = (int(imap.encode(np.array([t]))[0]) for t in ("a6", "b6"))
    model.eval()
    with torch.no_grad():
        for group, better, worse in (("A", a6, b6), ("B", b6, a6)):
            ids = torch.as_tensor(umap.encode(np.array([f"{group}{u}" for u in range(12)])))
            scores = model.score_users({ds.uid_field: ids})
            margin = scores[:, better] - scores[:, worse]
            assert float(margin.mean()) > 0 and int((margin > 0).sum()) >= min_right, (group, margin)


# ---- the registered dataset --------------------------------------------------------------------------
@pytest.mark.skipif(not (SHARED_KG / "ml-100k.kg").is_file() or not (ML100K / "u.data").is_file(),
                    reason="the shared ml-100k-kg copy or the bundled ml-100k is absent")
def test_ml100k_kg_registry_loads_from_the_shared_copy(isolated_data_dir):
    from recstudio.data import load_dataset
    from recstudio.data.registry import get_spec
    from recstudio.model.base.context import ModelContext
    spec = get_spec("ml-100k-kg")
    assert [d["filename"] for d in spec.downloads()] == ["ml-100k.zip", "ml-100k.kg", "ml-100k.link"]
    raw = isolated_data_dir / "ml-100k-kg" / "raw"
    raw.mkdir(parents=True)
    for name in ("u.data", "u.item", "u.user", "u.genre", "u.occupation", "u.info", "README"):
        shutil.copyfile(ML100K / name, raw / name)
    for name in ("ml-100k.kg", "ml-100k.link"):
        shutil.copyfile(SHARED_KG / name, raw / name)  # verified against the registry's sha256
    ds = load_dataset("ml-100k-kg")
    assert (ds.num_users - 1, ds.num_items - 1, len(ds.items)) == (943, 1682, 100000)
    ctx = ModelContext.from_split(ds.split(), {"kg"})
    assert ctx.num_items - 1 - ctx.items_without_entity == 1598
    assert len(ctx.kg_head) == 91631 and ctx.num_relations - 1 == 24 and ctx.num_entities - 1 == 34628

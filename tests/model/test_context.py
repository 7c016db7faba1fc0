"""What a model sees (ModelContext): only what it declares, from the training split only, saved in checkpoints."""
import numpy as np
import pytest
import torch

from recstudio.model.base.context import NEEDS, FeatureStore, ModelContext, check_needs
from recstudio.utils.errors import ConfigError, DataError


def test_a_lean_context_holds_no_extras(tiny_world):
    ctx = ModelContext.from_split(tiny_world)
    assert ctx.train_indptr is None and not ctx.user_fields and not ctx.item_fields and not ctx.context_fields
    assert ctx.kg_head is None and ctx.social_src is None and ctx.item_content is None
    state = ctx.to_state()
    assert not state["user_features"] and state["kg_head"] is None


def test_train_graph_holds_train_edges_only(tiny_world):
    ctx = ModelContext.from_split(tiny_world, {"train_graph"})
    m = ctx.train_matrix()
    ds = tiny_world.dataset
    train = set(zip(ds.users[tiny_world.train].tolist(), ds.items[tiny_world.train].tolist()))
    held = set(zip(ds.users[tiny_world.valid].tolist(), ds.items[tiny_world.valid].tolist())) | \
        set(zip(ds.users[tiny_world.test].tolist(), ds.items[tiny_world.test].tolist()))
    edges = set(zip(*m.nonzero()))
    assert edges == {(int(u), int(i)) for u, i in train}
    assert not edges & {(int(u), int(i)) for u, i in held}


def test_feature_fields_kg_social_and_context(tiny_world):
    ctx = ModelContext.from_split(tiny_world, set(NEEDS) - {"item_content"})
    assert {n: (s.type, s.owner) for n, s in ctx.item_fields.items()} == {
        "genre": ("token", "item"), "tags": ("token_seq", "item"), "price": ("float", "item")}
    assert {n: s.type for n, s in ctx.user_fields.items()} == {"gender": "token", "age": "float"}
    assert {n: (s.type, s.size, s.owner) for n, s in ctx.context_fields.items()} == {"daytime": ("token", 4, "context")}
    assert ctx.item_features["tags"].shape == (tiny_world.dataset.num_items, 3)
    assert ctx.num_relations == 4 and ctx.items_without_entity == 4  # 3 relations + padding; 4 unlinked items
    assert int(ctx.kg_head.max()) < ctx.num_entities and int(ctx.kg_relation.min()) >= 1
    sym = ctx.social_matrix(symmetric=True)
    assert (sym != sym.T).nnz == 0 and ctx.social_matrix().nnz == len(ctx.social_src)
    back = ModelContext.from_state(ctx.to_state())
    assert back.context_fields == ctx.context_fields and back.item_fields == ctx.item_fields
    assert torch.equal(back.kg_tail, ctx.kg_tail) and torch.equal(back.social_weight, ctx.social_weight)


def test_unknown_needs_and_missing_files_say_what_to_do(tiny_world, make_split):
    with pytest.raises(ConfigError, match="not one of"):
        check_needs({"graph"}, "MyModel")
    plain = make_split(0, 10, 12, 5)
    with pytest.raises(DataError, match=r"\.kg"):
        ModelContext.from_split(plain, {"kg"})
    with pytest.raises(DataError, match=r"\.net"):
        ModelContext.from_split(plain, {"social"})
    with pytest.raises(DataError, match=r"\.item"):
        ModelContext.from_split(plain, {"item_features"})


def test_feature_buffers_move_with_the_model_and_survive_save_load(tiny_world, tmp_path):
    from recstudio.model.registry import get_model
    model = get_model("BPR")(embed_dim=8, quiet=True)
    model.needs = frozenset({"item_features", "kg"})  # read through self: an instance or a property may set it
    model.build(model.context_from(tiny_world))
    assert isinstance(model.item_feats, FeatureStore)
    names = {n for n, _ in model.named_buffers()}
    assert any("genre" in n for n in names)
    gathered = model.item_feats(torch.tensor([1, 2]))
    assert set(gathered) == {"genre", "tags", "price"} and gathered["tags"].shape == (2, 3)
    model = model.to(torch.float64)
    assert model.item_feats["price"].dtype == torch.float64  # buffers follow .to()
    ckpt = {}
    model.on_save_checkpoint(ckpt)
    again = ModelContext.from_state(ckpt["recstudio"]["meta"])
    assert torch.equal(again.kg_head, model.context.kg_head)
    assert np.array_equal(again.item_features["genre"].numpy(), model.context.item_features["genre"].numpy())

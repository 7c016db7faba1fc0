"""``eval_mask_history: false``: repeat consumption, where a target the user had before is a hit."""
import pandas as pd
import pytest

import recstudio
from recstudio.data import from_dataframe
from recstudio.utils.errors import ConfigError


@pytest.fixture(scope="module")
def repeats():
    """Every user plays item A first, two other items, then A again: the test target is a repeat of the
    user's first (and the catalogue's most popular) item; kept as four rows with ``dedup: all``."""
    rows = []
    for u in range(20):
        rows += [(f"u{u}", "A", 0), (f"u{u}", f"b{u % 5}", 1), (f"u{u}", f"c{u % 7}", 2), (f"u{u}", "A", 3)]
    data = from_dataframe(pd.DataFrame(rows, columns=["u", "i", "t"]), "u", "i", time_field="t", dedup="all")
    return data.split(split_mode="loo")


def run(split, tmp_path, model="Pop", **kw):
    return recstudio.run(model=model, dataset=split, quiet=True, run_dir=str(tmp_path), epochs=2, **kw)[1]


def test_masked_history_makes_a_repeated_target_unreachable(repeats, tmp_path):
    assert run(repeats, tmp_path)["hit@10"] == 0.0


def test_unmasked_history_ranks_the_repeated_target(repeats, tmp_path):
    metrics = run(repeats, tmp_path, eval_mask_history=False)
    assert metrics["hit@10"] == 1.0 and metrics["mrr@10"] == 1.0  # A, the most played item, ranks first


@pytest.mark.parametrize("ann", [None, "flat"])
def test_item_tower_models_rank_the_history_exactly_or_through_an_index(repeats, tmp_path, ann):
    if ann:
        pytest.importorskip("faiss")
    masked = run(repeats, tmp_path / "m", model="BPR", embed_dim=8, ann=ann)
    unmasked = run(repeats, tmp_path / "u", model="BPR", embed_dim=8, ann=ann, eval_mask_history=False)
    assert masked["hit@10"] == 0.0 and unmasked["hit@10"] > 0.0


def test_the_key_is_refused_where_it_would_change_nothing(repeats, tmp_path):
    with pytest.raises(ConfigError, match="eval_mask_history=false changes full ranking only.*sampled"):
        run(repeats, tmp_path, eval_mask_history=False, eval_protocol="sampled")
    with pytest.raises(ConfigError, match="eval_mask_history=false changes full ranking only.*ctr"):
        recstudio.get_model("FM")(eval_mask_history=False)
